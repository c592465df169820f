"""Policy-gradient losses. Aggregation is stated on each: token mean over all real tokens of the minibatch."""

from __future__ import annotations

import torch

from rl4text.core.stats import masked_mean


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy ``[B, T]`` of the categorical distributions given by ``logits: [B, T, V]``.

    A ``-inf`` logit (a top-k / top-p mask) is a token of probability 0 and adds 0, not ``0 * -inf = NaN``; that
    case alone pays for the extra ``[B, T, V]`` tensor (rl4text's own masks use a finite logit).
    """
    logp = torch.log_softmax(logits.float(), dim=-1)
    p = logp.exp()
    if torch.isneginf(logits).any():
        logp = logp.masked_fill(p == 0, 0.0)
    return -(p * logp).sum(-1)


def approx_kl(logprobs: torch.Tensor, old_logprobs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """k3 estimate of KL(old || new) from the sampled tokens (Schulman 2020): ``mean((r - 1) - log r)``, r = new/old.

    The same diagnostic for every algorithm, so runs compare: inputs ``[B, T]``, token mean over ``mask``.
    """
    log_ratio = logprobs - old_logprobs
    return masked_mean(torch.expm1(log_ratio) - log_ratio, mask)


def ppo_policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_range: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO clipped surrogate (Schulman et al. 2017, eq. 7), token-mean over masked tokens.

    ``loss = -mean(min(r A, clip(r, 1-eps, 1+eps) A))`` with ``r = exp(logp - logp_old)``; all inputs ``[B, T]``.
    Returns the loss and stats: ``clip_fraction`` (share of tokens where the clipped term was chosen) and
    ``approx_kl`` (k3 estimate of KL(old || new), Schulman 2020).
    """
    log_ratio = logprobs - old_logprobs
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_range, 1.0 + clip_range)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    with torch.no_grad():
        stats = {
            "clip_fraction": masked_mean((clipped > unclipped).float(), mask),
            "approx_kl": approx_kl(logprobs, old_logprobs, mask),
            "ratio_mean": masked_mean(ratio, mask),
        }
    return loss, stats


def clipped_value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    clip_range_value: float | None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Value loss ``0.5 * mean(max((V - R)^2, (V_clip - R)^2))``, ``V_clip = V_old + clip(V - V_old, ±eps_v)``.

    ``clip_range_value=None`` gives the plain squared error. Token mean over masked tokens; inputs ``[B, T]``.
    """
    err = (values - returns) ** 2
    if clip_range_value is None:
        loss = 0.5 * masked_mean(err, mask)
        frac = torch.zeros(())
    else:
        v_clip = old_values + torch.clamp(values - old_values, -clip_range_value, clip_range_value)
        err_clip = (v_clip - returns) ** 2
        loss = 0.5 * masked_mean(torch.maximum(err, err_clip), mask)
        frac = masked_mean((err_clip > err).float(), mask).detach()
    return loss, {"value_clip_fraction": frac}
