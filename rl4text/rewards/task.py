"""Task rewards: length, length ratio, missing EOS, repetition. Words are whitespace-separated tokens."""

from __future__ import annotations

from rl4text.registry import register_reward


def _field(fields: dict, name: str, reward: str) -> list:
    if name not in fields:
        raise KeyError(
            f"reward {reward!r} needs the per-sample field {name!r} (the training loop, env and evaluation pass it)"
        )
    return fields[name]


def ngrams(words: list[str], n: int) -> list[tuple[str, ...]]:
    """The word n-grams of one text, in order."""
    return [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]


def distinct_ratio(words: list[str], n: int) -> float:
    """Unique n-grams / n-grams of one text (1.0 when it has no n-gram)."""
    grams = ngrams(words, n)
    return len(set(grams)) / len(grams) if grams else 1.0


@register_reward("length_ratio")
def length_ratio_reward(low: float = 0.8, high: float = 1.2):
    """``-distance`` of ``len(completion) / len(closest reference)`` (in words) from the band ``[low, high]``; 0 inside."""
    if not 0 <= low <= high:
        raise ValueError(f"length_ratio: need 0 <= low <= high, got low={low}, high={high}")

    def length_ratio(prompts, completions, references, **_):
        out = []
        for text, refs in zip(completions, references):
            n = len(text.split())
            ref_len = min((len(r.split()) for r in refs), key=lambda m: abs(m - n))
            ratio = n / max(ref_len, 1)
            out.append(-max(low - ratio, ratio - high, 0.0))
        return out

    return length_ratio


@register_reward("missing_eos")
def missing_eos_reward(penalty: float = 1.0):
    """``-penalty`` for a text cut off at ``max_new_tokens`` without emitting EOS, 0 otherwise."""

    def missing_eos(prompts, completions, references, **fields):
        return [0.0 if ended else -penalty for ended in _field(fields, "ended_with_eos", "missing_eos")]

    return missing_eos


@register_reward("repetition")
def repetition_reward(n: int = 2):
    """``-(1 - distinct-n)`` of the completion's word n-grams: 0 without repeats, down to almost -1 for a loop."""
    if n < 1:
        raise ValueError(f"repetition: n must be >= 1, got {n}")

    def repetition(prompts, completions, references, **_):
        return [distinct_ratio(text.split(), n) - 1.0 for text in completions]

    return repetition
