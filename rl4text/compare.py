"""``rl4text compare``: group runs by config, tabulate final metrics with 95% confidence intervals, plot curves.

A run is a run folder written by :func:`rl4text.train.train` (``config.yaml``, ``metrics.jsonl``, ``eval.json``)
or a W&B offline run (read with :func:`rl4text.tracking.read_wandb_run`). Runs whose configs are identical apart
from ``train.seed`` and the ``tracking`` section form a group; each group gets one table row and one line per plot.

Intervals are Student t intervals for the mean over a group's runs: ``mean ± t_{0.975, n-1} * s / sqrt(n)``.
"""

from __future__ import annotations

import itertools
import json
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

IGNORED_KEYS = ("train.seed",)
IGNORED_SECTIONS = ("tracking",)
CURVE_KEYS = ("rollout/reward_mean", "kl/mean")
EVAL_PREFIX = "eval/"

# Two-sided 95% critical values of Student's t distribution, t_{0.975, df} (upper-tail probability 0.025),
# from NIST/SEMATECH e-Handbook of Statistical Methods, section 1.3.6.7.2 "Critical Values of the Student's t
# Distribution" (https://www.itl.nist.gov/div898/handbook/eda/section3/eda3672.htm); df -> infinity is the
# normal quantile 1.960.
T_975: dict[int, float] = {
    1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
    11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110, 18: 2.101, 19: 2.093, 20: 2.086,
    21: 2.080, 22: 2.074, 23: 2.069, 24: 2.064, 25: 2.060, 26: 2.056, 27: 2.052, 28: 2.048, 29: 2.045, 30: 2.042,
    40: 2.021, 60: 2.000, 120: 1.980,
}  # fmt: skip
Z_975 = 1.960

CI_DEFINITION = (
    "mean ± half-width of the 95% confidence interval for the mean over a group's runs (Student t): "
    "mean ± t_{0.975, n-1} · s / √n, s = sample standard deviation (n − 1 denominator), n = runs in the group "
    "that have the metric; t from the NIST/SEMATECH e-Handbook table (1.3.6.7.2), linear in 1/df between "
    "tabulated df. 'n/a': a single run, no interval."
)


class CompareError(ValueError):
    """Bad input to ``rl4text compare``; the message says what to change."""


def t_critical(df: int) -> float:
    """``t_{0.975, df}``: two-sided 95% critical value; linear interpolation in ``1/df`` between tabulated df."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    if df in T_975:
        return T_975[df]
    points = [(1.0 / d, t) for d, t in sorted(T_975.items())] + [(0.0, Z_975)]  # 1/df decreasing
    x = 1.0 / df
    for (x_hi, t_hi), (x_lo, t_lo) in itertools.pairwise(points):
        if x_lo <= x <= x_hi:
            return t_lo + (t_hi - t_lo) * (x - x_lo) / (x_hi - x_lo)
    return Z_975  # unreachable: 0 < 1/df < 1


def mean_ci(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and half-width of its 95% Student t interval (``None`` for a single value)."""
    if not values:
        raise ValueError("no values")
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, None
    return mean, t_critical(len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))


# ------------------------------------------------------------------------------------------------ loading runs


@dataclass
class Run:
    """One run in memory, whatever it was read from."""

    name: str
    path: Path
    config: dict[str, Any]
    rows: list[dict[str, Any]]  # metrics rows, each with an ``iteration``
    final: dict[str, float]  # final evaluation metrics, names without ``eval/``
    source: str = "run folder"

    def by_iteration(self) -> dict[int, dict[str, Any]]:
        """Rows merged per iteration (a later row's value wins, as after a resume)."""
        merged: dict[int, dict[str, Any]] = {}
        for row in self.rows:
            it = row.get("iteration")
            if isinstance(it, (int, float)) and not isinstance(it, bool):
                merged.setdefault(int(it), {}).update(row)
        return dict(sorted(merged.items()))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_run_folder(path: Path) -> bool:
    return (path / "config.yaml").is_file() and (
        (path / "metrics.jsonl").is_file() or (path / "eval.json").is_file()
    )


def _is_wandb_run(path: Path) -> bool:
    """An ``offline-run-*`` / ``run-*`` folder, one with a ``*.wandb`` file, or one with W&B runs under ``wandb/``."""
    if path.name.startswith("offline-run-") or any(path.glob("*.wandb")):
        return True
    root = path / "wandb" if (path / "wandb").is_dir() else path
    return any(root.glob("*run-*/*.wandb"))


def load_run_folder(path: Path) -> Run:
    try:
        config = yaml.safe_load((path / "config.yaml").read_text()) or {}
    except yaml.YAMLError as exc:
        raise CompareError(f"{path}/config.yaml is not valid YAML: {exc}") from exc
    rows: list[dict[str, Any]] = []
    metrics = path / "metrics.jsonl"
    if metrics.is_file():
        lines = metrics.read_text().splitlines()
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                if n == len(lines):
                    break  # a run killed mid-write leaves a partial last line
                raise CompareError(f"{metrics}: line {n} is not JSON: {exc}") from exc
    final_row: dict[str, Any] = {}
    if (path / "eval.json").is_file():
        try:
            final_row = json.loads((path / "eval.json").read_text())
        except json.JSONDecodeError as exc:
            raise CompareError(f"{path}/eval.json is not valid JSON: {exc}") from exc
    else:  # an unfinished run: the last evaluation in metrics.jsonl, if any
        for row in rows:
            evals = {k[len(EVAL_PREFIX) :]: v for k, v in row.items() if k.startswith(EVAL_PREFIX)}
            if evals:
                final_row = evals
    final = {k: float(v) for k, v in final_row.items() if k != "iteration" and _is_number(v)}
    return Run(path.name, path, config, rows, final)


def _unwrap_wandb_config(config: dict[str, Any]) -> dict[str, Any]:
    """Drop W&B's own keys (``_wandb``, ...) and unwrap ``{"value": x, "desc": ...}`` entries."""
    out = {}
    for key, value in config.items():
        if str(key).startswith("_"):
            continue
        if isinstance(value, dict) and "value" in value and set(value) <= {"value", "desc"}:
            value = value["value"]
        out[key] = value
    return out


def load_wandb_run(path: Path, name: str | None = None) -> Run:
    try:
        from rl4text.wandb_offline import read_wandb_run
    except ImportError as exc:
        raise CompareError(
            f"{path} is a W&B run; reading W&B runs needs rl4text.wandb_offline.read_wandb_run, "
            f"which could not be imported ({exc})"
        ) from exc
    data = read_wandb_run(path)
    rows = []
    for row in data.get("history") or []:
        if "_step" not in row:
            continue
        out = {k: v for k, v in row.items() if not str(k).startswith("_")}
        out["iteration"] = int(row["_step"])
        rows.append(out)
    summary = data.get("summary") or {}
    final = {
        k[len(EVAL_PREFIX) :]: float(v)
        for k, v in summary.items()
        if k.startswith(EVAL_PREFIX) and _is_number(v)
    }
    config = _unwrap_wandb_config(data.get("config") or {})
    return Run(name or path.name, path, config, rows, final, source="W&B run")


def load_runs(paths: Iterable[str | Path]) -> list[Run]:
    """Read every folder: a run folder, a W&B offline run, or a folder holding W&B runs under ``wandb/``."""
    paths = [Path(p) for p in paths]
    if not paths:
        raise CompareError(
            "no run folders given: pass one or more run folders, e.g. rl4text compare runs/ppo-*"
        )
    runs = []
    for path in paths:
        if not path.is_dir():
            raise CompareError(
                f"{path} is not a folder (does it exist? a shell pattern that matched nothing?)"
            )
        if _is_run_folder(path):
            runs.append(load_run_folder(path))
            continue
        if _is_wandb_run(path):
            # read_wandb_run finds the run's sessions (a resumed run has several) under any of these folders
            name = path.resolve().parent.name if path.resolve().name == "wandb" else path.name
            runs.append(load_wandb_run(path, name=name))
        else:
            raise CompareError(
                f"{path} is neither a run folder (config.yaml with metrics.jsonl or eval.json) nor a W&B run "
                "(an offline-run-* folder, a folder with a *.wandb file, or one with W&B runs under wandb/)"
            )
    return runs


# --------------------------------------------------------------------------------------------------- grouping


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dict -> dotted keys (dotted keys already present stay as they are)."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def _ignored(key: str) -> bool:
    return key in IGNORED_KEYS or any(key == s or key.startswith(s + ".") for s in IGNORED_SECTIONS)


def _grouping_config(run: Run) -> dict[str, str]:
    return {
        k: json.dumps(v, sort_keys=True, default=str)
        for k, v in flatten(run.config).items()
        if not _ignored(k)
    }


@dataclass
class Group:
    label: str
    runs: list[Run]
    config: dict[str, str] = field(repr=False)  # flattened, JSON-encoded values, seed and tracking left out


_MISSING = "<unset>"


def _fmt_value(encoded: str) -> str:
    if encoded == _MISSING:
        return _MISSING
    value = json.loads(encoded)
    return value if isinstance(value, str) else json.dumps(value)


def _label_keys(groups: list[Group], differing: list[str]) -> list[str]:
    """The fewest differing keys (``*.name`` keys first, then config order) that tell all groups apart."""
    order = sorted(differing, key=lambda k: (not k.endswith(".name"), differing.index(k)))
    chosen: list[str] = []
    for key in order:
        before = len({tuple(g.config.get(k, _MISSING) for k in chosen) for g in groups})
        after = len({tuple(g.config.get(k, _MISSING) for k in [*chosen, key]) for g in groups})
        if after > before:
            chosen.append(key)
        if after == len(groups):
            break
    return chosen


def _common_name(runs: list[Run]) -> str:
    if len(runs) == 1:
        return runs[0].name
    names = [r.name for r in runs]
    size = next((i for i, chars in enumerate(zip(*names)) if len(set(chars)) > 1), min(map(len, names)))
    prefix = names[0][:size].rstrip("-_. ")
    if prefix.lower().endswith("seed"):
        prefix = prefix[:-4].rstrip("-_. ")
    return prefix or runs[0].name


def group_runs(runs: list[Run]) -> tuple[list[Group], list[str], list[str]]:
    """Groups of runs identical apart from seed and tracking (in order of first appearance), the config keys that
    differ between groups, and those of them that make up the labels."""
    groups: dict[tuple, Group] = {}
    for run in runs:
        cfg = _grouping_config(run)
        key = tuple(sorted(cfg.items()))
        if key not in groups:
            groups[key] = Group("", [], cfg)
        groups[key].runs.append(run)
    out = list(groups.values())
    all_keys: list[str] = []
    for g in out:
        all_keys += [k for k in g.config if k not in all_keys]
    differing = [k for k in all_keys if len({g.config.get(k, _MISSING) for g in out}) > 1]
    keys: list[str] = []
    if len(out) == 1:
        out[0].label = _common_name(out[0].runs)
    else:
        keys = _label_keys(out, differing)
        for g in out:
            g.label = ", ".join(f"{k}={_fmt_value(g.config.get(k, _MISSING))}" for k in keys)
    return out, differing, keys


# ------------------------------------------------------------------------------------------------ table, plots


def fmt(x: float) -> str:
    return f"{x:.3f}" if x == 0 or 1e-3 <= abs(x) < 1e6 else f"{x:.3g}"


def available_metrics(runs: list[Run]) -> list[str]:
    names: list[str] = []
    for run in runs:
        names += [k for k in run.final if k not in names]
    return names


def select_metrics(runs: list[Run], wanted: Sequence[str] | None) -> list[str]:
    available = available_metrics(runs)
    if not wanted:
        return available
    out = []
    for name in wanted:
        name = name.removeprefix(EVAL_PREFIX)
        if name not in available:
            raise CompareError(
                f"no run has the final metric {name!r}; available: {', '.join(available) or '(none)'}"
            )
        if name not in out:
            out.append(name)
    return out


def metric_cell(group: Group, metric: str) -> str:
    values = [r.final[metric] for r in group.runs if metric in r.final]
    if not values:
        return "—"
    mean, half = mean_ci(values)
    cell = f"{fmt(mean)} ± {fmt(half) if half is not None else 'n/a'}"
    if len(values) != len(group.runs):
        cell += f" (n={len(values)})"
    return cell


def results_table(groups: list[Group], metrics: list[str]) -> str:
    lines = [
        "| group | n runs | " + " | ".join(metrics) + " |",
        "|---|---:|" + "---:|" * len(metrics),
    ]
    for g in groups:
        cells = [g.label.replace("|", "\\|"), str(len(g.runs))] + [metric_cell(g, m) for m in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def curves(groups: list[Group], key: str) -> dict[str, dict[str, list[float]]]:
    """Per group: iterations, mean across its runs having ``key`` there, the 95% t band, and n per iteration."""
    out = {}
    for g in groups:
        per_it: dict[int, list[float]] = {}
        for run in g.runs:
            for it, row in run.by_iteration().items():
                if _is_number(row.get(key)):
                    per_it.setdefault(it, []).append(float(row[key]))
        if not per_it:
            continue
        data: dict[str, list[float]] = {"x": [], "mean": [], "lo": [], "hi": [], "n": []}
        for it in sorted(per_it):
            mean, half = mean_ci(per_it[it])
            half = half or 0.0
            data["x"].append(it)
            data["mean"].append(mean)
            data["lo"].append(mean - half)
            data["hi"].append(mean + half)
            data["n"].append(len(per_it[it]))
        out[g.label] = data
    return out


def plot_curves(data: dict[str, dict[str, list[float]]], key: str, path: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for label, d in data.items():
        n = max(d["n"])
        marker = "o" if len(d["x"]) <= 12 else None
        (line,) = ax.plot(d["x"], d["mean"], marker=marker, markersize=3, label=f"{label} (n={n})")
        ax.fill_between(d["x"], d["lo"], d["hi"], alpha=0.2, color=line.get_color(), linewidth=0)
    ax.set(xlabel="iteration", ylabel=key, title=f"{key}: mean over runs, band = 95% t confidence interval")
    ax.title.set_fontsize(10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def curve_keys(runs: list[Run], metrics: list[str] | None) -> list[str]:
    """``rollout/reward_mean``, ``kl/mean`` and the ``eval/<metric>`` keys present in the runs' rows."""
    present: list[str] = []
    for run in runs:
        for row in run.rows:
            present += [k for k, v in row.items() if k not in present and _is_number(v)]
    keys = [k for k in CURVE_KEYS if k in present]
    evals = [k for k in present if k.startswith(EVAL_PREFIX)]
    if metrics is not None:
        evals = [k for k in evals if k[len(EVAL_PREFIX) :] in metrics]
    return keys + evals


# ------------------------------------------------------------------------------------------------- the command


@dataclass
class CompareResult:
    markdown: str
    files: list[Path]
    groups: list[Group]


def compare(
    paths: Sequence[str | Path], metrics: Sequence[str] | None = None, output: str | Path = "compare"
) -> CompareResult:
    runs = load_runs(paths)
    chosen = select_metrics(runs, metrics)
    groups, differing, label_keys = group_runs(runs)
    output = Path(output)
    if output.parent != Path():
        output.parent.mkdir(parents=True, exist_ok=True)

    md = [f"# Comparison of {len(runs)} runs in {len(groups)} groups", ""]
    md += [
        "Runs are grouped when their configs are identical apart from `train.seed` and the `tracking` section"
        + (
            "; a group's label is the config keys that tell the groups apart."
            if len(groups) > 1
            else "; all runs are in one group."
        ),
        "",
    ]
    if chosen:
        md += [results_table(groups, chosen), "", f"Final evaluation metrics: {CI_DEFINITION}", ""]
    else:
        md += ["No run has final evaluation metrics (eval.json / W&B summary `eval/*`).", ""]
    others = [k for k in differing if k not in label_keys]
    if others:
        md += [f"Other config keys that differ between groups: {', '.join(f'`{k}`' for k in others)}.", ""]
    md += ["Runs:", ""]
    md += [f"- {g.label}: {', '.join(str(r.path) for r in g.runs)}" for g in groups]

    files: list[Path] = []
    plot_keys = curve_keys(runs, chosen if metrics else None)
    if plot_keys:
        md += [
            "",
            "## Curves",
            "",
            "Mean over a group's runs at each iteration (runs that reach it); band: 95% t CI.",
            "",
        ]
    for key in plot_keys:
        path = output.parent / f"{output.name}_{key.replace('/', '_')}.png"
        plot_curves(curves(groups, key), key, path)
        files.append(path)
        md += [f"![{key}]({path.name})", ""]
    markdown = "\n".join(md).rstrip() + "\n"
    md_path = output.parent / f"{output.name}.md"
    md_path.write_text(markdown)
    return CompareResult(markdown, [md_path, *files], groups)
