"""Group Relative Policy Optimization (GRPO; Shao et al. 2024, "DeepSeekMath", §4.1) and Dr. GRPO (Liu et al. 2025).

``k`` episodes per prompt; each episode's advantage is its return normalised within its group,
``(R_i - mean_g R) / (std_g R + eps)``, on every one of its tokens (outcome supervision); no critic. The update is
PPO's clipped ratio over minibatches x epochs, with the KL to the reference as a loss term,
``beta * KL3_t`` (k3 estimator, beta = 0.04 as in the paper), or, with ``kl_penalty: reward``, as the usual per-token
penalty in the reward. ``loss_aggregation`` names how token losses are averaged (see ``rl4text.core.grpo``).
Dr. GRPO is ``scale_rewards: false`` with ``loss_aggregation: constant``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal

import torch

from rl4text.algorithms.base import (
    Algorithm,
    OnPolicyConfig,
    StatsMean,
    TrainBatch,
    masked_entropy_mean,
    minibatches,
)
from rl4text.core import approx_kl, kl_estimate, masked_mean
from rl4text.core.grpo import aggregate_token_losses, group_advantages, grpo_token_losses
from rl4text.core.stats import global_mean_var
from rl4text.registry import register_algorithm
from rl4text.rollout import Rollout


@dataclass
class GRPOConfig(OnPolicyConfig):
    """GRPO hyper-parameters; ``gamma``, ``lam`` and the critic are unused (the return is the sequence reward)."""

    k: int = 4
    """Episodes sampled per prompt (the group size G); ``rollout.batch_size`` must be a multiple."""
    kl_coef: float = 0.04
    """beta of the KL to the reference (DeepSeekMath: 0.04); 0 builds no reference model."""
    kl_penalty: Literal["loss", "reward"] = "loss"
    """``loss``: ``beta * KL3_t`` in the loss (the paper); ``reward``: ``-beta * KL_t`` (``kl_estimator``) in the
    reward before the group normalisation, as the other algorithms."""
    clip_range: float = 0.2
    """Ratio clipping epsilon (DeepSeekMath: 0.2)."""
    scale_rewards: bool = True
    """Divide the centred returns by the group's std (+ ``eps``); Dr. GRPO turns it off."""
    eps: float = 1e-4
    """Added to the group std (TRL's value)."""
    loss_aggregation: Literal["sequence_mean", "token_mean", "constant"] = "sequence_mean"
    """Token losses to a scalar: per-sequence means averaged (GRPO paper), one mean over all tokens (DAPO), or
    the token sum over ``sequences * constant_normalizer`` (Dr. GRPO)."""
    constant_normalizer: int | None = None
    """L of the ``constant`` aggregation; ``None``: ``rollout.max_new_tokens`` (filled in when the config loads)."""
    n_epochs: int = 1
    """Passes over each rollout (DeepSeekMath's mu)."""
    minibatch_size: int | None = 8
    """Episodes per gradient step (``None``: the whole rollout in one step)."""
    whiten_advantages: bool = False
    """Group-normalised advantages need no batch whitening; off by default."""

    def __post_init__(self):
        super().__post_init__()
        if self.k < 2:
            raise ValueError(
                f"GRPO needs k >= 2 samples per prompt to normalise within a group, got {self.k}"
            )
        if self.n_epochs <= 0 or (self.minibatch_size is not None and self.minibatch_size <= 0):
            raise ValueError("n_epochs and minibatch_size must be positive")
        if not 0.0 < self.clip_range < 1.0:
            raise ValueError(f"clip_range must be in (0, 1), got {self.clip_range}")
        if self.constant_normalizer is not None and self.constant_normalizer <= 0:
            raise ValueError(f"constant_normalizer must be positive, got {self.constant_normalizer}")


@dataclass
class GRPOBatch(TrainBatch):
    """A :class:`TrainBatch` plus ``ref_logprobs: [B, T]`` (reference log-probs of the sampled tokens, or None)."""

    ref_logprobs: torch.Tensor | None = None

    def select(self, index: torch.Tensor) -> GRPOBatch:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return GRPOBatch(**{k: v[index] if isinstance(v, torch.Tensor) else v for k, v in values.items()})


@register_algorithm("grpo")
class GRPO(Algorithm):
    Config = GRPOConfig
    uses_critic = False

    @classmethod
    def samples_per_prompt_for(cls, config: GRPOConfig) -> int:
        return config.k

    @staticmethod
    def check_run_config(cfg, source: str) -> None:
        """Config-time checks that span sections (called by ``rl4text.config.validate`` before any work)."""
        from rl4text.config import ConfigError

        a: GRPOConfig = cfg.algorithm.params
        if cfg.rollout.batch_size % a.k:
            raise ConfigError(
                f"{source}: rollout.batch_size={cfg.rollout.batch_size} must be a multiple of algorithm.k={a.k} "
                f"(GRPO samples each prompt k times); e.g. rollout.batch_size={a.k * max(1, cfg.rollout.batch_size // a.k)}"
            )
        if a.kl_penalty == "loss" and a.kl_target is not None:
            raise ConfigError(
                f"{source}: algorithm.kl_target (the adaptive controller) adapts a reward penalty; with GRPO "
                "set algorithm.kl_penalty=reward to use it, or drop kl_target to keep the KL in the loss"
            )
        if a.loss_aggregation == "constant" and a.constant_normalizer is None:
            a.constant_normalizer = cfg.rollout.max_new_tokens  # Dr. GRPO normalises by the generation budget

    def prepare(self, rollout: Rollout, token_rewards: torch.Tensor) -> GRPOBatch:
        """Sequence returns -> group-normalised advantages on every response token."""
        cfg: GRPOConfig = self.config
        mask = rollout.response_mask
        returns = (token_rewards * mask).sum(-1)
        kl_in_loss = cfg.kl_penalty == "loss" and rollout.ref_logprobs is not None and cfg.kl_coef > 0
        if kl_in_loss:
            # the loop adds -kl_coef * KL_t (kl_estimator) to every algorithm's rewards; with the KL in the loss
            # the group statistics must see the task reward alone, so that penalty is added back here
            kl = kl_estimate(rollout.logprobs, rollout.ref_logprobs, cfg.kl_estimator) * mask
            returns = returns + cfg.kl_coef * kl.sum(-1)
        advantages, zero_std = group_advantages(returns, cfg.k, scale_by_std=cfg.scale_rewards, eps=cfg.eps)
        if cfg.whiten_advantages and self.all_reduce is not None:  # over every process's episodes
            mean, var = global_mean_var(advantages, torch.ones_like(advantages), self.all_reduce)
            advantages = (advantages - mean) / (var.sqrt() + 1e-8)
        elif cfg.whiten_advantages and advantages.numel() > 1:
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        self._zero_std_fraction = float(zero_std.float().mean())
        per_token = advantages[:, None] * mask
        return GRPOBatch(
            rollout.prompt_ids,
            rollout.prompt_mask,
            rollout.response_ids,
            mask,
            rollout.logprobs,
            torch.zeros_like(mask),
            per_token,
            returns[:, None] * mask,
            rollout.action_mask,
            rollout.temperature,
            ref_logprobs=rollout.ref_logprobs if kl_in_loss else None,
        )

    def update(self, batch: GRPOBatch) -> dict[str, float]:
        cfg: GRPOConfig = self.config
        stats = StatsMean()
        for _ in range(cfg.n_epochs):
            for mb in minibatches(batch, cfg.minibatch_size, shuffle=True):
                row, grad_norm = self.accumulate(mb, self._loss)
                stats.add({**row, "policy/grad_norm": grad_norm})
        out = stats.mean()
        out["grpo/zero_std_fraction"] = getattr(self, "_zero_std_fraction", float("nan"))
        out["grpo/advantage_abs_mean"] = float(batch.advantages[:, 0].abs().mean())
        out["grpo/gradient_steps"] = float(stats.steps)
        return out

    @property
    def loss_unit(self) -> str:
        """Micro-batch weights (``train.micro_batch_size``): token shares for ``token_mean``, episode shares for
        ``sequence_mean`` and Dr. GRPO's ``constant`` (both average over episodes)."""
        return "token" if self.config.loss_aggregation == "token_mean" else "episode"

    def _loss(self, mb: GRPOBatch) -> tuple[torch.Tensor, dict[str, float]]:
        """The aggregated loss of a (micro-)batch as if it were the whole minibatch, and its stats."""
        cfg: GRPOConfig = self.config
        mask = mb.response_mask
        scored = self.score(mb, with_values=False)
        logprobs = scored.logprobs * mask  # padding: logp = old = ref = 0, so ratio 1 and KL 0 there
        beta = cfg.kl_coef if mb.ref_logprobs is not None else 0.0
        losses, parts = grpo_token_losses(
            logprobs,
            mb.old_logprobs,
            mb.advantages,
            clip_range=cfg.clip_range,
            ref_logprobs=mb.ref_logprobs,
            beta=beta,
        )
        aggregate = dict(mode=cfg.loss_aggregation, constant=cfg.constant_normalizer)
        loss = aggregate_token_losses(losses, mask, **aggregate)
        with torch.no_grad():
            kl_loss = aggregate_token_losses(beta * parts["kl"], mask, **aggregate)
            entropy = masked_entropy_mean(scored, mask)
            low, high = parts["clipped_low"].float(), parts["clipped_high"].float()
            row = {
                "loss/policy": (loss - kl_loss).item(),
                "loss/kl": kl_loss.item(),
                "loss/total": loss.item(),
                "loss/entropy": entropy.item(),
                "policy/approx_kl": approx_kl(logprobs.detach(), mb.old_logprobs, mask).item(),
                "grpo/clip_fraction": masked_mean(low + high, mask).item(),
                "grpo/clip_low_fraction": masked_mean(low, mask).item(),
                "grpo/clip_high_fraction": masked_mean(high, mask).item(),
                "grpo/ratio_mean": masked_mean(parts["ratio"], mask).item(),
                "grpo/kl_ref": masked_mean(parts["kl"], mask).item(),
            }
        return loss, row
