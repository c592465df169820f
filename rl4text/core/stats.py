"""Masked statistics. ``mask`` is 1.0 on real response tokens and 0.0 after EOS and on padding."""

from __future__ import annotations

from collections.abc import Callable

import torch


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of ``x`` over positions where ``mask`` is 1. ``x, mask: [B, T]``; ``dim=None`` reduces all."""
    mask = mask.to(x.dtype)
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp(min=1.0)
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=1.0)


def masked_var(x: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    """Variance of the masked entries of ``x`` (a scalar); Bessel-corrected when ``unbiased``."""
    mask = mask.to(x.dtype)
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    if unbiased:
        n = mask.sum()
        if n > 1:
            var = var * n / (n - 1)
    return var


def masked_whiten(
    x: torch.Tensor,
    mask: torch.Tensor,
    shift_mean: bool = True,
    eps: float = 1e-8,
    *,
    all_reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """``(x - mean) / std`` with mean and std over masked entries only; masked-out entries become 0.

    Padding must not leak into the statistics: a batch with long padding would otherwise drag the mean to 0.
    ``all_reduce`` (a sum over processes) makes mean and std those of every process's entries together.
    """
    if all_reduce is None:
        mean, var = masked_mean(x, mask), masked_var(x, mask)
    else:
        mean, var = global_mean_var(x, mask, all_reduce)
    whitened = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        whitened = whitened + mean
    return whitened * mask.to(x.dtype)


def global_mean_var(
    x: torch.Tensor, mask: torch.Tensor, all_reduce: Callable[[torch.Tensor], torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Masked mean and unbiased variance of ``x`` over the entries of every process (two all-reduces of sums);
    the same numbers :func:`masked_mean` / :func:`masked_var` give on the concatenated batch."""
    m = mask.to(x.dtype)
    sums = all_reduce(torch.stack([(x * m).sum(), m.sum()]))
    n = sums[1]
    mean = sums[0] / n.clamp(min=1.0)
    var = all_reduce(((x - mean) ** 2 * m).sum()) / n.clamp(min=1.0)
    if n > 1:
        var = var * n / (n - 1)
    return mean, var


def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> float:
    """``1 - Var[returns - values] / Var[returns]`` over masked entries (1 = perfect critic, <=0 = useless)."""
    var_returns = masked_var(returns, mask)
    if var_returns <= 0:
        return float("nan")
    return float(1.0 - masked_var(returns - values, mask) / var_returns)
