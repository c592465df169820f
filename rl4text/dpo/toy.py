"""Synthetic preference pairs for DPO smoke runs: of two random strings, the one with more vowels is preferred.

``python -m rl4text.dpo.toy OUT.jsonl`` writes generic ``pairs`` JSON lines (``rl4text.rm.data``), one pair per
prompt (so held-out pairs are independent), prompts in the ``toy_letters`` task's format. The judgment is the
``char_fraction`` reward of the smoke task, so DPO on these pairs and RL against an RM trained on them (or against
the reward itself) chase the same quantity.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rl4text.rm.toy import vowel_ratings


def vowel_pairs(n_prompts: int = 400, seed: int = 0) -> list[dict]:
    """Rows ``{"prompt", "chosen", "rejected"}``: two texts of :func:`rl4text.rm.toy.vowel_ratings` per prompt,
    the one with the higher vowel share chosen; prompts whose two texts tie or one is blank are
    skipped."""
    rows = vowel_ratings(n_prompts, per_prompt=2, seed=seed)
    pairs = []
    for a, b in zip(rows[::2], rows[1::2]):
        if a["score"] == b["score"] or not a["completion"].strip() or not b["completion"].strip():
            continue
        chosen, rejected = (a, b) if a["score"] > b["score"] else (b, a)
        pairs.append(
            {"prompt": a["prompt"], "chosen": chosen["completion"], "rejected": rejected["completion"]}
        )
    return pairs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="write synthetic vowel-preference pairs as JSON lines")
    parser.add_argument("output")
    parser.add_argument("--n-prompts", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    pairs = vowel_pairs(args.n_prompts, args.seed)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text("".join(json.dumps(r) + "\n" for r in pairs))
    print(f"wrote {len(pairs)} pairs to {args.output}")


if __name__ == "__main__":
    main()
