"""Direct preference optimisation losses (Rafailov et al. 2023, "Direct Preference Optimization") and the
interval of a preference accuracy.

With ``h = (log pi(y_w|x) - log pi_ref(y_w|x)) - (log pi(y_l|x) - log pi_ref(y_l|x))`` for a preferred ``y_w`` and a
dispreferred ``y_l`` (sums of response-token log-probs):

* ``sigmoid`` (DPO, eq. 7): ``-log sigmoid(beta h)``; with label smoothing ``eps`` (conservative DPO, Mitchell 2023,
  as TRL): ``-(1 - eps) log sigmoid(beta h) - eps log sigmoid(-beta h)``, the loss of labels flipped with prob. eps;
* ``ipo`` (Azar et al. 2023, "A General Theoretical Paradigm to Understand Learning from Human Preferences",
  eq. 17): ``(h - 1 / (2 beta))^2``, which regresses the log-ratio gap to a finite target instead of pushing it
  to infinity (here on summed log-probs, as in the paper; TRL averages them per token).

The implicit rewards are ``beta * (log pi - log pi_ref)`` of each response; their difference is the reward margin.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

DPO_LOSSES = ("sigmoid", "ipo")


def dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    *,
    beta: float,
    loss_type: str = "sigmoid",
    label_smoothing: float = 0.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Mean DPO / IPO loss over ``B`` pairs; every input is ``[B]`` summed response log-probs.

    Returns the loss and detached ``[B]`` stats: ``chosen_rewards``, ``rejected_rewards`` (implicit rewards),
    ``margins`` (their difference) and ``accuracy`` (1 when the chosen response has the higher implicit reward,
    0.5 on a tie, e.g. at the start when policy = reference, 0 otherwise).
    """
    if beta <= 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    chosen_logratio = policy_chosen - ref_chosen
    rejected_logratio = policy_rejected - ref_rejected
    h = chosen_logratio - rejected_logratio
    if loss_type == "sigmoid":
        losses = -(1.0 - label_smoothing) * F.logsigmoid(beta * h) - label_smoothing * F.logsigmoid(-beta * h)
    elif loss_type == "ipo":
        if label_smoothing:
            raise ValueError("label_smoothing applies to the sigmoid loss only; IPO has no labels to smooth")
        losses = (h - 1.0 / (2.0 * beta)) ** 2
    else:
        raise ValueError(f"unknown DPO loss {loss_type!r}; valid: {', '.join(DPO_LOSSES)}")
    with torch.no_grad():
        chosen, rejected = beta * chosen_logratio.detach(), beta * rejected_logratio.detach()
        margins = chosen - rejected
        accuracy = (margins > 0).float() + 0.5 * (margins == 0).float()
    stats = {"chosen_rewards": chosen, "rejected_rewards": rejected, "margins": margins, "accuracy": accuracy}
    return losses.mean(), stats


def wilson_interval(successes: float, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson score interval (Wilson 1927) of a proportion ``successes / n``; 95% by default.

    Unlike the normal approximation it stays inside [0, 1] and is not degenerate at 0 or n successes. It treats the
    ``n`` trials as independent: pairs that share a prompt are not, so for such data it is optimistic.
    """
    if n <= 0:
        return (math.nan, math.nan)
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1.0 - p) / n + z * z / (4 * n * n))
    return (max(0.0, centre - half), min(1.0, centre + half))
