"""REINFORCE with a leave-one-out baseline (RLOO; Kool et al. 2019, Ahmadian et al. 2024, "Back to Basics").

``k`` episodes per prompt; each episode's return is its task reward minus ``beta * sum_t KL_t``; its advantage is
that return minus the mean return of the *other* ``k - 1`` episodes of the same prompt (an unbiased baseline,
since it does not depend on the episode itself). No critic. The loss is sequence-level REINFORCE,
``-mean_i(A_i * sum_t log pi(a_it|s_it))`` (Ahmadian et al. treat the whole completion as one action).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rl4text.algorithms.base import (
    Algorithm,
    OnPolicyConfig,
    StatsMean,
    TrainBatch,
    check_ranges,
    masked_entropy_mean,
    minibatches,
)
from rl4text.core import approx_kl
from rl4text.core.stats import global_mean_var
from rl4text.registry import register_algorithm
from rl4text.rollout import Rollout


@dataclass
class RLOOConfig(OnPolicyConfig):
    """RLOO hyper-parameters; ``gamma``, ``lam`` and the critic are unused (the return is the sequence reward)."""

    k: int = 4
    """Episodes sampled per prompt (Ahmadian et al. 2024 use k = 2 or 4); ``rollout.batch_size`` must be a multiple."""
    minibatch_size: int | None = None
    """Episodes per gradient step (``None``: the whole rollout in one step); keep it a multiple of ``k``."""
    n_epochs: int = 1
    """Passes over the rollout (1 = on-policy REINFORCE, as in the paper)."""
    whiten_advantages: bool = False
    """Leave-one-out advantages are already centred; whitening is off by default."""

    def __post_init__(self):
        super().__post_init__()
        if self.k < 2:
            raise ValueError(
                f"RLOO needs k >= 2 samples per prompt for a leave-one-out baseline, got {self.k}"
            )
        check_ranges(self, positive=("n_epochs",), positive_or_none=("minibatch_size",))


def leave_one_out_advantages(returns: torch.Tensor, k: int) -> torch.Tensor:
    """``A_i = R_i - mean_{j != i} R_j`` within consecutive groups of ``k``: ``returns [B] -> [B]`` (B = groups * k)."""
    groups = returns.view(-1, k)
    others = (groups.sum(dim=1, keepdim=True) - groups) / (k - 1)
    return (groups - others).view(-1)


@register_algorithm("rloo")
class RLOO(Algorithm):
    Config = RLOOConfig
    uses_critic = False
    loss_unit = "episode"

    @classmethod
    def samples_per_prompt_for(cls, config: RLOOConfig) -> int:
        return config.k

    def prepare(self, rollout: Rollout, token_rewards: torch.Tensor) -> TrainBatch:
        """Sequence returns (task reward + summed KL penalty) -> leave-one-out advantages on every token."""
        mask = rollout.response_mask
        returns = (token_rewards * mask).sum(-1)
        advantages = leave_one_out_advantages(returns, self.config.k)
        if self.config.whiten_advantages and self.all_reduce is not None:  # over every process's episodes
            mean, var = global_mean_var(advantages, torch.ones_like(advantages), self.all_reduce)
            advantages = (advantages - mean) / (var.sqrt() + 1e-8)
        elif self.config.whiten_advantages and advantages.numel() > 1:
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        per_token = advantages[:, None] * mask
        zeros = torch.zeros_like(mask)
        return TrainBatch(
            rollout.prompt_ids,
            rollout.prompt_mask,
            rollout.response_ids,
            mask,
            rollout.logprobs,
            zeros,
            per_token,
            returns[:, None] * mask,
            rollout.action_mask,
            rollout.temperature,
        )

    def update(self, batch: TrainBatch) -> dict[str, float]:
        cfg: RLOOConfig = self.config
        stats = StatsMean()
        for _ in range(cfg.n_epochs):
            for mb in minibatches(batch, cfg.minibatch_size, shuffle=False):
                step, grad_norm = self.accumulate(mb, self._loss)
                stats.add({**step, "policy/grad_norm": grad_norm})
        out = stats.mean()
        out["rloo/advantage_abs_mean"] = float(batch.advantages[:, 0].abs().mean())
        return out

    def _loss(self, mb: TrainBatch) -> tuple:
        mask = mb.response_mask
        scored = self.score(mb, with_values=False)
        seq_logprob = (scored.logprobs * mask).sum(-1)
        seq_adv = mb.advantages[:, 0]  # the same advantage sits on every token of an episode
        loss = -(seq_adv * seq_logprob).mean()
        entropy = masked_entropy_mean(scored, mask)
        return loss, {
            "loss/policy": loss.item(),
            "loss/entropy": entropy.item(),
            "policy/approx_kl": approx_kl(scored.logprobs.detach(), mb.old_logprobs, mask).item(),
        }
