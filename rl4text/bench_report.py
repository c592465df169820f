"""``results.md`` of ``rl4text bench``: the settings, an overview table, the reward-hacking guards, one table per
metric with the paired statistics and verdicts, sample outputs and curves (from :func:`rl4text.bench_stats.summarize`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from rl4text.compare import fmt

if TYPE_CHECKING:
    from rl4text.bench import Bench

PROMPT_CHARS = 400  # longer prompts are shown as their head and tail


def markdown(bench: Bench, meta: dict, res: dict, plots: list[Path]) -> str:
    lines = [f"# Benchmark `{bench.name}`", ""]
    if bench.description:
        lines += [bench.description, ""]
    lines += _settings(bench, meta, res)
    lines += [
        "",
        "Overview cells: mean over seeds ± half-width of the 95% Student-t interval over seeds (change = mean − "
        "starting model). Per-metric tables: *change vs start* is the mean over seeds of the paired change "
        "Δ = run − start with its 95% interval mean Δ ± t_df · sqrt(s²_between/n + Var_boot) (df: Welch–Satterthwaite, from n − 1 up to B − 1), which holds both "
        "the seed-to-seed variance and the test-set sampling variance (Var_boot: bootstrap variance of the "
        "seed-mean Δ; one seed: the bootstrap percentile interval); *paired Δ per seed* is each seed against the "
        "starting model on the same resamples of the same test items, with its 95% percentile interval and the "
        "two-sided bootstrap p = (1 + #{b : |Δ_b − mean Δ| ≥ |Δ|}) / (B + 1). BLEU, chrF and TER are "
        "rescored from summed sentence statistics on each resample (as sacrebleu's `--paired-bs`), the other "
        "metrics are means of per-item values. The verdict comes from the interval of the change; where the runs "
        "have no per-item values (older predictions), from the Student-t interval over seeds, and it says so.",
        "",
    ]
    main = [m for m in res["metrics"] if "/" not in m]
    if res["summary"]:
        lines += ["| model | " + " | ".join(main) + " |", "|---|" + "---:|" * len(main)]
        lines.append("| starting model | " + " | ".join(fmt(res["start"][m]) for m in main) + " |")
        for algo, s in res["summary"].items():
            cells = [_cell(s[m]) if m in s else "–" for m in main]
            lines.append(f"| {algo} | " + " | ".join(cells) + " |")
        lines.append("")
        lines += _guards(res)
    for m in res["metrics"]:
        lines += _metric_table(m, res)
    lines += _examples(res.get("examples") or [])
    if plots:
        lines += ["## Curves", "", "Mean over seeds at each iteration; band: 95% t interval.", ""]
        lines += [f"![{p.stem}]({p.name})" for p in plots]
        lines.append("")
    return "\n".join(lines)


def _settings(bench: Bench, meta: dict, res: dict) -> list[str]:
    n_test = meta["max_samples"]
    overrides = ", ".join(f"`{o}`" for o in meta["overrides"]) or "none"
    lines = [
        f"- base config: `{meta['base_config']}`, overrides: {overrides}",
        f"- algorithms: {', '.join(f'`{a}`' for a in bench.algorithms)}; seeds: {bench.seeds}; "
        f"{meta['iterations']} iterations × {meta['rollout_batch_size']} episodes each",
        f"- test: split `{bench.split}`, {n_test or 'all'} samples; the starting model is evaluated once "
        "(greedy decoding is seed-independent)",
    ]
    boot = res.get("paired_bootstrap") or {}
    if boot.get("items"):
        lines.append(
            f"- paired bootstrap: {boot['resamples']} resamples (numpy seed {boot['seed']}) of the "
            f"{boot['items']} test items, the same resamples for every system, seed and metric"
        )
    differ = {run: why for run, why in (res.get("item_check") or {}).items() if why != "same items"}
    if differ:
        lines.append(
            "- **not evaluated on the starting model's test items (no paired test for them): "
            + "; ".join(f"{run}: {why}" for run, why in differ.items())
            + "**"
        )
    elif res.get("item_check"):
        lines.append(
            "- item check: every run was evaluated on the starting model's prompts, in the same order"
        )
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
    return lines


def _pm(mean: float | None, half: float | None) -> str:
    if mean is None:
        return "–"
    return fmt(mean) + (f" ± {fmt(half)}" if half is not None else "")


def _cell(s: dict) -> str:
    return f"{_pm(s['mean'], s['ci95_half_width'])} ({s['change']:+.3f})"


def _guards(res: dict) -> list[str]:
    """KL to the reference at the end of training, response length and EOS rate, per system."""
    lines = [
        "## Reward-hacking guards",
        "",
        "Final training KL to the reference policy (the last logged `kl/mean`: per response, summed over its "
        "tokens, averaged over the rollout; mean ± 95% t interval over seeds), and the test outputs' length in "
        "tokens and EOS rate. A reward gain with a large KL, outputs much shorter or longer than the start's, "
        "or a collapsed EOS rate points at reward hacking; read the sample outputs below.",
        "",
        "| model | final KL to reference | response_length | eos_rate |",
        "|---|---:|---:|---:|",
    ]
    start = res["start"]
    lines.append(
        f"| starting model | – | {_pm(start.get('response_length'), None)} | {_pm(start.get('eos_rate'), None)} |"
    )
    for algo, s in res["summary"].items():
        kl = (res.get("guards") or {}).get(algo) or {}
        cells = [_pm(kl.get("mean"), kl.get("ci95_half_width"))]
        cells += [
            _pm(s[m]["mean"], s[m]["ci95_half_width"]) if m in s else "–"
            for m in ("response_length", "eos_rate")
        ]
        lines.append(f"| {algo} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def _interval(lo: float, hi: float) -> str:
    return f"[{lo:+.3f}, {hi:+.3f}]"


def _paired_cells(s: dict) -> tuple[str, str, str]:
    """(change with its combined interval, per-seed paired Δ [lo, hi] p, verdict)."""
    paired = s.get("paired")
    if not paired:
        return f"{s['change']:+.3f}", "–", f"{s['verdict']} ({s['verdict_from']})"
    c = paired["combined"]
    change = f"{c['mean_delta']:+.3f} {_interval(c['lo'], c['hi'])}"
    seeds = "; ".join(
        f"s{seed}: {p['delta']:+.3f} {_interval(p['lo'], p['hi'])} p={p['p']:.3f}"
        for seed, p in paired["per_seed"].items()
    )
    missing = s.get("paired_missing") or {}
    if missing:
        seeds += "; " + "; ".join(f"s{seed}: no paired test ({why})" for seed, why in missing.items())
    verdict = f"{s['verdict']}; paired p<0.05 on {paired['significant_seeds']} of {paired['n']} seeds"
    return change, seeds, verdict


def _metric_table(m: str, res: dict) -> list[str]:
    rows = [(a, s[m]) for a, s in res["summary"].items() if m in s]
    if not rows:
        return []
    lines = [
        f"## {m}",
        "",
        "| model | seeds | mean ± 95% CI | change vs start [95% interval, seeds + test set] "
        "| paired Δ per seed [95% bootstrap interval] p | verdict |",
        "|---|---:|---:|---:|---|---|",
        f"| starting model | – | {fmt(res['start'][m])} | – | – | – |",
    ]
    for algo, s in rows:
        change, seeds, verdict = _paired_cells(s)
        lines.append(
            f"| {algo} | {s['n']} | {_pm(s['mean'], s['ci95_half_width'])} | {change} | {seeds} | {verdict} |"
        )
    return [*lines, ""]


def _one_line(text: str) -> str:
    """Text for a table cell: pipes escaped, line breaks as <br>."""
    return text.replace("|", "\\|").replace("\r", "").replace("\n", "<br>") or "(empty)"


def _block(text: str) -> list[str]:
    if len(text) > PROMPT_CHARS:
        text = text[: PROMPT_CHARS - 100] + " […] " + text[-100:]
    return ["```text", text.replace("```", "'''"), "```"]


def _examples(examples: list[dict]) -> list[str]:
    if not examples:
        return []
    lines = [
        "## Sample outputs",
        "",
        f"{len(examples)} test items drawn with a fixed seed, the same for every system; each algorithm's output "
        "is its first seed's. Prompts longer than 400 characters are shown as their head and tail.",
        "",
    ]
    for ex in examples:
        refs = ex["references"] if isinstance(ex["references"], list) else [ex["references"]]
        lines += [f"### Test item {ex['item']}", "", "Prompt:", "", *_block(ex["prompt"]), ""]
        lines += ["| system | output |", "|---|---|"]
        lines += [
            f"| reference{'' if len(refs) == 1 else f' {j + 1}'} | {_one_line(r)} |"
            for j, r in enumerate(refs)
        ]
        lines += [f"| {name} | {_one_line(out)} |" for name, out in ex["outputs"].items()]
        lines.append("")
    return lines
