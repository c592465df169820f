"""What a SciTLDR summarization policy learned, read from a benchmark folder's test predictions.

For the starting model and every trained run (``<bench>/start``, ``<bench>/runs/*/test``): how many summaries talk
about the text instead of its content (open with "This abstract", "The abstract" or "In this abstract", or mention
"the abstract/paper/text/article" or "the writer/author" anywhere), the mean length in words (SciTLDR's test
references: about 20), and how many end with EOS within the decoding budget.

    python benchmarks/summary_diagnostics.py runs/bench/scitldr_smollm2_concise
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
from pathlib import Path

META = re.compile(r"\b(this|the) (abstract|paper|text|article)\b|\bthe (writer|author)s?\b", re.IGNORECASE)
OPENERS = ("this abstract", "the abstract", "in this abstract")


def diagnose(predictions: Path) -> dict:
    rows = [json.loads(line) for line in predictions.read_text().splitlines() if line.strip()]
    texts = [r["completion"] for r in rows]
    ended = [r["reward/missing_eos"] == 0 for r in rows if "reward/missing_eos" in r]
    return {
        "n": len(texts),
        "opens_with_abstract": sum(t.strip().lower().startswith(OPENERS) for t in texts),
        "mentions_the_text": sum(bool(META.search(t)) for t in texts),
        "mean_words": sum(len(t.split()) for t in texts) / max(len(texts), 1),
        "ended": sum(ended) if ended else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bench_dir", type=Path)
    args = parser.parse_args()
    spec = importlib.util.spec_from_file_location(
        "translation_diagnostics", Path(__file__).with_name("translation_diagnostics.py")
    )
    shared = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(shared)
    print(
        '| system | summaries | open with "This/The/In this abstract" | mention the abstract/paper/author | mean words | ended with EOS |'
    )
    print("|---|---:|---:|---:|---:|---:|")
    for name, path in shared.prediction_files(args.bench_dir).items():
        d = diagnose(path)
        ended = "–" if d["ended"] is None else d["ended"]
        print(
            f"| {name} | {d['n']} | {d['opens_with_abstract']} | {d['mentions_the_text']} | "
            f"{d['mean_words']:.1f} | {ended} |"
        )


if __name__ == "__main__":
    main()
