"""A GRUE-style table (rows: the starting model, then + each algorithm; columns: metrics) from benchmark results.

Each algorithm cell: mean over seeds, then the change from the starting model with its 95% interval over seeds and
test items (``results.json`` ``summary.<algo>.<metric>.paired.combined``; the Student-t half-width over seeds where
no paired test exists), and a mark when that interval excludes zero.

    python benchmarks/grue_table.py benchmarks/results/multi30k_de_en_smollm2/results.json \
        --metrics reward chrf bleu meteor bertscore response_length eos_rate --start-label zero-shot

Several benchmarks that share test items (e.g. the zero-shot and the supervised warm-start benchmarks) go into one
table, each with its own start label, in the order given: ``results A.json B.json --start-label zero-shot
supervised``. Each block's changes are against its own starting model.
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


def table(
    results: dict, metrics: list[str], start_label: str, percent: set[str], header: bool = True
) -> list[str]:
    def scale(m: str) -> float:
        return 100.0 if m in percent else 1.0

    lines = ["| model | " + " | ".join(metrics) + " |", "|---|" + "---:|" * len(metrics)] if header else []
    start = results["start"]
    starts = [f"{start[m] * scale(m):.2f}" if m in start else "–" for m in metrics]
    lines.append(f"| {start_label} | " + " | ".join(starts) + " |")
    for algo, summary in results["summary"].items():
        n = next(iter(summary.values()))["n"]
        cells = [cell(summary[m], scale(m)) if m in summary else "–" for m in metrics]
        lines.append(f"| {start_label} + {algo} (n={n}) | " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, nargs="+", help="benchmarks' results.json, one block each")
    parser.add_argument("--metrics", nargs="+", required=True)
    parser.add_argument("--start-label", nargs="+", default=None, help="one per results file")
    parser.add_argument("--percent", nargs="*", default=["reward", "eos_rate"], help="metrics shown ×100")
    args = parser.parse_args()
    labels = args.start_label or ["starting model"] * len(args.results)
    if len(labels) != len(args.results):
        parser.error(f"--start-label: {len(labels)} labels for {len(args.results)} results files")
    lines: list[str] = []
    for i, (path, label) in enumerate(zip(args.results, labels)):
        results = json.loads(path.read_text())
        lines += table(results, args.metrics, label, set(args.percent), header=i == 0)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
