"""Compare the registered algorithms on the smoke task: reward against iterations, mean ± std over seeds.

    .venv/bin/python benchmarks/compare_algorithms.py [--algorithms ppo a2c trpo nlpo rloo grpo] [--seeds 0 1 2]
        [--model causal|seq2seq] [--iterations 30] [--output benchmarks/results/smoke_algorithms] [--merge]

Every run uses ``configs/smoke.yaml`` with only ``algorithm.name`` (and the seed) changed, so the algorithms differ
in their update alone. Finished runs (their ``eval.json`` exists) are reused, so an interrupted comparison resumes.
Writes ``<output>.json`` (every run's reward curve), ``<output>.md`` (the table) and ``<output>.png`` (when
matplotlib is installed). ``--merge`` keeps the other algorithms' results from an existing ``<output>.json`` (same
seeds and iterations) and runs only the listed ones, e.g. ``--algorithms grpo --merge`` after adding an algorithm;
the table then says which date each algorithm's runs are from (seconds per iteration compare only within a date).
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import time
from pathlib import Path

from rl4text.config import load_config
from rl4text.train import train

SMOKE = "configs/smoke.yaml"
T5 = "model.random_init={model_type: t5, d_model: 64, d_ff: 128, num_layers: 2, num_heads: 4, d_kv: 16}"


def run_one(algorithm: str, seed: int, args: argparse.Namespace) -> dict:
    """Train (or reuse) one run; return its reward curve, final eval reward and seconds per iteration."""
    out = Path(args.runs) / f"{args.model}-{algorithm}-seed{seed}"
    overrides = [f"algorithm.name={algorithm}", f"train.seed={seed}", f"train.iterations={args.iterations}"]
    overrides += ["train.save_final_model=false", "eval.every=0", "tracking.print_every=0"]
    # one W&B group per comparison, so the W&B UI shows the algorithms side by side
    overrides += [f"tracking.wandb.group=compare-smoke-{args.model}", "tracking.progress=none"]
    if args.model == "seq2seq":
        overrides.append(T5)
    if not (out / "eval.json").is_file():
        start = time.perf_counter()
        train(load_config(SMOKE, overrides), out, overwrite=True)
        print(f"{algorithm:5s} seed {seed}: {time.perf_counter() - start:.1f}s", flush=True)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if "rollout/reward_mean" in r]
    return {
        "rewards": [r["rollout/reward_mean"] for r in train_rows],
        "eval_reward": json.loads((out / "eval.json").read_text())["reward"],
        "seconds_per_iteration": statistics.mean(r["time/iteration_s"] for r in train_rows),
    }


def previous_results(output: Path, args: argparse.Namespace) -> tuple[dict, dict]:
    """Results and run dates of the algorithms not being re-run, from an earlier ``<output>.json``."""
    path = output.with_suffix(".json")
    if not path.is_file():
        raise SystemExit(f"--merge: {path} does not exist; run without --merge first")
    old = json.loads(path.read_text())
    if old["args"]["seeds"] != args.seeds or old["args"]["iterations"] != args.iterations:
        raise SystemExit(
            f"--merge: {path} has seeds {old['args']['seeds']} and {old['args']['iterations']} iterations; "
            f"pass the same --seeds and --iterations, or re-run every algorithm without --merge"
        )
    undated = old.get("dates", {}).get  # files written before dates were recorded carry the md's date
    md = output.with_suffix(".md")
    fallback = md.read_text().split("\n")[2].split(";")[0] if md.is_file() else "unknown date"
    results = {a: r for a, r in old["results"].items() if a not in args.algorithms}
    return results, {a: undated(a) or fallback for a in results}


def run_dates(dates: dict[str, str]) -> str:
    """``"2026-11-22"``, or ``"runs of 2026-11-22 (ppo, a2c) and 2026-12-01 (grpo)"`` when they differ."""
    by_date: dict[str, list[str]] = {}
    for algo, date in dates.items():
        by_date.setdefault(date, []).append(algo)
    if len(by_date) == 1:
        return next(iter(by_date))
    return "runs of " + " and ".join(f"{d} ({', '.join(a)})" for d, a in by_date.items())


def mean_std(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {sd:.3f}"


def table(results: dict[str, list[dict]], checkpoints: list[int]) -> str:
    head = "| algorithm | " + " | ".join(f"reward @ iter {c}" for c in checkpoints)
    head += " | final eval reward (greedy) | s / iteration |"
    lines = [head, "|---" * (len(checkpoints) + 3) + "|"]
    for algo, runs in results.items():
        cells = [mean_std([r["rewards"][c - 1] for r in runs]) for c in checkpoints]
        cells.append(mean_std([r["eval_reward"] for r in runs]))
        cells.append(f"{statistics.mean(r['seconds_per_iteration'] for r in runs):.2f}")
        lines.append(f"| {algo} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(results: dict[str, list[dict]], path: Path, title: str) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(7, 4))
    for algo, runs in results.items():
        curves = list(zip(*(r["rewards"] for r in runs)))
        mean = [statistics.mean(c) for c in curves]
        sd = [statistics.stdev(c) if len(c) > 1 else 0.0 for c in curves]
        x = range(1, len(mean) + 1)
        ax.plot(x, mean, label=algo)
        ax.fill_between(x, [m - s for m, s in zip(mean, sd)], [m + s for m, s in zip(mean, sd)], alpha=0.2)
    ax.set(xlabel="iteration", ylabel="mean rollout reward", title=title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--algorithms", nargs="+", default=["ppo", "a2c", "trpo", "nlpo", "rloo", "grpo"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--model", choices=["causal", "seq2seq"], default="causal")
    p.add_argument("--iterations", type=int, default=30)
    p.add_argument("--runs", default="runs/compare_algorithms", help="folder of the individual runs")
    p.add_argument(
        "--output", default=None, help="results prefix (default benchmarks/results/smoke_algorithms_MODEL)"
    )
    p.add_argument(
        "--merge",
        action="store_true",
        help="keep the other algorithms' results from the existing <output>.json",
    )
    args = p.parse_args()
    output = Path(args.output or f"benchmarks/results/smoke_algorithms_{args.model}")
    output.parent.mkdir(parents=True, exist_ok=True)
    results, dates = previous_results(output, args) if args.merge else ({}, {})
    today = str(datetime.date.today())
    for a in args.algorithms:
        results[a] = [run_one(a, s, args) for s in args.seeds]
        dates[a] = today
    checkpoints = sorted({c for c in (1, 5, 10, 20, args.iterations) if c <= args.iterations})
    title = f"smoke task ({args.model}), {len(args.seeds)} seeds"
    md = [
        f"# Algorithms on the smoke task ({args.model} model)",
        "",
        f"{run_dates(dates)}; `configs/smoke.yaml` with only `algorithm.name` and the seed changed; "
        f"{args.iterations} iterations; seeds {args.seeds}. Reward = share of vowels in the completion "
        "(random policy ≈ 0.2, best 1.0); mean ± sample std over seeds. 'final eval' is greedy decoding on the "
        "32 held-out prompts.",
        "",
        "Command: `.venv/bin/python benchmarks/compare_algorithms.py "
        + f"--model {args.model} --seeds {' '.join(map(str, args.seeds))} --iterations {args.iterations}`"
        + (
            f" (the {', '.join(args.algorithms)} rows: add `--algorithms {' '.join(args.algorithms)} --merge`)"
            if args.merge
            else ""
        ),
        "",
        table(results, checkpoints),
    ]
    if plot(results, output.with_suffix(".png"), title):
        md += ["", f"![reward against iterations]({output.with_suffix('.png').name})"]
    output.with_suffix(".md").write_text("\n".join(md) + "\n")
    record = {"args": {**vars(args), "algorithms": list(results)}, "dates": dates, "results": results}
    output.with_suffix(".json").write_text(json.dumps(record, indent=1))
    print("\n".join(md))


if __name__ == "__main__":
    main()
