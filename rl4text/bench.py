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
``results.md`` (per metric: the start, mean over seeds with its 95% Student-t interval, a paired bootstrap of every
seed against the starting model on the same test items and the interval of the change over seeds and test set:
:mod:`rl4text.bench_stats`; reward-hacking guards and sample outputs: :mod:`rl4text.bench_report`) and plots.
Paths in ``results.json`` are relative (:func:`portable`).
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

from rl4text.bench_stats import LOWER_IS_BETTER, NEUTRAL, ResultsError, summarize
from rl4text.bench_stats import seed_verdict as _verdict
from rl4text.compare import Group, fmt, load_run_folder, plot_curves
from rl4text.compare import curves as curve_data
from rl4text.config import Config, ConfigError, load_config, load_yaml

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
__all__ = ["LOWER_IS_BETTER", "NEUTRAL", "Bench", "BenchError", "_verdict", "run_bench", "summarize"]


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
        data = load_yaml(path.read_text(), str(path)) or {}  # duplicate keys rejected, as in run configs
    except ConfigError as exc:
        raise BenchError(str(exc)) from None
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


def portable(path: str | Path, out: Path) -> str:
    """``path`` as results.json stores it: relative to the repository holding it (the nearest folder above it
    with ``.git``), else relative to the results folder ``out``; never this machine's absolute path."""
    path = Path(path).resolve()
    for folder in path.parents:
        if (folder / ".git").exists():
            return path.relative_to(folder).as_posix()
    return Path(os.path.relpath(path, out.resolve())).as_posix()


def write_results(bench: Bench, extra: list[str]) -> Path:
    """Recompute ``results.json``, ``results.md`` and the plots from the benchmark folder's files alone (what
    ``rl4text bench FILE --report`` does); returns ``results.md``'s path."""
    from rl4text.bench_report import markdown
    from rl4text.runtime import write_text_atomic

    try:
        res = summarize(bench)
    except ResultsError as exc:
        raise BenchError(str(exc)) from None
    out = bench.output_dir
    command = " ".join(
        ["rl4text bench", shlex.quote(portable(bench.path, out)), *(shlex.quote(o) for o in extra)]
    )
    cfg = bench.config(next(iter(bench.algorithms)), bench.seeds[0], extra)
    meta = {
        "bench": bench.name,
        "file": portable(bench.path, out),
        "base_config": portable(bench.base_config, out),
        "paths_relative_to": "the repository root (or, for a file outside a repository, the results folder)",
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
    write_text_atomic(out / "results.json", json.dumps({**meta, **res}, indent=2) + "\n")
    plots = _plots(bench)
    write_text_atomic(out / "results.md", markdown(bench, meta, res, plots))
    return out / "results.md"


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
