"""A GRUE-style table (rows: the starting model, then + each algorithm; columns: metrics) from benchmark results.

Each algorithm cell: mean over seeds, then the change from the starting model with its 95% interval over seeds and
test items (``results.json`` ``summary.<algo>.<metric>.paired.combined``; the Student-t half-width over seeds where
no paired test exists), and a mark when that interval excludes zero.

    python benchmarks/grue_table.py benchmarks/results/multi30k_de_en_smollm2/results.json \
        --metrics reward chrf bleu meteor bertscore response_length eos_rate --start-label zero-shot
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def cell(s: dict, scale: float) -> str:
    combined = (s.get("paired") or {}).get("combined")
    mean = s["mean"] * scale
    if combined:
        lo, hi = combined["lo"] * scale, combined["hi"] * scale
        mark = " **↑**" if lo > 0 else " **↓**" if hi < 0 else ""
        return f"{mean:.2f} ({combined['mean_delta'] * scale:+.2f} [{lo:+.2f}, {hi:+.2f}]){mark}"
    half = s.get("ci95_half_width")
    return f"{mean:.2f} ({s['change'] * scale:+.2f}{f' ± {half * scale:.2f}' if half is not None else ''})"


def table(results: dict, metrics: list[str], start_label: str, percent: set[str]) -> list[str]:
    def scale(m: str) -> float:
        return 100.0 if m in percent else 1.0

    lines = ["| model | " + " | ".join(metrics) + " |", "|---|" + "---:|" * len(metrics)]
    start = results["start"]
    lines.append(f"| {start_label} | " + " | ".join(f"{start[m] * scale(m):.2f}" for m in metrics) + " |")
    for algo, summary in results["summary"].items():
        n = next(iter(summary.values()))["n"]
        cells = [cell(summary[m], scale(m)) if m in summary else "–" for m in metrics]
        lines.append(f"| + {algo} (n={n}) | " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="a benchmark's results.json")
    parser.add_argument("--metrics", nargs="+", required=True)
    parser.add_argument("--start-label", default="starting model")
    parser.add_argument("--percent", nargs="*", default=["reward", "eos_rate"], help="metrics shown ×100")
    args = parser.parse_args()
    results = json.loads(args.results.read_text())
    print("\n".join(table(results, args.metrics, args.start_label, set(args.percent))))


if __name__ == "__main__":
    main()
