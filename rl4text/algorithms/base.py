"""What every on-policy algorithm shares: its config fields, the training batch, advantages and the optimiser step.

An algorithm is a class with a ``Config`` dataclass, built as ``Algo(config, policy, optimizer)``; the loop calls
``batch = algo.prepare(rollout, token_rewards)`` then ``stats = algo.update(batch)``. Algorithms differ only
in their update (and, for NLPO, in the logits processor they hand the rollout).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, fields

import torch
from torch import nn

from rl4text.core import compute_gae, masked_mean, masked_whiten
from rl4text.policies.actor_critic import ActorCritic, ScoreOutput, prompt_groups
from rl4text.policies.scoring import PackedMask
from rl4text.rollout import Rollout


@dataclass
class OnPolicyConfig:
    """Fields shared by every on-policy algorithm (KL penalty, advantage estimation, gradient clipping)."""

    kl_coef: float = 0.05
    """Initial coefficient beta of the per-token KL penalty ``-beta * KL_t`` added to the reward (0: no reference)."""
    kl_target: float | None = None
    """Target KL per sequence for the adaptive controller (Ziegler et al. 2019); ``None`` keeps beta fixed."""
    kl_horizon: int = 10000
    """Horizon (in episodes) of the adaptive KL controller."""
    kl_estimator: str = "k1"
    """Per-token KL estimator in the reward: ``k1`` (log-ratio, unbiased), ``k2`` or ``k3`` (Schulman 2020)."""
    gamma: float = 1.0
    """Discount over response tokens."""
    lam: float = 0.95
    """GAE lambda (Schulman et al. 2016)."""
    whiten_advantages: bool = True
    """Whiten advantages with masked batch statistics."""
    max_grad_norm: float | None = 1.0
    """Clip the global gradient norm (``None``: no clipping)."""

    def __post_init__(self):
        if self.kl_estimator not in ("k1", "k2", "k3"):
            raise ValueError(f"kl_estimator must be k1, k2 or k3, got {self.kl_estimator!r}")
        check_ranges(
            self,
            non_negative=("kl_coef",),
            positive=("kl_horizon",),
            positive_or_none=("kl_target", "max_grad_norm"),
            unit=("gamma", "lam"),
        )


def check_ranges(
    config,
    *,
    positive: tuple[str, ...] = (),
    non_negative: tuple[str, ...] = (),
    positive_or_none: tuple[str, ...] = (),
    unit: tuple[str, ...] = (),
) -> None:
    """Raise ``ValueError`` naming the first field of ``config`` out of its range (``unit``: within [0, 1])."""
    for name in positive + positive_or_none:
        value = getattr(config, name)
        if value is None and name in positive_or_none:
            continue
        if value is None or value <= 0:
            also = " or null" if name in positive_or_none else ""
            raise ValueError(f"{name} must be positive{also}, got {value}")
    for name in non_negative:
        if getattr(config, name) < 0:
            raise ValueError(f"{name} must be >= 0, got {getattr(config, name)}")
    for name in unit:
        if not 0 <= getattr(config, name) <= 1:
            raise ValueError(f"{name} must be in [0, 1], got {getattr(config, name)}")


@dataclass
class TrainBatch:
    """What an update consumes. ``B`` episodes, ``P`` prompt tokens, ``T`` response tokens."""

    prompt_ids: torch.Tensor  # [B, P]
    prompt_mask: torch.Tensor  # [B, P]
    response_ids: torch.Tensor  # [B, T]
    response_mask: torch.Tensor  # [B, T] float
    old_logprobs: torch.Tensor  # [B, T] behaviour-policy log-probs
    old_values: torch.Tensor  # [B, T] critic values at rollout time (zeros without a critic)
    advantages: torch.Tensor  # [B, T]
    returns: torch.Tensor  # [B, T]
    action_mask: PackedMask | None = None  # [B, T, V] allowed tokens, bit-packed (NLPO), None: all allowed
    temperature: float = 1.0  # the rollout's sampling temperature: updates score under the same distribution

    def __len__(self) -> int:
        return self.prompt_ids.shape[0]

    def select(self, index: torch.Tensor) -> TrainBatch:
        """The sub-batch of episodes ``index: [b]``."""
        return TrainBatch(
            **{
                f.name: getattr(self, f.name)
                if not isinstance(getattr(self, f.name), (torch.Tensor, PackedMask))
                else getattr(self, f.name)[index]
                for f in fields(self)
            }
        )


class LocalOps:
    """Training operations of one process. ``rl4text.runtime.Dist`` has the same methods for N processes
    (Accelerate's backward and clipping, sums over processes); ``Algorithm.attach`` swaps it in."""

    world_size = 1

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    def clip_grad_norm_(self, params: list[torch.Tensor], max_norm: float) -> torch.Tensor:
        return nn.utils.clip_grad_norm_(params, max_norm)

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor


class Algorithm:
    """Base of actor-critic algorithms: GAE advantages in ``prepare``; subclasses write ``update``."""

    Config = OnPolicyConfig
    uses_critic = True
    """Whether rollouts need values (a critic-free algorithm skips the value computation)."""
    samples_per_prompt = 1
    """Episodes per distinct prompt in a rollout batch (RLOO's k); the loop repeats each prompt this often."""
    action_masker = None
    """An ``rl4text.rollout.ActionMasker`` restricting sampling and scoring (NLPO), or None."""
    micro_batch_size: int | None = None
    """Episodes per forward/backward pass (``train.micro_batch_size``, set by ``train.build``): a minibatch is
    split into micro-batches whose gradients accumulate into one optimiser step. None: the whole minibatch."""
    loss_unit = "token"
    """What the loss averages over (``token``: masked token means; ``episode``: means over episodes): the
    weight of each micro-batch's loss, so accumulation gives the update of the whole minibatch."""
    distributed = ("ddp", "fsdp", "deepspeed")
    """The multi-process kinds (``rl4text.runtime.distributed.KINDS``) this algorithm's update runs under."""

    def __init__(self, config: OnPolicyConfig, policy: ActorCritic, optimizer: torch.optim.Optimizer):
        self.config = config
        self.policy = policy
        self.optimizer = optimizer
        self.samples_per_prompt = self.samples_per_prompt_for(config)
        self.scorer: nn.Module = policy
        """The module whose ``forward`` scores (the policy, or its DDP/FSDP wrapper after ``attach``)."""
        self.ops = LocalOps()

    def attach(self, *, scorer: nn.Module, optimizer, ops) -> None:
        """Use the wrapped policy (its ``forward`` is ``ActorCritic.score``), optimiser and cross-process ops."""
        self.scorer, self.optimizer, self.ops = scorer, optimizer, ops

    @property
    def all_reduce(self):
        """A sum over processes for global statistics, or None in one process (the local formulas exactly)."""
        return None if self.ops.world_size == 1 else self.ops.all_reduce_sum

    def global_mean(self, value: float) -> float:
        """The mean of ``value`` over processes (the approx-KL early stop decides for all at once)."""
        if self.ops.world_size == 1:
            return value
        total = self.ops.all_reduce_sum(torch.tensor([float(value)], dtype=torch.float64))
        return float(total[0]) / self.ops.world_size

    @classmethod
    def samples_per_prompt_for(cls, config: OnPolicyConfig) -> int:
        """Episodes per prompt this config asks for (checked against ``rollout.batch_size`` before any work)."""
        return 1

    def prepare(self, rollout: Rollout, token_rewards: torch.Tensor) -> TrainBatch:
        """Advantages and returns from per-token rewards ``[B, T]`` (GAE over response tokens)."""
        mask = rollout.response_mask
        values = rollout.values if rollout.values is not None else torch.zeros_like(token_rewards)
        advantages, returns = compute_gae(token_rewards, values, mask, self.config.gamma, self.config.lam)
        if self.config.whiten_advantages:
            advantages = masked_whiten(advantages, mask, all_reduce=self.all_reduce)
        return TrainBatch(
            rollout.prompt_ids,
            rollout.prompt_mask,
            rollout.response_ids,
            mask,
            rollout.logprobs,
            values,
            advantages,
            returns,
            rollout.action_mask,
            rollout.temperature,
        )

    def update(self, batch: TrainBatch) -> dict[str, float]:
        raise NotImplementedError

    def score(
        self,
        mb: TrainBatch,
        with_values: bool = True,
        *,
        keep_logits: bool = False,
        entropy_grad: bool = False,
    ) -> ScoreOutput:
        """The current policy's scores of ``mb`` under the rollout's temperature and action mask: log-probs,
        values, per-token entropy (differentiable with ``entropy_grad``), full logits only with ``keep_logits``."""
        return self.scorer(
            mb.prompt_ids,
            mb.prompt_mask,
            mb.response_ids,
            mb.response_mask.long(),
            mb.temperature,
            with_values=with_values,
            action_mask=mb.action_mask,
            keep_logits=keep_logits,
            entropy=True,
            entropy_grad=entropy_grad,
        )

    def step(self, loss: torch.Tensor | None = None) -> float:
        """Backward (unless ``loss`` is None: gradients already accumulated), clip, optimiser step; returns the
        gradient norm before clipping."""
        if loss is not None:
            self.optimizer.zero_grad(set_to_none=True)
            self.ops.backward(loss)
        params = [p for g in self.optimizer.param_groups for p in g["params"] if p.grad is not None]
        if self.config.max_grad_norm is not None:
            norm = self.ops.clip_grad_norm_(params, self.config.max_grad_norm)
        else:
            norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params]))
        self.optimizer.step()
        # the gradients are dead once applied (every step zeroes them before its backward): dropping them now
        # frees a model's worth of memory during the rollout, evaluation and checkpointing that come next
        self.optimizer.zero_grad(set_to_none=True)
        self.policy.generation_mode()  # gradient checkpointing left the model in train mode for the backward
        return float(norm)

    def accumulate(self, mb: TrainBatch, loss_fn) -> tuple[dict[str, float], float]:
        """One optimiser step on minibatch ``mb`` in micro-batches of ``micro_batch_size`` episodes.

        ``loss_fn(micro) -> (loss, stats)`` computes the loss of a micro-batch as if it were the whole minibatch;
        each micro-batch's loss is weighted by its share of the minibatch's tokens (``loss_unit="token"``) or
        episodes (``"episode"``) before its backward pass, so the accumulated gradient is that of the whole
        minibatch. Returns the share-weighted stats and the gradient norm."""
        self.optimizer.zero_grad(set_to_none=True)
        if self.loss_unit == "token":
            total = mb.response_mask.sum().clamp(min=1.0)
            share = lambda m: m.response_mask.sum() / total  # noqa: E731
        else:
            share = lambda m: len(m) / len(mb)  # noqa: E731
        out: dict[str, float] = {}
        for micro in minibatches(self._group_prompts(mb), self.micro_batch_size, shuffle=False):
            weight = float(share(micro))
            loss, stats = loss_fn(micro)
            self.ops.backward(loss * weight)
            for key, value in stats.items():
                out[key] = out.get(key, 0.0) + weight * float(value)
        return out, self.step(None)

    def _group_prompts(self, mb: TrainBatch) -> TrainBatch:
        """``mb`` with the samples of each prompt on adjacent rows when it is split into micro-batches and the
        policy shares prompts, so a shuffled minibatch (PPO, GRPO) still gives each micro-batch whole groups to
        share a prompt pass over. The accumulated gradient is a weighted sum over rows, so the order changes only
        float rounding."""
        size = self.micro_batch_size
        if size is None or size >= len(mb) or not self.policy.share_prompts:
            return mb
        groups = prompt_groups(mb.prompt_ids, mb.prompt_mask)
        if groups is None:
            return mb
        return mb.select(torch.argsort(groups[1], stable=True))

    def state_dict(self) -> dict:
        """Algorithm state beyond the model and optimiser (saved in checkpoints)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def minibatch_indices(
    n: int, size: int | None, shuffle: bool, device: torch.device
) -> Iterator[torch.Tensor]:
    """One pass over ``n`` episodes as index tensors of ``size`` (``None``: all at once), shuffled or in order."""
    size = size or n
    order = torch.randperm(n, device=device) if shuffle else torch.arange(n, device=device)
    for start in range(0, n, size):
        yield order[start : start + size]


def minibatches(batch: TrainBatch, size: int | None, shuffle: bool) -> Iterator[TrainBatch]:
    """One pass over ``batch`` in minibatches of ``size`` episodes (``None``: the whole batch), shuffled or in order."""
    for index in minibatch_indices(len(batch), size, shuffle, batch.prompt_ids.device):
        yield batch.select(index)


class StatsMean:
    """Averages the per-gradient-step stats of an update (what the loop logs once per iteration)."""

    def __init__(self):
        self.sums: dict[str, float] = {}
        self.steps = 0

    def add(self, stats: dict[str, float]) -> None:
        for key, value in stats.items():
            self.sums[key] = self.sums.get(key, 0.0) + value
        self.steps += 1

    def mean(self) -> dict[str, float]:
        return {key: value / max(self.steps, 1) for key, value in self.sums.items()}


def masked_entropy_mean(scores: ScoreOutput | torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Token-mean entropy over ``mask: [B, T]`` of a :class:`ScoreOutput` (its chunked ``entropy``) or of
    ``logits: [B, T, V]``."""
    if isinstance(scores, ScoreOutput):
        return masked_mean(scores.entropy, mask)
    from rl4text.core import entropy_from_logits

    return masked_mean(entropy_from_logits(scores), mask)
