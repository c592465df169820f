"""A toy task for smoke runs: short random letter prompts; the reward decides what is wanted."""

from __future__ import annotations

import random

from rl4text.registry import register_task
from rl4text.tasks import Task


@register_task("toy_letters")
def toy_letters_task(n_train: int = 256, n_val: int = 32, length: int = 6, seed: int = 1234) -> Task:
    """Prompts ``"letters: qzkfwd"``; the reference is the prompt's letters with vowels first (for lexical metrics)."""
    rng = random.Random(seed)
    alphabet = "abcdefghijklmnopqrstuvwxyz"

    def make(n: int) -> list[dict]:
        rows = []
        for _ in range(n):
            word = "".join(rng.choice(alphabet) for _ in range(length))
            rows.append({"prompt": f"letters: {word}", "references": ["aeiou " + word], "meta": {}})
        return rows

    return Task(
        "toy_letters", {"train": make(n_train), "val": make(n_val), "test": make(n_val)}, metrics=["chrf"]
    )
