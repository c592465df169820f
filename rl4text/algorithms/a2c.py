"""Advantage actor-critic (Mnih et al. 2016, "Asynchronous Methods for Deep Reinforcement Learning"), synchronous.

One pass over each rollout: ``L = -mean(A_t log pi(a_t|s_t)) + vf_coef * 0.5 * mean((V - R)^2) - ent_coef * H``
(token means over real response tokens), no ratio, no clipping, no epochs. RL4LMs used stable-baselines3's A2C
(RMSprop); rl4text uses the loop's AdamW for every algorithm, so comparisons differ only in the update rule.
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
from rl4text.core import approx_kl, clipped_value_loss, explained_variance, masked_mean
from rl4text.registry import register_algorithm


@dataclass
class A2CConfig(OnPolicyConfig):
    """A2C hyper-parameters (plus the shared KL/GAE fields of ``OnPolicyConfig``)."""

    vf_coef: float = 0.5
    """Weight of the value loss (Mnih et al. 2016 use 0.5)."""
    ent_coef: float = 0.0
    """Weight of the entropy bonus (Mnih et al. 2016 use 0.01 on Atari; 0 is usual for language)."""
    minibatch_size: int | None = None
    """Episodes per gradient step within the single pass (``None``: the whole rollout in one step)."""

    def __post_init__(self):
        super().__post_init__()
        check_ranges(self, non_negative=("vf_coef", "ent_coef"), positive_or_none=("minibatch_size",))


def policy_gradient_loss(
    logprobs: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """``-mean(A_t log pi(a_t|s_t))`` over real tokens; inputs ``[B, T]``."""
    return -masked_mean(advantages * logprobs, mask)


@register_algorithm("a2c")
class A2C(Algorithm):
    Config = A2CConfig

    def update(self, batch: TrainBatch) -> dict[str, float]:
        cfg: A2CConfig = self.config
        stats = StatsMean()
        for mb in minibatches(batch, cfg.minibatch_size, shuffle=False):  # a single pass: no epochs
            step, grad_norm = self.accumulate(mb, self._loss)
            stats.add({**step, "policy/grad_norm": grad_norm})
        out = stats.mean()
        out["policy/explained_variance"] = explained_variance(
            batch.old_values, batch.returns, batch.response_mask
        )
        out["a2c/gradient_steps"] = float(stats.steps)
        return out

    def _loss(self, mb: TrainBatch) -> tuple:
        cfg: A2CConfig = self.config
        mask = mb.response_mask
        scored = self.score(mb, entropy_grad=cfg.ent_coef > 0)
        pg_loss = policy_gradient_loss(scored.logprobs, mb.advantages, mask)
        v_loss, _ = clipped_value_loss(scored.values, mb.old_values, mb.returns, mask, None)
        entropy = masked_entropy_mean(scored, mask)
        loss = pg_loss + cfg.vf_coef * v_loss - cfg.ent_coef * entropy
        return loss, {
            "loss/policy": pg_loss.item(),
            "loss/value": v_loss.item(),
            "loss/entropy": entropy.item(),
            "loss/total": loss.item(),
            "policy/approx_kl": approx_kl(scored.logprobs.detach(), mb.old_logprobs, mask).item(),
        }
