"""Turning sequence rewards into per-token rewards with a KL penalty (Ziegler et al. 2019; Stiennon et al. 2020)."""

from __future__ import annotations

import torch

from rl4text.core.kl import kl_estimate


def last_token_index(mask: torch.Tensor) -> torch.Tensor:
    """``[B]`` index of the last real token of each row of ``mask: [B, T]`` (0 for an empty row)."""
    T = mask.shape[1]
    positions = torch.arange(T, device=mask.device).expand_as(mask)
    return torch.where(mask > 0, positions, torch.zeros_like(positions)).max(dim=1).values


def kl_penalized_rewards(
    scores: torch.Tensor,
    logprobs: torch.Tensor,
    ref_logprobs: torch.Tensor | None,
    mask: torch.Tensor,
    kl_coef: float,
    estimator: str = "k1",
    token_scores: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token rewards ``r_t = -beta * KL_t (+ token_scores_t) (+ score on the last real token)``.

    Args:
        scores: ``[B]`` sequence rewards of the finished texts.
        logprobs, ref_logprobs: ``[B, T]`` log-probs of the sampled tokens under policy and reference
            (``ref_logprobs=None``: no penalty).
        mask: ``[B, T]`` 1 on real response tokens.
        token_scores: ``[B, T]`` token-level task rewards (None: sequence reward only).

    Returns:
        ``(rewards [B, T], kl [B, T])``, zero where ``mask`` is 0.
    """
    mask = mask.to(logprobs.dtype)
    if ref_logprobs is None:
        kl = torch.zeros_like(logprobs)
    else:
        kl = kl_estimate(logprobs, ref_logprobs, estimator) * mask
    rewards = -kl_coef * kl
    if token_scores is not None:
        rewards = rewards + token_scores.to(rewards.dtype)
    rewards = rewards.scatter_add(1, last_token_index(mask)[:, None], scores.to(rewards.dtype)[:, None])
    return rewards * mask, kl
