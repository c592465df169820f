"""The statistics of ``rl4text bench`` results, recomputed from a benchmark folder alone.

Per algorithm and metric (:func:`summarize`): the starting model's score, the mean over seeds with its 95%
Student-t interval, and, when the runs' ``predictions.jsonl`` hold per-item values (or the metric is a sacrebleu
corpus metric, rescored from the completions), a paired bootstrap of every seed against the starting model on
the same resamples of the same test items (:mod:`rl4text.significance`), the combined interval of the mean change
(seed and test-set variance) and a verdict from it. Also the reward-hacking guards (final KL to the reference,
length, EOS rate) and a few test items with every system's output.
"""

from __future__ import annotations

import functools
import json
import math
import random
from pathlib import Path
from typing import TYPE_CHECKING

from rl4text.compare import mean_ci
from rl4text.significance import (
    RESAMPLES,
    SEED,
    ItemScores,
    combined_interval,
    paired_bootstrap,
    resample_counts,
)

if TYPE_CHECKING:
    from rl4text.bench import Bench

LOWER_IS_BETTER = {"ter", "self_bleu", "perplexity"}
NEUTRAL = {"response_length", "eos_rate"}  # neither direction is better in itself
KL_KEY = "kl/mean"  # train's metrics.jsonl: mean over the rollout of each response's summed per-token KL
N_EXAMPLES = 3
ALPHA = 0.05


class ResultsError(ValueError):
    """A file of a benchmark folder that cannot be read; the message names it."""


def _json(file: Path, text: str, line: int | None = None):
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        where = f"{file}" + (f", line {line}" if line is not None else "")
        raise ResultsError(
            f"{where}: not valid JSON ({exc}); delete that evaluation's eval.json and rerun the benchmark to redo it"
        ) from None


def read_eval(path: Path) -> dict:
    file = path / "eval.json"
    data = _json(file, file.read_text())
    if not isinstance(data, dict) or not isinstance(data.get("metrics"), dict):
        raise ResultsError(f"{file}: expected an object with a 'metrics' mapping (as `rl4text eval` writes)")
    return data["metrics"]


def read_predictions(path: Path) -> list[dict] | None:
    """The rows of ``path/predictions.jsonl`` (``None`` when there is none)."""
    file = path / "predictions.jsonl"
    if not file.is_file():
        return None
    lines = file.read_text().splitlines()
    return [_json(file, line, i + 1) for i, line in enumerate(lines) if line.strip()]


def _direction(sign: float, metric: str) -> str:
    if metric in NEUTRAL:
        return "higher than start" if sign > 0 else "lower than start"
    better = (sign > 0) != (metric in LOWER_IS_BETTER)
    return "better than start" if better else "worse than start"


def seed_verdict(change: float, half: float | None, metric: str) -> str:
    """Verdict from the Student-t interval over seeds alone (no per-item values to pair)."""
    if half is None:
        return "one seed: no interval"
    if abs(change) <= half:
        return "no significant change"
    return _direction(change, metric)


def paired_verdict(lo: float, hi: float, metric: str) -> str:
    """Verdict from the combined interval [lo, hi] of the change: significant when it excludes 0."""
    if lo > 0:
        return _direction(1.0, metric)
    if hi < 0:
        return _direction(-1.0, metric)
    return "no significant change"


def item_mismatch(start: list[dict] | None, run: list[dict] | None) -> str | None:
    """Why a run's predictions cannot be paired with the starting model's (``None``: same prompts and
    references in the same order)."""
    if start is None or run is None:
        return "no predictions.jsonl" + (" for the starting model" if start is None else "")
    if len(start) != len(run):
        return f"{len(run)} test items, the starting model {len(start)}"
    for i, (a, b) in enumerate(zip(start, run)):
        if a.get("prompt") != b.get("prompt") or a.get("references") != b.get("references"):
            return f"item {i} differs from the starting model's (prompt or references)"
    return None


@functools.cache
def _statistics_metric(key: str):
    """The registered metric named ``key`` if its corpus score comes from summed per-item statistics."""
    from rl4text.registry import METRICS

    if key not in METRICS or not hasattr(METRICS.get(key), "statistics"):
        return None
    metric = METRICS.build(key)
    return metric if getattr(metric, "name", key) == key else None


def item_scores(metric: str, rows: list[dict], score: float) -> tuple[ItemScores | None, str | None]:
    """A system's :class:`ItemScores` for ``metric`` from its predictions, checked against ``score`` (its
    eval.json value); or ``None`` and why not."""
    if all(metric in r.get("item", {}) for r in rows):
        scores = ItemScores.of_values([r["item"][metric] for r in rows])
    elif metric.split("/")[0] == "reward" and all(metric in r for r in rows):
        scores = ItemScores.of_values([r[metric] for r in rows])  # older predictions carry the rewards
    elif (sacre := _statistics_metric(metric)) is not None:
        stats = sacre.statistics([r["completion"] for r in rows], [r["references"] for r in rows])
        scores = ItemScores.of_statistics(stats, sacre.score_from_statistics)
    else:
        return None, "no per-item values in predictions.jsonl"
    recomputed = scores.corpus()
    if not math.isclose(recomputed, score, rel_tol=1e-9, abs_tol=1e-9):
        return None, f"per-item values give {recomputed:.6g}, eval.json {score:.6g}"
    return scores, None


def _paired_runs(start: tuple, seeds: dict[int, dict], metric: str, counts, rows: dict) -> tuple[dict, dict]:
    """Paired bootstrap of each seed against the start: ``({seed: Paired}, {seed: why not})``; ``start``:
    the starting model's ``(ItemScores or None, why not)`` for ``metric``."""
    start_scores, why = start
    paired, notes = {}, {}
    for seed, scores in seeds.items():
        if metric not in scores:
            continue
        mismatch = item_mismatch(rows["start"], rows[seed])
        if start_scores is None or mismatch is not None:
            notes[seed] = mismatch or why
            continue
        system, note = item_scores(metric, rows[seed], scores[metric])
        if system is None:
            notes[seed] = note
        else:
            paired[seed] = paired_bootstrap(system, start_scores, counts)
    return paired, notes


def _start_scores(metric: str, rows: list[dict] | None, score: float) -> tuple:
    if rows is None:
        return None, "no predictions.jsonl for the starting model"
    return item_scores(metric, rows, score)


def metric_summary(metric: str, start: float, values: dict[int, float], paired: dict, notes: dict) -> dict:
    """One (algorithm, metric) cell: Student-t over seeds, and the paired statistics when there are any."""
    mean, half = mean_ci(list(values.values()))
    change = mean - start
    out = {
        "mean": mean,
        "ci95_half_width": half,
        "n": len(values),
        "values": list(values.values()),
        "start": start,
        "change": change,
        "paired": None,
        "paired_missing": {str(s): why for s, why in notes.items()},
    }
    if paired:
        combined = combined_interval(list(paired.values()))
        out["paired"] = {
            "per_seed": {str(s): p.as_dict() for s, p in paired.items()},
            "combined": combined.as_dict(),
            "significant_seeds": sum(p.p < ALPHA for p in paired.values()),
            "n": len(paired),
        }
        out["verdict"] = paired_verdict(combined.lo, combined.hi, metric)
        out["verdict_from"] = "combined interval (seeds + test-set bootstrap)"
    else:
        out["verdict"] = seed_verdict(change, half, metric)
        why = "; ".join(sorted(set(notes.values()))) or "no per-item values"
        out["verdict_from"] = f"Student-t over seeds; no paired test: {why}"
    return out


def summarize(bench: Bench, resamples: int = RESAMPLES, seed: int = SEED) -> dict:
    """Everything in ``results.json`` but the benchmark's settings, from the folder's files alone."""
    out = bench.output_dir
    start = read_eval(out / "start")
    per_algo: dict[str, dict[int, dict]] = {}
    for label, s in bench.pairs():
        if (bench.run_dir(label, s) / "test" / "eval.json").is_file():
            per_algo.setdefault(label, {})[s] = read_eval(bench.run_dir(label, s) / "test")
    metrics = [m for m in start if "/" not in m] + [m for m in start if "/" in m]
    start_rows = read_predictions(out / "start")
    counts = resample_counts(len(start_rows), resamples, seed) if start_rows else None
    summary: dict[str, dict[str, dict]] = {}
    items: dict[str, str] = {}
    baseline: dict[str, tuple] = {}  # metric -> the starting model's (ItemScores or None, why not)
    for label, seeds in per_algo.items():
        rows = {"start": start_rows, **{s: read_predictions(bench.run_dir(label, s) / "test") for s in seeds}}
        for s in seeds:
            items[f"{label}-seed{s}"] = item_mismatch(start_rows, rows[s]) or "same items"
        summary[label] = {}
        for m in metrics:
            values = {s: v[m] for s, v in seeds.items() if m in v}
            if values:
                if m not in baseline:
                    baseline[m] = _start_scores(m, start_rows, start[m])
                paired, notes = _paired_runs(baseline[m], seeds, m, counts, rows)
                summary[label][m] = metric_summary(m, start[m], values, paired, notes)
    return {
        "start": start,
        "runs": per_algo,
        "summary": summary,
        "metrics": metrics,
        "paired_bootstrap": {"resamples": resamples, "seed": seed, "items": len(start_rows or [])},
        "item_check": items,
        "seconds_per_iteration": {label: _speed(bench, label, per_algo[label]) for label in per_algo},
        "guards": {label: _kl(bench, label, per_algo[label]) for label in per_algo},
        "examples": examples(bench, per_algo, start_rows),
    }


def _metrics_rows(bench: Bench, label: str, seed: int) -> list[dict]:
    path = bench.run_dir(label, seed) / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _speed(bench: Bench, label: str, seeds: dict) -> float | None:
    times = [
        r["time/iteration_s"]
        for s in seeds
        for r in _metrics_rows(bench, label, s)
        if "time/iteration_s" in r
    ]
    return sum(times) / len(times) if times else None


def _kl(bench: Bench, label: str, seeds: dict) -> dict:
    """The final training KL to the reference per seed (the last logged ``kl/mean``), and its mean ± t CI."""
    final = {}
    for s in seeds:
        logged = [r for r in _metrics_rows(bench, label, s) if KL_KEY in r]
        if logged:
            final[str(s)] = max(logged, key=lambda r: r.get("iteration", 0))[KL_KEY]
    if not final:
        return {"kl_key": KL_KEY, "final_kl": {}, "mean": None, "ci95_half_width": None}
    mean, half = mean_ci(list(final.values()))
    return {"kl_key": KL_KEY, "final_kl": final, "mean": mean, "ci95_half_width": half}


def examples(bench: Bench, per_algo: dict, start_rows: list[dict] | None, k: int = N_EXAMPLES) -> list[dict]:
    """``k`` test items (drawn with a fixed seed, the same for every system) with the reference, the starting
    model's output and each algorithm's at its first finished seed."""
    if not start_rows:
        return []
    picks = sorted(random.Random(0).sample(range(len(start_rows)), min(k, len(start_rows))))
    systems = {"starting model": start_rows}
    for label, seeds in per_algo.items():
        first = next(s for s in bench.seeds if s in seeds)
        rows = read_predictions(bench.run_dir(label, first) / "test")
        if item_mismatch(start_rows, rows) is None:
            systems[f"{label} (seed {first})"] = rows
    return [
        {
            "item": i,
            "prompt": start_rows[i]["prompt"],
            "references": start_rows[i]["references"],
            "outputs": {name: rows[i]["completion"] for name, rows in systems.items()},
        }
        for i in picks
    ]
