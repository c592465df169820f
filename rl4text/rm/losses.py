"""Reward-model losses on the scalar scores of one group of completions. Pure functions, shapes given.

- Bradley–Terry (Bradley & Terry 1952; Ouyang et al. 2022): ``-log sigmoid(r_better - r_worse - margin)``
  averaged over preference pairs (explicit pairs, or all pairs implied by a ranking or by ratings).
- Plackett–Luce (Plackett 1975; Luce 1959): the negative log-likelihood of the whole ranking,
  ``sum_i [logsumexp_{j ranked at or below i} r_j - r_i]``; tied items share a risk set (Breslow's rule).
- Regression: mean squared error between the score and the human rating.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

LOSSES = ("bradley_terry", "plackett_luce", "regression")


def bradley_terry(rewards: torch.Tensor, pairs: list[tuple[int, int]], margin: float = 0.0) -> torch.Tensor:
    """Mean ``-log sigmoid(r[b] - r[w] - margin)`` over ``(b, w)`` pairs. ``rewards: [n]`` -> scalar."""
    if not pairs:
        return rewards.sum() * 0.0
    better = torch.tensor([b for b, _ in pairs], device=rewards.device)
    worse = torch.tensor([w for _, w in pairs], device=rewards.device)
    return -F.logsigmoid(rewards[better] - rewards[worse] - margin).mean()


def plackett_luce(rewards: torch.Tensor, scores: list[float]) -> torch.Tensor:
    """Plackett–Luce NLL of the order given by human ``scores`` (higher first), per item of the group
    (divided by ``n``). ``rewards: [n]`` -> scalar. An item's risk set is every item not ranked above it."""
    s = torch.tensor(scores, dtype=rewards.dtype, device=rewards.device)
    at_or_below = s[None, :] <= s[:, None]  # [n, n]: row i's risk set
    logits = rewards[None, :].expand(len(scores), -1).masked_fill(~at_or_below, float("-inf"))
    return (torch.logsumexp(logits, dim=-1) - rewards).mean()


def regression(rewards: torch.Tensor, scores: list[float]) -> torch.Tensor:
    """Mean squared error ``(r_i - score_i)^2``. ``rewards: [n]`` -> scalar."""
    target = torch.tensor(scores, dtype=rewards.dtype, device=rewards.device)
    return F.mse_loss(rewards, target)


def group_loss(rewards: torch.Tensor, group, loss: str, margin: float = 0.0, target_scale=None):
    """The ``loss`` of one :class:`~rl4text.rm.data.Group` given its completions' ``rewards: [n]``.

    Pair data (no scores) only supports ``bradley_terry``. ``target_scale = (mean, std)`` standardises
    ratings for ``regression``.
    """
    if loss == "bradley_terry":
        return bradley_terry(rewards, group.preference_pairs(), margin)
    if group.scores is None:
        raise ValueError(f"loss {loss!r} needs scored or ranked groups; pair data supports 'bradley_terry'")
    if loss == "plackett_luce":
        return plackett_luce(rewards, group.scores)
    if loss == "regression":
        mean, std = target_scale or (0.0, 1.0)
        return regression(rewards, [(x - mean) / std for x in group.scores])
    raise ValueError(f"unknown loss {loss!r}; losses: {', '.join(LOSSES)}")
