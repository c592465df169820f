"""A ``module:Name`` reward for tests: the share of vowels, NaN on one chosen call (``NAN_AT_CALL``, 1-based)."""

from __future__ import annotations

CALLS = [0]
NAN_AT_CALL: list[int | None] = [None]


def nan_reward(chars: str = "aeiou"):
    def reward(prompts, completions, references, **_):
        CALLS[0] += 1
        if CALLS[0] == NAN_AT_CALL[0]:
            return [float("nan")] * len(completions)
        return [sum(c in chars for c in text) / max(len(text), 1) for text in completions]

    return reward
