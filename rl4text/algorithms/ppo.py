"""Proximal Policy Optimization (Schulman et al. 2017, "Proximal Policy Optimization Algorithms").

Per iteration: ``n_epochs`` passes over the rollout in shuffled minibatches of ``minibatch_size`` episodes, each
minimising ``L = L_clip + vf_coef * L_value - ent_coef * H`` (token means over real response tokens).
Defaults follow RL4LMs' PPO settings for text (Ramamurthy et al. 2023) where they apply.
"""

from __future__ import annotations

from dataclasses import dataclass

from rl4text.algorithms.base import (
    Algorithm,
    OnPolicyConfig,
    StatsMean,
    TrainBatch,
    check_ranges,
    masked_entropy_mean,
    minibatches,
)
from rl4text.core import clipped_value_loss, explained_variance, ppo_policy_loss
from rl4text.registry import register_algorithm


@dataclass
class PPOConfig(OnPolicyConfig):
    """PPO hyper-parameters (plus the shared KL/GAE fields of ``OnPolicyConfig``)."""

    clip_range: float = 0.2
    """Ratio clipping epsilon of the surrogate objective."""
    clip_range_value: float | None = 0.2
    """Clipping of the value update around the rollout values (``None``: unclipped squared error)."""
    vf_coef: float = 0.5
    """Weight of the value loss."""
    ent_coef: float = 0.0
    """Weight of the entropy bonus."""
    n_epochs: int = 4
    """Passes over each rollout."""
    minibatch_size: int = 8
    """Episodes per gradient step."""
    target_kl: float | None = None
    """Stop the epochs early once approx-KL(old || new) exceeds ``1.5 * target_kl`` (as stable-baselines3)."""

    def __post_init__(self):
        super().__post_init__()
        check_ranges(
            self,
            positive=("clip_range", "minibatch_size", "n_epochs"),
            positive_or_none=("clip_range_value", "target_kl"),
            non_negative=("vf_coef", "ent_coef"),
        )


@register_algorithm("ppo")
class PPO(Algorithm):
    Config = PPOConfig

    def update(self, batch: TrainBatch) -> dict[str, float]:
        cfg: PPOConfig = self.config
        stats, stopped_early = StatsMean(), False
        for _epoch in range(cfg.n_epochs):
            for mb in minibatches(batch, cfg.minibatch_size, shuffle=True):
                step = self._minibatch_step(mb)
                stats.add(step)
                if (
                    cfg.target_kl is not None
                    and self.global_mean(step["policy/approx_kl"]) > 1.5 * cfg.target_kl
                ):
                    stopped_early = True
                    break
            if stopped_early:
                break
        out = stats.mean()
        out["policy/explained_variance"] = explained_variance(
            batch.old_values, batch.returns, batch.response_mask
        )
        out["ppo/gradient_steps"] = float(stats.steps)
        out["ppo/early_stopped"] = float(stopped_early)
        return out

    def _minibatch_step(self, mb: TrainBatch) -> dict[str, float]:
        stats, grad_norm = self.accumulate(mb, self._loss)
        return {**stats, "policy/grad_norm": grad_norm}

    def _loss(self, mb: TrainBatch) -> tuple:
        cfg: PPOConfig = self.config
        mask = mb.response_mask
        scored = self.score(mb, entropy_grad=cfg.ent_coef > 0)
        pg_loss, pg_stats = ppo_policy_loss(
            scored.logprobs, mb.old_logprobs, mb.advantages, mask, cfg.clip_range
        )
        v_loss, v_stats = clipped_value_loss(
            scored.values, mb.old_values, mb.returns, mask, cfg.clip_range_value
        )
        entropy = masked_entropy_mean(scored, mask)
        loss = pg_loss + cfg.vf_coef * v_loss - cfg.ent_coef * entropy
        return loss, {
            "loss/policy": pg_loss.item(),
            "loss/value": v_loss.item(),
            "loss/entropy": entropy.item(),
            "loss/total": loss.item(),
            "policy/approx_kl": float(pg_stats["approx_kl"]),
            "ppo/clip_fraction": float(pg_stats["clip_fraction"]),
            "ppo/ratio_mean": float(pg_stats["ratio_mean"]),
            "ppo/value_clip_fraction": float(v_stats["value_clip_fraction"]),
        }
