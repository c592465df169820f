"""Synthetic judgments for smoke runs: ratings of random strings by their share of vowels.

``python -m rl4text.rm.toy OUT.jsonl`` writes generic ``ratings`` JSON lines (``rl4text.rm.data``) whose
score is exactly the ``char_fraction`` reward of the toy task, so an RM trained on them is a learned stand-in
for a reward we know, and an RL run against it must show the policy writing more vowels.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from rl4text.char_tokenizer import CHARS

VOWELS = "aeiou"


def vowel_fraction(text: str) -> float:
    letters = [c for c in text if not c.isspace()]
    return sum(c in VOWELS for c in letters) / len(letters) if letters else 0.0


def vowel_ratings(
    n_prompts: int = 200, per_prompt: int = 4, max_length: int = 12, seed: int = 0
) -> list[dict]:
    """Rows ``{"prompt", "completion", "score"}``: each completion draws a vowel with a probability drawn
    uniformly per text, else any other character of the char tokenizer (so random-policy text is covered)."""
    rng = random.Random(seed)
    others = [c for c in CHARS if c not in VOWELS]
    rows = []
    for _ in range(n_prompts):
        prompt = "letters: " + "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(6))
        for _ in range(per_prompt):
            p = rng.random()
            n = rng.randint(1, max_length)
            text = "".join(rng.choice(VOWELS) if rng.random() < p else rng.choice(others) for _ in range(n))
            rows.append({"prompt": prompt, "completion": text, "score": vowel_fraction(text)})
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="write synthetic vowel-share ratings as JSON lines")
    parser.add_argument("output")
    parser.add_argument("--n-prompts", type=int, default=200)
    parser.add_argument("--per-prompt", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rows = vowel_ratings(args.n_prompts, args.per_prompt, seed=args.seed)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(f"wrote {len(rows)} ratings to {args.output}")


if __name__ == "__main__":
    main()
