"""Toy task rewards: cheap, learnable signals for smoke runs and tests."""

from __future__ import annotations

from rl4text.registry import register_reward


@register_reward("char_fraction")
def char_fraction_reward(chars: str = "aeiou", min_length: int = 1):
    """Share of the completion's non-space characters that are in ``chars``; 0 below ``min_length`` characters."""
    allowed = set(chars)

    def char_fraction(prompts, completions, references, **_):
        out = []
        for text in completions:
            letters = [c for c in text if not c.isspace()]
            out.append(
                sum(c in allowed for c in letters) / len(letters) if len(letters) >= min_length else 0.0
            )
        return out

    return char_fraction


@register_reward("length")
def length_reward(target: int = 20, unit: str = "chars"):
    """``-|len(completion) - target| / target`` (0 at the target length); ``unit`` is ``chars`` or ``words``."""
    if unit not in ("chars", "words"):
        raise ValueError(f"length reward: unit must be 'chars' or 'words', got {unit!r}")

    def length(prompts, completions, references, **_):
        sizes = [len(c) if unit == "chars" else len(c.split()) for c in completions]
        return [-abs(n - target) / target for n in sizes]

    return length
