"""Advantage actor-critic (Mnih et al. 2016, "Asynchronous Methods for Deep Reinforcement Learning"), synchronous.

One pass over each rollout: ``L = -mean(A_t log pi(a_t|s_t)) + vf_coef * 0.5 * mean((V - R)^2) - ent_coef * H``
(token means over real response tokens), no ratio, no clipping, no epochs. RL4LMs used stable-baselines3's A2C
(RMSprop); rl4text uses the loop's AdamW for every algorithm, so comparisons differ only in the update rule.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rl4text.algorithms.base import Algorithm, OnPolicyConfig, TrainBatch, masked_entropy_mean
from rl4text.core import clipped_value_loss, explained_variance, masked_mean
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
        size = cfg.minibatch_size or len(batch)
        totals: dict[str, float] = {}
        steps = 0
        for start in range(0, len(batch), size):  # a single pass, in order: no shuffling, no epochs
            mb = batch.select(
                torch.arange(start, min(start + size, len(batch)), device=batch.prompt_ids.device)
            )
            mask = mb.response_mask
            scored = self.policy.score(
                mb.prompt_ids,
                mb.prompt_mask,
                mb.response_ids,
                mask.long(),
                self.temperature,
                with_values=True,
                action_mask=mb.action_mask,
            )
            pg_loss = policy_gradient_loss(scored.logprobs, mb.advantages, mask)
            v_loss, _ = clipped_value_loss(scored.values, mb.old_values, mb.returns, mask, None)
            entropy = masked_entropy_mean(scored.logits, mask)
            loss = pg_loss + cfg.vf_coef * v_loss - cfg.ent_coef * entropy
            with torch.no_grad():
                log_ratio = scored.logprobs - mb.old_logprobs
                approx_kl = masked_mean(torch.expm1(log_ratio) - log_ratio, mask)
            stats = {
                "loss/policy": pg_loss.item(),
                "loss/value": v_loss.item(),
                "loss/entropy": entropy.item(),
                "loss/total": loss.item(),
                "policy/approx_kl": approx_kl.item(),
                "policy/grad_norm": self.step(loss),
            }
            for key, value in stats.items():
                totals[key] = totals.get(key, 0.0) + value
            steps += 1
        out = {key: value / steps for key, value in totals.items()}
        out["policy/explained_variance"] = explained_variance(
            batch.old_values, batch.returns, batch.response_mask
        )
        out["a2c/gradient_steps"] = float(steps)
        return out
