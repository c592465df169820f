"""Generalised advantage estimation (Schulman et al. 2016, "High-Dimensional Continuous Control Using GAE")."""

from __future__ import annotations

import torch


def compute_gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0, lam: float = 0.95
) -> tuple[torch.Tensor, torch.Tensor]:
    """Advantages and returns over response tokens.

    Args:
        rewards: ``[B, T]`` per-token rewards (KL penalty on every token, task reward on the last one).
        values: ``[B, T]`` critic values V(s_t) of the state before token t is chosen.
        mask: ``[B, T]`` 1 on real response tokens; the episode ends after the last 1 (EOS or truncation
            at ``max_new_tokens``; both are terminal, since the reward is that of the finished text).

    Returns:
        ``(advantages, returns)``, both ``[B, T]`` and zero where ``mask`` is 0;
        ``A_t = sum_k (gamma lam)^k delta_{t+k}``, ``delta_t = r_t + gamma V_{t+1} - V_t``, ``returns = A + V``.
    """
    mask = mask.to(values.dtype)
    rewards, values = rewards * mask, values * mask
    B, T = rewards.shape
    advantages = torch.zeros_like(rewards)
    last = torch.zeros(B, dtype=rewards.dtype, device=rewards.device)
    for t in reversed(range(T)):
        next_mask = mask[:, t + 1] if t + 1 < T else torch.zeros_like(last)
        next_value = values[:, t + 1] * next_mask if t + 1 < T else torch.zeros_like(last)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last = delta + gamma * lam * next_mask * last
        advantages[:, t] = last * mask[:, t]
    returns = (advantages + values) * mask
    return advantages, returns
