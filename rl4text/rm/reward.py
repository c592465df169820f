"""The ``learned_rm`` reward: a reward model trained by ``rl4text rm train`` as an RL reward.

Registered lazily (``rl4text.registry``: ``"learned_rm": "rl4text.rm.reward:learned_rm_reward"``), so that the
reward package never imports ``rl4text.rm``.
"""

from __future__ import annotations

from rl4text.registry import register_reward


@register_reward("learned_rm")
def learned_rm_reward(
    path: str,
    normalize: bool = True,
    batch_size: int = 32,
    device: str = "auto",
    dtype: str = "float32",
):
    """A reward model trained by ``rl4text rm train`` (its folder ``path``) scoring (prompt, completion).

    With ``normalize`` (default) the raw score becomes ``(raw - mean) / std`` with the statistics stored in
    the folder's ``rm_meta.json``: over the training completions or references when it was trained, or over
    initial-policy samples after ``rl4text rm calibrate``, so the reward starts near mean 0, std 1.
    """
    from rl4text.rm.model import RewardModel

    rm = RewardModel(path, device=device, dtype=dtype)

    def learned_rm(prompts, completions, references, **_):
        if normalize:
            return rm.normalized(list(prompts), list(completions), batch_size=batch_size)
        return rm.raw(list(prompts), list(completions), batch_size=batch_size)

    learned_rm.reward_model = rm  # type: ignore[attr-defined]
    return learned_rm
