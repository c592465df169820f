"""``rl4text bench BENCH.yaml``: every (algorithm, seed) pair of a benchmark from one base config, evaluated on test.

A benchmark file::

    name: multi30k_de_en_smollm2          # default: the file's stem
    base_config: ../configs/x.yaml         # relative to the benchmark file
    overrides: [train.iterations=20]       # applied to every run
    algorithms:                            # label -> extra overrides (algorithm.name defaults to the label)
      ppo: []
      nlpo: [algorithm.top_p=0.9]
    seeds: [0, 1, 2]
    test: {split: test, max_samples: 200}  # final evaluation of the starting model and of every trained policy
    output_dir: runs/bench/multi30k        # default: runs/bench/<name>, relative to the working directory

The runner trains each pair into ``<output>/runs/<label>-seed<N>/``, then decodes the test split with the trained
``model/`` into ``<run>/test/{eval.json,predictions.jsonl}``; the starting model is evaluated once into
``<output>/start/``. A pair whose ``test/eval.json`` exists is not redone; a pair interrupted mid-training resumes
from its last checkpoint (the runner turns on periodic checkpoints). Then it writes ``results.json``,
``results.md`` (per metric: mean over seeds, 95% Student-t interval, change from the starting model) and plots.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from rl4text.compare import Group, fmt, load_run_folder, mean_ci, plot_curves
from rl4text.compare import curves as curve_data
from rl4text.config import Config, ConfigError, load_config

BENCH_KEYS = {
    "name",
    "description",
    "base_config",
    "overrides",
    "algorithms",
    "seeds",
    "test",
    "output_dir",
    "curves",
    "prune_checkpoints",
}
TEST_KEYS = {"split", "max_samples"}
DEFAULT_CURVES = ["rollout/reward_mean", "kl/mean"]
LOWER_IS_BETTER = {"ter", "self_bleu", "perplexity"}
NEUTRAL = {"response_length", "eos_rate"}  # neither direction is better in itself


class BenchError(ValueError):
    """A benchmark file that cannot be run; the message names the file and key."""


@dataclass
class Bench:
    path: Path
    name: str
    base_config: Path
    overrides: list[str]
    algorithms: dict[str, list[str]]
    seeds: list[int]
    split: str
    max_samples: int | None
    output_dir: Path
    description: str = ""
    curves: list[str] = field(default_factory=list)
    prune_checkpoints: bool = False
    """Delete a pair's ``checkpoints/`` once its test evaluation is written (its ``model/`` stays); saves disk."""

    def pairs(self) -> list[tuple[str, int]]:
        return [(a, s) for a in self.algorithms for s in self.seeds]

    def run_dir(self, label: str, seed: int) -> Path:
        return self.output_dir / "runs" / f"{label}-seed{seed}"

    def config(self, label: str | None, seed: int | None, extra: list[str] = ()) -> Config:
        """The resolved config of a pair (``label=None``: the starting model's, i.e. the base config)."""
        overrides = [*self.overrides, *extra]
        if label is not None:
            algo = self.algorithms[label]
            if not any(o.startswith("algorithm.name=") for o in algo):
                overrides.append(f"algorithm.name={label}")
            overrides += algo
        if seed is not None:
            overrides.append(f"train.seed={seed}")
        overrides += [f"tracking.wandb.group=bench-{self.name}", "tracking.progress=lines"]
        cfg = load_config(self.base_config, overrides)
        if cfg.train.save_every == 0:  # so an interrupted pair resumes mid-training
            cfg.train.save_every = max(1, cfg.train.iterations // 4)
        return cfg


def load_bench(path: str | Path, output_dir: str | Path | None = None) -> Bench:
    path = Path(path)
    if not path.is_file():
        raise BenchError(f"benchmark file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise BenchError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise BenchError(f"{path}: expected a mapping with keys {sorted(BENCH_KEYS)}")
    unknown = set(data) - BENCH_KEYS
    if unknown:
        raise BenchError(f"{path}: unknown key(s) {sorted(unknown)}; valid keys: {sorted(BENCH_KEYS)}")
    if "base_config" not in data:
        raise BenchError(f"{path}: missing key 'base_config' (the YAML config every run starts from)")
    base = (path.parent / data["base_config"]).resolve()
    if not base.is_file():
        raise BenchError(f"{path}: base_config {data['base_config']!r} -> {base} does not exist")
    algos = data.get("algorithms")
    if isinstance(algos, list):
        algos = {a: [] for a in algos}
    if not isinstance(algos, dict) or not algos:
        raise BenchError(f"{path}: 'algorithms' must map labels to override lists, e.g. {{ppo: [], a2c: []}}")
    for label, extra in algos.items():
        if extra is None:
            algos[label] = []
        elif not isinstance(extra, list) or not all(isinstance(o, str) and "=" in o for o in extra):
            raise BenchError(
                f"{path}: algorithms.{label} must be a list of key=value overrides, got {extra!r}"
            )
    seeds = data.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) for s in seeds):
        raise BenchError(f"{path}: 'seeds' must be a non-empty list of integers, got {seeds!r}")
    test = data.get("test") or {}
    if not isinstance(test, dict) or set(test) - TEST_KEYS:
        raise BenchError(f"{path}: 'test' takes the keys {sorted(TEST_KEYS)}, got {test!r}")
    overrides = data.get("overrides") or []
    if not isinstance(overrides, list) or not all(isinstance(o, str) and "=" in o for o in overrides):
        raise BenchError(f"{path}: 'overrides' must be a list of key=value strings, got {overrides!r}")
    name = str(data.get("name") or path.stem)
    out = Path(output_dir or data.get("output_dir") or Path("runs") / "bench" / name)
    return Bench(
        path=path,
        name=name,
        base_config=base,
        overrides=overrides,
        algorithms=algos,
        seeds=seeds,
        split=str(test.get("split", "test")),
        max_samples=test.get("max_samples"),
        output_dir=out,
        description=str(data.get("description", "")).strip(),
        curves=list(data.get("curves") or []),
        prune_checkpoints=bool(data.get("prune_checkpoints", False)),
    )


def check_bench(bench: Bench, extra: list[str]) -> None:
    """Resolve every pair's config and the registry names before any model is loaded."""
    from rl4text.train import check_config_runs

    for label in [None, *bench.algorithms]:
        try:
            cfg = bench.config(label, bench.seeds[0], extra)
            check_config_runs(cfg, str(bench.base_config))
        except ConfigError as exc:
            where = "overrides" if label is None else f"algorithms.{label}"
            raise BenchError(f"{bench.path}: {where}: {exc}") from exc


# ------------------------------------------------------------------------------------------------- running


def _done(path: Path) -> bool:
    return (path / "eval.json").is_file()


def _test_done(path: Path, bench: Bench) -> bool:
    """A test evaluation exists and was made on this benchmark's split and number of samples."""
    if not _done(path):
        return False
    info = json.loads((path / "eval.json").read_text())
    return info.get("split") == bench.split and info.get("max_samples") == bench.max_samples


def evaluate_start(bench: Bench, extra: list[str]) -> None:
    from rl4text.commands.eval import evaluate_model, write_evaluation

    out = bench.output_dir / "start"
    if _test_done(out, bench):
        return
    cfg = bench.config(None, bench.seeds[0], extra)
    t0 = time.perf_counter()
    scores, rows = evaluate_model(cfg, bench.split, bench.max_samples)
    info = _eval_info(cfg, bench, "starting model", time.perf_counter() - t0)
    write_evaluation(out, scores, rows, info)
    print(f"[bench {bench.name}] starting model on {bench.split}: {_brief(scores)}", flush=True)


def run_pair(bench: Bench, label: str, seed: int, extra: list[str]) -> None:
    """Train (or resume) one pair, then evaluate its trained model on the test split; skips finished work."""
    from rl4text.checkpoint import latest_checkpoint
    from rl4text.commands.eval import evaluate_model, run_model_config, write_evaluation
    from rl4text.train import train

    run = bench.run_dir(label, seed)
    if _test_done(run / "test", bench):
        return
    cfg = bench.config(label, seed, extra)
    if not _done(run):
        resume = latest_checkpoint(run / "checkpoints") is not None
        started = run.exists() and any(run.iterdir())
        print(f"[bench {bench.name}] {label} seed {seed}: {'resuming' if resume else 'training'}", flush=True)
        # a folder with no checkpoint is a pair that died before its first save: start it again
        train(cfg, run, resume=resume, overwrite=started and not resume)
    t0 = time.perf_counter()
    scores, rows = evaluate_model(cfg, bench.split, bench.max_samples, run_model_config(cfg, run))
    write_evaluation(
        run / "test", scores, rows, _eval_info(cfg, bench, f"{label} seed {seed}", time.perf_counter() - t0)
    )
    print(f"[bench {bench.name}] {label} seed {seed} on {bench.split}: {_brief(scores)}", flush=True)
    if bench.prune_checkpoints and (run / "checkpoints").is_dir():
        shutil.rmtree(run / "checkpoints")


def _eval_info(cfg: Config, bench: Bench, what: str, seconds: float) -> dict:
    return {
        "what": what,
        "task": cfg.task.name,
        "split": bench.split,
        "max_samples": bench.max_samples,
        "decoding": {
            "do_sample": cfg.eval.do_sample,
            "num_beams": cfg.eval.num_beams,
            "max_new_tokens": cfg.eval.max_new_tokens or cfg.rollout.max_new_tokens,
        },
        "seconds": round(seconds, 1),
    }


def _brief(scores: dict) -> str:
    return ", ".join(f"{k}={fmt(v)}" for k, v in scores.items() if "/" not in k)


def run_bench(
    path: str | Path,
    output_dir: str | Path | None = None,
    extra: list[str] | None = None,
    jobs: int = 1,
    only: str | None = None,
    report_only: bool = False,
) -> Path:
    """Run (or resume) a benchmark and write its results; returns ``results.md``'s path.

    ``jobs > 1`` runs pairs in that many worker processes (each ``rl4text bench ... --only LABEL:SEED``) with the CPU
    threads split between them; ``only`` runs a single pair and writes no results (what a worker does);
    ``report_only`` runs nothing and writes the results of the pairs finished so far.
    """
    extra = list(extra or [])
    bench = load_bench(path, output_dir)
    check_bench(bench, extra)
    bench.output_dir.mkdir(parents=True, exist_ok=True)
    if only is not None:
        label, _, seed = only.rpartition(":")
        if label not in bench.algorithms or not seed.lstrip("-").isdigit() or int(seed) not in bench.seeds:
            raise BenchError(
                f"--only {only!r}: expected LABEL:SEED with a label in {list(bench.algorithms)} and a seed in {bench.seeds}"
            )
        run_pair(bench, label, int(seed), extra)
        return bench.output_dir
    if report_only:
        if not _test_done(bench.output_dir / "start", bench):
            raise BenchError(f"--report: {bench.output_dir} has no evaluation of the starting model yet")
        return write_results(bench, extra)
    evaluate_start(bench, extra)
    todo = [(a, s) for a, s in bench.pairs() if not _test_done(bench.run_dir(a, s) / "test", bench)]
    if jobs <= 1:
        for label, seed in todo:
            run_pair(bench, label, seed, extra)
    else:
        _run_parallel(bench, todo, extra, jobs, output_dir)
    return write_results(bench, extra)


def _run_parallel(bench: Bench, todo: list[tuple[str, int]], extra: list[str], jobs: int, output_dir) -> None:
    threads = max(1, (os.cpu_count() or 1) // jobs)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    logs = bench.output_dir / "logs"
    logs.mkdir(exist_ok=True)
    pending, running, failed = list(todo), [], []
    while pending or running:
        while pending and len(running) < jobs:
            label, seed = pending.pop(0)
            cmd = [sys.executable, "-m", "rl4text.cli", "bench", str(bench.path), "--only", f"{label}:{seed}"]
            cmd += ["--output-dir", str(bench.output_dir), *extra]
            log = (logs / f"{label}-seed{seed}.log").open("a")
            running.append(
                ((label, seed), subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env), log)
            )
            print(f"[bench {bench.name}] started {label} seed {seed} (log: {log.name})", flush=True)
        time.sleep(2)
        for item in list(running):
            (label, seed), proc, log = item
            if proc.poll() is not None:
                running.remove(item)
                log.close()
                status = "done" if proc.returncode == 0 else f"FAILED (exit {proc.returncode})"
                print(f"[bench {bench.name}] {label} seed {seed}: {status}", flush=True)
                if proc.returncode != 0:
                    failed.append(f"{label}:{seed}")
    if failed:
        raise BenchError(f"pairs failed: {', '.join(failed)}; see {logs}; rerun the same command to resume")


# ------------------------------------------------------------------------------------------------- results


def _read_eval(path: Path) -> dict:
    return json.loads((path / "eval.json").read_text())["metrics"]


def _verdict(change: float, half: float | None, metric: str) -> str:
    if half is None:
        return "one seed: no interval"
    if abs(change) <= half:
        return "no significant change"
    if metric in NEUTRAL:
        return "higher than start" if change > 0 else "lower than start"
    better = (change > 0) != (metric in LOWER_IS_BETTER)
    return "better than start" if better else "worse than start"


def summarize(bench: Bench) -> dict:
    start = _read_eval(bench.output_dir / "start")
    per_algo: dict[str, dict[int, dict]] = {}
    for label, seed in bench.pairs():
        test = bench.run_dir(label, seed) / "test"
        if _done(test):
            per_algo.setdefault(label, {})[seed] = _read_eval(test)
    metrics = [m for m in start if "/" not in m] + [m for m in start if "/" in m]
    summary: dict[str, dict[str, dict]] = {}
    for label, seeds in per_algo.items():
        summary[label] = {}
        for m in metrics:
            values = [s[m] for s in seeds.values() if m in s]
            if not values:
                continue
            mean, half = mean_ci(values)
            change = mean - start[m]
            summary[label][m] = {
                "mean": mean,
                "ci95_half_width": half,
                "n": len(values),
                "values": values,
                "start": start[m],
                "change": change,
                "verdict": _verdict(change, half, m),
            }
    speed = {}
    for label in per_algo:
        times = []
        for seed in per_algo[label]:
            path = bench.run_dir(label, seed) / "metrics.jsonl"
            if path.is_file():
                rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
                times += [r["time/iteration_s"] for r in rows if "time/iteration_s" in r]
        speed[label] = sum(times) / len(times) if times else None
    return {
        "start": start,
        "runs": per_algo,
        "summary": summary,
        "metrics": metrics,
        "seconds_per_iteration": speed,
    }


def write_results(bench: Bench, extra: list[str]) -> Path:
    res = summarize(bench)
    command = " ".join(["rl4text bench", shlex.quote(str(bench.path)), *(shlex.quote(o) for o in extra)])
    cfg = bench.config(next(iter(bench.algorithms)), bench.seeds[0], extra)
    meta = {
        "bench": bench.name,
        "file": str(bench.path),
        "base_config": str(bench.base_config),
        "overrides": bench.overrides + extra,
        "algorithms": bench.algorithms,
        "seeds": bench.seeds,
        "split": bench.split,
        "max_samples": bench.max_samples,
        "iterations": cfg.train.iterations,
        "rollout_batch_size": cfg.rollout.batch_size,
        "command": command,
        "written": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    out = bench.output_dir
    (out / "results.json").write_text(json.dumps({**meta, **res}, indent=2) + "\n")
    plots = _plots(bench)
    md = _markdown(bench, meta, res, plots)
    (out / "results.md").write_text(md)
    return out / "results.md"


def _markdown(bench: Bench, meta: dict, res: dict, plots: list[Path]) -> str:
    n_test = res["start"] and meta["max_samples"]
    lines = [f"# Benchmark `{bench.name}`", ""]
    if bench.description:
        lines += [bench.description, ""]
    lines += [
        f"- base config: `{Path(meta['base_config']).name}`, overrides: {', '.join(f'`{o}`' for o in meta['overrides']) or 'none'}",
        f"- algorithms: {', '.join(f'`{a}`' for a in bench.algorithms)}; seeds: {bench.seeds}; "
        f"{meta['iterations']} iterations × {meta['rollout_batch_size']} episodes each",
        f"- test: split `{bench.split}`, {n_test or 'all'} samples; the starting model is evaluated once "
        "(greedy decoding is seed-independent)",
    ]
    if meta["command"]:
        lines.append(f"- command (reruns or resumes it): `{meta['command']}`")
    missing = [f"{a} seed {s}" for a, s in bench.pairs() if s not in res["runs"].get(a, {})]
    if missing:
        lines.append(f"- **not run (yet): {', '.join(missing)}**; the tables hold the finished pairs only")
    timing = {a: v for a, v in res.get("seconds_per_iteration", {}).items() if v is not None}
    if timing:
        lines.append(
            "- seconds per training iteration: " + ", ".join(f"{a} {v:.1f}" for a, v in timing.items())
        )
    lines += [
        "",
        "Each cell: mean over seeds ± half-width of the 95% Student-t interval; change = mean − starting model; "
        "the verdict says whether that interval around the mean excludes the starting model's score.",
        "",
    ]
    main = [m for m in res["metrics"] if "/" not in m]
    if res["summary"]:
        lines += ["| model | " + " | ".join(main) + " |", "|---|" + "---:|" * len(main)]
        lines.append("| starting model | " + " | ".join(fmt(res["start"][m]) for m in main) + " |")
        for algo, s in res["summary"].items():
            cells = [_cell(s[m]) if m in s else "–" for m in main]
            lines.append(f"| {algo} | " + " | ".join(cells) + " |")
        lines += ["", "Overview cells: mean ± 95% CI (change vs start). Per metric, with verdicts:", ""]
    for m in res["metrics"]:
        rows = [(a, s[m]) for a, s in res["summary"].items() if m in s]
        if not rows:
            continue
        lines += [
            f"## {m}",
            "",
            "| model | seeds | mean ± 95% CI | change vs start | verdict |",
            "|---|---:|---:|---:|---|",
        ]
        lines.append(f"| starting model | – | {fmt(res['start'][m])} | – | – |")
        for algo, s in rows:
            ci = f" ± {fmt(s['ci95_half_width'])}" if s["ci95_half_width"] is not None else ""
            lines.append(
                f"| {algo} | {s['n']} | {fmt(s['mean'])}{ci} | {s['change']:+.3f} | {s['verdict']} |"
            )
        lines.append("")
    if plots:
        lines += ["## Curves", "", "Mean over seeds at each iteration; band: 95% t interval.", ""]
        lines += [f"![{p.stem}]({p.name})" for p in plots]
        lines.append("")
    return "\n".join(lines)


def _cell(s: dict) -> str:
    ci = f" ± {fmt(s['ci95_half_width'])}" if s["ci95_half_width"] is not None else ""
    return f"{fmt(s['mean'])}{ci} ({s['change']:+.3f})"


def _plots(bench: Bench) -> list[Path]:
    groups = []
    for label in bench.algorithms:
        runs = [
            load_run_folder(bench.run_dir(label, s)) for s in bench.seeds if _done(bench.run_dir(label, s))
        ]
        if runs:
            groups.append(Group(label, runs, {}))
    if not groups:
        return []
    keys = list(bench.curves) or DEFAULT_CURVES + sorted(
        {
            k
            for g in groups
            for r in g.runs
            for row in r.rows
            for k in row
            if k.startswith("eval/") and "/" not in k[5:]
        }
    )
    paths = []
    for key in keys:
        data = curve_data(groups, key)
        if any(len(d["x"]) > 1 for d in data.values()):  # a single point is no curve
            paths.append(plot_curves(data, key, bench.output_dir / f"curve_{key.replace('/', '_')}.png"))
    return paths
