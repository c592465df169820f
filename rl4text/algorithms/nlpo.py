"""Natural Language Policy Optimization (Ramamurthy et al. 2023, "Is Reinforcement Learning (Not) for Natural
Language Processing", ICLR; AllenAI RL4LMs).

NLPO is PPO over a masked action space. A *mask policy* -- a frozen copy of the policy's LM, refreshed from the
policy every ``target_update_iterations`` updates -- runs alongside generation; at every step the tokens of its
top-p set (the smallest set whose probability reaches ``top_mask``, never fewer than ``min_tokens_to_keep``) are
allowed and the policy samples from its own distribution renormalised onto them. The PPO ratio scores each token
under the very mask it was sampled with (recorded during generation, never recomputed); the KL penalty stays
against the unmasked reference.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from rl4text.algorithms.base import TrainBatch
from rl4text.algorithms.ppo import PPO, PPOConfig
from rl4text.core import masked_mean
from rl4text.policies.actor_critic import apply_action_mask, frozen_copy, sequence_logits
from rl4text.policies.lora import AdapterSnapshot, is_peft
from rl4text.policies.scoring import PackedMask
from rl4text.registry import register_algorithm
from rl4text.rollout import IncrementalDecoder


@dataclass
class NLPOConfig(PPOConfig):
    """NLPO hyper-parameters: PPO's plus the mask policy's (names as in RL4LMs' maskable policies)."""

    top_mask: float = 0.9
    """Top-p of the mask policy's tempered distribution: the allowed set is the smallest whose probability
    reaches it. 0.9 is the value of every NLPO config shipped with RL4LMs (and the paper's tables); 1.0 allows
    every token (NLPO = PPO)."""
    target_update_iterations: int = 20
    """mu: copy the policy's weights into the mask policy after every mu-th update. 20 as RL4LMs' README and
    its T5 configs (common_gen, summarization); its IMDB GPT-2 config uses 5. Its class default of 1000 is
    never used by its configs, and would freeze the mask for whole short runs."""
    min_tokens_to_keep: int = 1
    """Floor on the allowed set's size. 1 is plain top-p as the paper describes it (and HF's top-p default).
    RL4LMs defaults to 100, a floor meant for GPT-2/T5 vocabularies (32-50k tokens): on a small vocabulary
    (the 48-token character tokenizer of the smoke runs) it would allow everything and turn NLPO into PPO.
    Set 100 to reproduce RL4LMs on real LMs."""

    def __post_init__(self):
        super().__post_init__()
        if not 0.0 < self.top_mask <= 1.0:
            raise ValueError(f"top_mask must be in (0, 1], got {self.top_mask}")
        if self.target_update_iterations < 1:
            raise ValueError(f"target_update_iterations must be >= 1, got {self.target_update_iterations}")
        if self.min_tokens_to_keep < 1:
            raise ValueError(f"min_tokens_to_keep must be >= 1, got {self.min_tokens_to_keep}")


def top_p_mask(probs: torch.Tensor, top_mask: float, min_tokens_to_keep: int = 1) -> torch.Tensor:
    """``[..., V]`` probabilities -> ``[..., V]`` bool: the smallest most-probable set reaching ``top_mask``.

    A token is kept when the probability of the tokens ranked before it is still below ``top_mask`` (so a set
    that exactly reaches it stops there), plus the ``min_tokens_to_keep`` most probable. Ties rank by token id
    (stable sort), so equal probabilities give the same set on every run.
    """
    if top_mask >= 1.0:  # float cumsums can reach 1 early and drop tail tokens; 1.0 means "everything"
        return torch.ones_like(probs, dtype=torch.bool)
    sorted_p, order = probs.sort(dim=-1, descending=True, stable=True)
    cum = sorted_p.cumsum(-1)
    before = torch.cat([torch.zeros_like(cum[..., :1]), cum[..., :-1]], dim=-1)  # exclusive cumsum
    keep = before < top_mask
    keep[..., :min_tokens_to_keep] = True
    return torch.zeros_like(keep).scatter(-1, order, keep)


class _StepRecorder:
    """The logits processor of one generation batch: steps the mask policy in lockstep with the policy
    (same KV-cached path as ``generate``), masks the policy's logits and keeps each step's allowed set."""

    def __init__(
        self,
        masker: TopPActionMasker,
        prompt_ids: torch.Tensor,
        prompt_mask: torch.Tensor,
        temperature: float,
    ):
        self.masker, self.prompt_ids = masker, prompt_ids
        self.temperature = temperature
        self.decoder = IncrementalDecoder(masker.model, masker.seq2seq, prompt_ids, prompt_mask)
        self.masks: list[torch.Tensor] = []

    def __call__(self, logits: torch.Tensor, generated: torch.Tensor) -> torch.Tensor:
        t = generated.shape[1]
        if t != len(self.masks):
            raise RuntimeError(f"NLPO mask processor called for step {t} after {len(self.masks)} steps")
        if t > 0:
            # Finished rows get padding here while generate hides it from the policy; rows never attend to
            # each other, and steps after EOS are allowed everything in sequence_mask, so this cannot matter.
            alive = torch.ones_like(generated[:, -1], dtype=torch.bool)
            self.decoder.advance(generated[:, -1], alive)
        probs = torch.softmax(self.decoder.logits / self.temperature, dim=-1)
        allowed = top_p_mask(probs, self.masker.top_mask, self.masker.min_tokens_to_keep)
        self.masks.append(allowed)
        return apply_action_mask(logits, allowed)

    def matches(self, prompt_ids: torch.Tensor, response_ids: torch.Tensor) -> bool:
        return (
            self.prompt_ids.shape == prompt_ids.shape
            and torch.equal(self.prompt_ids, prompt_ids)
            and len(self.masks) == response_ids.shape[1]
        )


class TopPActionMasker:
    """NLPO's :class:`rl4text.rollout.ActionMasker`: the mask policy's top-p set at every step, at the
    temperature the rollout samples at (the rollout passes it to :meth:`processor`)."""

    generators = ("hf",)
    """Generation backends (``rl4text.generation.Generator.name``) that can apply this mask at every step: the
    HF KV-cached loop takes a logits processor; a server-side backend (vLLM) would need the mask policy there."""

    def __init__(self, model: nn.Module, seq2seq: bool, top_mask: float, min_tokens_to_keep: int):
        self.model, self.seq2seq = model, seq2seq
        self.top_mask, self.min_tokens_to_keep = top_mask, min_tokens_to_keep
        self._last: _StepRecorder | None = None

    def processor(
        self, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, temperature: float
    ) -> _StepRecorder:
        self._last = _StepRecorder(self, prompt_ids, prompt_mask, temperature)
        return self._last

    @torch.no_grad()
    def sequence_mask(
        self,
        prompt_ids: torch.Tensor,
        prompt_mask: torch.Tensor,
        response_ids: torch.Tensor,
        response_mask: torch.Tensor,
        temperature: float,
    ) -> torch.Tensor:
        """``[B, T, V]`` bool allowed tokens; every token after the episode's end is allowed (no action there).

        For the batch just generated this is the recorded masks, exactly those sampled under: a fresh full
        forward can differ from the KV-cached one in the last bits and flip a borderline token, which would
        then score log-prob ~ -1e9. Any other batch is recomputed with one full forward of the mask policy.
        """
        recorder, self._last = self._last, None
        if recorder is not None and recorder.matches(prompt_ids, response_ids):
            if temperature != recorder.temperature:
                raise ValueError(
                    f"NLPO sampled with its mask at temperature {recorder.temperature} but the rollout is scored "
                    f"at {temperature}: score a rollout at the temperature it was sampled at"
                )
            allowed = torch.stack(recorder.masks, dim=1)
        else:
            logits, _ = sequence_logits(
                self.model, self.seq2seq, prompt_ids, prompt_mask, response_ids, response_mask
            )
            probs = torch.softmax(logits.float() / temperature, dim=-1)
            allowed = top_p_mask(probs, self.top_mask, self.min_tokens_to_keep)
        # padding steps score the forced pad token: a masked pad would give -1e9 log-probs whose ratios can
        # overflow to inf, and inf * 0 is NaN in the masked means
        return allowed | ~response_mask.bool()[..., None]


@register_algorithm("nlpo")
class NLPO(PPO):
    """PPO whose rollouts sample from, and whose ratios score under, the mask policy's top-p set."""

    Config = NLPOConfig
    distributed = ("ddp",)  # the mask policy copies the policy's full weights (not an FSDP/ZeRO-3 shard)

    def __init__(self, config: NLPOConfig, policy, optimizer: torch.optim.Optimizer):
        super().__init__(config, policy, optimizer)
        # with LoRA the mask policy is a snapshot of the adapter weights on the shared base, not a model copy
        self.mask_model = (
            AdapterSnapshot(policy.model) if is_peft(policy.model) else frozen_copy(policy.model)
        )
        self.updates = 0  # updates done; the mask policy is refreshed when this reaches a multiple of mu
        self.action_masker = TopPActionMasker(
            self.mask_model,
            policy.seq2seq,
            config.top_mask,
            config.min_tokens_to_keep,
        )

    def update(self, batch: TrainBatch) -> dict[str, float]:
        stats = super().update(batch)
        self.updates += 1
        since = self.updates % self.config.target_update_iterations
        if since == 0:
            self.refresh_mask_model()
        stats["nlpo/mask_size"] = mask_size(batch)
        stats["nlpo/mask_refreshed"] = float(since == 0)
        stats["nlpo/updates_since_refresh"] = float(since)
        return stats

    @torch.no_grad()
    def refresh_mask_model(self) -> None:
        """Copy the current policy LM's weights (with LoRA: its adapter weights) into the mask policy."""
        if isinstance(self.mask_model, AdapterSnapshot):
            self.mask_model.refresh()
        else:
            self.mask_model.load_state_dict(self.policy.model.state_dict())

    def state_dict(self) -> dict:
        # the mask policy may lag the policy by up to mu - 1 updates, so its weights are state of their own
        weights = {k: v.detach().clone() for k, v in self.mask_model.state_dict().items()}
        return {"updates": self.updates, "mask_model": weights}

    def load_state_dict(self, state: dict) -> None:
        self.updates = int(state["updates"])
        self.mask_model.load_state_dict(state["mask_model"])


def mask_size(batch: TrainBatch) -> float:
    """Mean number of allowed tokens per real response step (the vocabulary size when nothing is masked)."""
    if batch.action_mask is None:
        return float("nan")
    mask = batch.action_mask
    counts = mask.counts() if isinstance(mask, PackedMask) else mask.sum(-1)
    return float(masked_mean(counts.float(), batch.response_mask))
