"""What a de->en translation policy learned, read from a benchmark folder's test predictions.

For the starting model and every trained run (``<bench>/start``, ``<bench>/runs/*/test``): how many outputs still
look German (contain one of a few German function words that English never uses as words), how many wrap the
answer in commentary ("translates to", "English:", "translation"), and the mean output length in characters.

    python benchmarks/translation_diagnostics.py runs/bench/multi30k_de_en_smollm2
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

GERMAN = re.compile(
    r"\b(ein|eine|einem|einen|einer|der|die|das|und|mit|auf|ist|sind|sich|im)\b", re.IGNORECASE
)
WRAPPER = re.compile(r"translat|english:|\bin german\b|übersetz", re.IGNORECASE)


def diagnose(predictions: Path) -> dict:
    rows = [json.loads(line) for line in predictions.read_text().splitlines() if line.strip()]
    texts = [r["completion"] for r in rows]
    return {
        "n": len(texts),
        "german_looking": sum(bool(GERMAN.search(t)) for t in texts),
        "wrapped": sum(bool(WRAPPER.search(t)) for t in texts),
        "mean_chars": sum(len(t) for t in texts) / max(len(texts), 1),
    }


def prediction_files(bench_dir: Path) -> dict[str, Path]:
    """System name -> test ``predictions.jsonl``: the starting model, then every run (shared with the summary
    diagnostics)."""
    systems = {"starting model": bench_dir / "start" / "predictions.jsonl"}
    for run in sorted((bench_dir / "runs").glob("*/test/predictions.jsonl")):
        systems[run.parent.parent.name] = run
    return systems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bench_dir", type=Path)
    args = parser.parse_args()
    systems = prediction_files(args.bench_dir)
    print("| system | outputs | German-looking | wrapped in commentary | mean characters |")
    print("|---|---:|---:|---:|---:|")
    for name, path in systems.items():
        d = diagnose(path)
        print(f"| {name} | {d['n']} | {d['german_looking']} | {d['wrapped']} | {d['mean_chars']:.1f} |")


if __name__ == "__main__":
    main()
