"""``rl4text quickstart`` (``make demo``): PPO on SmolLM2-135M-Instruct translating Multi30k German->English.

Evaluates the starting model and the trained one on held-out test sentences and prints a before/after table.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from rl4text.config import load_config
from rl4text.train import check_config_runs, train

PRESET = Path(__file__).parent / "presets" / "quickstart.yaml"
SHOWN = [
    ("chrf", "chrF"),
    ("bleu", "BLEU"),
    ("reward", "reward (chrF/100)"),
    ("response_length", "length (tokens)"),
]


def before_after(run_dir: Path) -> tuple[dict, dict]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    before = next(r for r in rows if r["iteration"] == 0 and "eval/chrf" in r)
    after = json.loads((run_dir / "eval.json").read_text())
    return {k[5:]: v for k, v in before.items() if k.startswith("eval/")}, after


def format_table(before: dict, after: dict, n: int, iterations: int) -> str:
    lines = [
        f"Multi30k de->en, {n} held-out test sentences, greedy decoding; PPO for {iterations} iterations",
        "",
        "| metric | before | after | change |",
        "|---|---:|---:|---:|",
    ]
    for key, label in SHOWN:
        if key in before and key in after:
            lines.append(
                f"| {label} | {before[key]:.2f} | {after[key]:.2f} | {after[key] - before[key]:+.2f} |"
            )
    return "\n".join(lines)


def run_quickstart(output_dir: str | None, overrides: list[str]) -> int:
    cfg = load_config(PRESET, overrides)
    check_config_runs(cfg, str(PRESET))
    out = Path(output_dir) if output_dir else Path("runs") / f"quickstart-{time.strftime('%Y%m%d-%H%M%S')}"
    print(
        f"rl4text quickstart: {cfg.model.name_or_path} on {cfg.task.name} "
        f"({cfg.task.args.get('source_lang')}->{cfg.task.args.get('target_lang')}), "
        f"{cfg.algorithm.name.upper()} with a chrF reward and KL penalty, {cfg.train.iterations} iterations"
    )
    start = time.perf_counter()
    train(cfg, out)
    minutes = (time.perf_counter() - start) / 60
    before, after = before_after(out)
    table = format_table(before, after, cfg.eval.max_samples or 0, cfg.train.iterations)
    (out / "before_after.md").write_text(table + "\n")
    print()
    print(table)
    print()
    print(
        f"took {minutes:.1f} min; run folder: {out} (config.yaml, metrics.jsonl, samples.jsonl, eval.json, "
        "checkpoints/, model/)"
    )
    return 0
