"""GRPO maths (Shao et al. 2024, "DeepSeekMath", §4.1; Liu et al. 2025, "Understanding R1-Zero-Like Training").

* Group-relative advantages: each prompt is sampled ``k`` times; an episode's advantage is its return minus the
  mean return of its group, divided by the group's standard deviation (+ eps) unless std scaling is off
  (Dr. GRPO drops it: it up-weights groups whose rewards barely differ, i.e. too easy or too hard prompts).
* A per-token loss ``-min(r A, clip(r, 1-eps, 1+eps) A) + beta * KL3_t`` with ``r = pi / pi_old`` and
  ``KL3_t = pi_ref/pi - log(pi_ref/pi) - 1`` (DeepSeekMath eq. 4; Schulman's k3 estimator).
* One of three aggregations of the per-token loss over a minibatch, each a named option because they differ:
  ``sequence_mean`` (the GRPO paper: mean over sequences of each sequence's token mean, so a token of a long
  response weighs less), ``token_mean`` (every token counts the same: DAPO, Yu et al. 2025) and ``constant``
  (Dr. GRPO: the token sum divided by ``sequences * L`` for a fixed ``L``, so neither the response length nor
  the batch's token count rescales the gradient).

All functions are pure; shapes in the docstrings. ``B`` episodes (``G = B / k`` groups), ``T`` response tokens.
"""

from __future__ import annotations

import torch

from rl4text.core.kl import kl_estimate

AGGREGATIONS = ("sequence_mean", "token_mean", "constant")


def group_advantages(
    returns: torch.Tensor, k: int, *, scale_by_std: bool = True, eps: float = 1e-4
) -> tuple[torch.Tensor, torch.Tensor]:
    """Group-normalised advantages of consecutive groups of ``k`` episodes.

    ``A_i = (R_i - mean_g R) / (std_g R + eps)`` with the sample (Bessel-corrected, ``k - 1``) standard
    deviation, as TRL's GRPO computes it; ``scale_by_std=False`` gives ``A_i = R_i - mean_g R`` (Dr. GRPO).
    A group whose returns are all equal has zero advantages either way (it carries no learning signal).

    Args:
        returns: ``[B]`` episode returns, ``B = G * k``, the ``k`` samples of a prompt consecutive.
    Returns:
        ``(advantages [B], zero_std [G] bool)``: ``zero_std`` marks groups whose returns are all equal.
    """
    if k < 2 or returns.numel() % k:
        raise ValueError(
            f"group_advantages: {returns.numel()} returns do not split into groups of k={k} >= 2"
        )
    groups = returns.view(-1, k)
    centred = groups - groups.mean(dim=1, keepdim=True)
    std = groups.std(dim=1, keepdim=True)  # unbiased (k - 1)
    zero_std = (groups == groups[:, :1]).all(dim=1)
    advantages = centred / (std + eps) if scale_by_std else centred
    advantages = torch.where(zero_std[:, None], torch.zeros_like(advantages), advantages)
    return advantages.reshape(-1), zero_std


def grpo_token_losses(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    *,
    clip_range: float,
    ref_logprobs: torch.Tensor | None = None,
    beta: float = 0.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Per-token GRPO loss ``[B, T]``: clipped surrogate plus ``beta`` times the k3 KL to the reference.

    ``loss_t = max(-r_t A_t, -clip(r_t, 1 - eps, 1 + eps) A_t) + beta * KL3_t``, ``r_t = exp(logp_t - old_t)``,
    ``KL3_t = exp(ref_t - logp_t) - (ref_t - logp_t) - 1`` (zero when ``ref_logprobs`` is None or ``beta`` = 0).
    Inputs ``[B, T]`` (``advantages`` broadcast per token). Returns the per-token losses and ``[B, T]`` tensors:
    ``clipped_low`` / ``clipped_high`` (the clipped term was chosen with ``r < 1 - eps`` / ``r > 1 + eps``;
    low happens for negative advantages, high for positive ones), ``kl`` (the k3 estimate, detached).
    """
    ratio = torch.exp(logprobs - old_logprobs)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_range, 1.0 + clip_range)
    losses = torch.maximum(unclipped, clipped)
    kl = torch.zeros_like(logprobs)
    if ref_logprobs is not None and beta != 0.0:
        kl = kl_estimate(logprobs, ref_logprobs, "k3")
        losses = losses + beta * kl
    with torch.no_grad():
        chosen = clipped > unclipped
        parts = {
            "clipped_low": chosen & (ratio < 1.0 - clip_range),
            "clipped_high": chosen & (ratio > 1.0 + clip_range),
            "kl": kl.detach(),
            "ratio": ratio.detach(),
        }
    return losses, parts


def aggregate_token_losses(
    losses: torch.Tensor, mask: torch.Tensor, mode: str, *, constant: float | None = None
) -> torch.Tensor:
    """Reduce per-token losses ``[B, T]`` over real tokens ``mask [B, T]`` to a scalar.

    * ``sequence_mean``: ``(1/B) sum_i (1/|o_i|) sum_t l_it`` (GRPO paper; an empty response counts as 0);
    * ``token_mean``: ``sum_it l_it / sum_i |o_i|``;
    * ``constant``: ``sum_it l_it / (B * constant)`` (Dr. GRPO, ``constant`` = the generation budget).
    """
    mask = mask.to(losses.dtype)
    total = losses * mask
    if mode == "sequence_mean":
        return (total.sum(-1) / mask.sum(-1).clamp(min=1.0)).mean()
    if mode == "token_mean":
        return total.sum() / mask.sum().clamp(min=1.0)
    if mode == "constant":
        if constant is None or constant <= 0:
            raise ValueError(f"the constant aggregation needs a positive normaliser, got {constant!r}")
        return total.sum() / (losses.shape[0] * constant)
    raise ValueError(f"unknown loss aggregation {mode!r}; valid: {', '.join(AGGREGATIONS)}")
