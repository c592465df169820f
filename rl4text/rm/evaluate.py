"""Held-out agreement of a reward model with the humans, next to the lexical metrics on the same items."""

from __future__ import annotations

import math

from rl4text.rm.stats import agreement

# baseline name -> (reward factory, its args); each scores a completion against the item's references
BASELINES = {
    "rouge1": ("rouge", {"rouge_type": "rouge1"}),
    "rouge2": ("rouge", {"rouge_type": "rouge2"}),
    "rougeL": ("rouge", {"rouge_type": "rougeL"}),
    "rougeLsum": ("rouge", {"rouge_type": "rougeLsum"}),
    "bleu": ("bleu", {}),
    "chrf": ("chrf", {}),
    "ter": ("ter", {}),
    "meteor": ("meteor", {}),
    "bertscore": ("bertscore", {}),
}


def regroup(flat: list[float], groups) -> list[list[float]]:
    """Split a flat list of per-item values back into the groups' shapes."""
    out, i = [], 0
    for g in groups:
        out.append(list(flat[i : i + len(g.completions)]))
        i += len(g.completions)
    return out


def flatten(groups) -> tuple[list[str], list[str], list[list[str]]]:
    """``(prompts, completions, references)`` of every item, group by group."""
    prompts = [g.prompt for g in groups for _ in g.completions]
    completions = [c for g in groups for c in g.completions]
    references = [list(g.references) for g in groups for _ in g.completions]
    return prompts, completions, references


def baseline_scores(name: str, groups) -> list[list[float]]:
    """A lexical metric's sentence score of each held-out item against its group's references."""
    from rl4text.registry import REWARDS

    if name not in BASELINES:
        raise ValueError(f"unknown baseline metric {name!r}; known: {', '.join(BASELINES)}")
    reward, args = BASELINES[name]
    fn = REWARDS.build(reward, **args)
    prompts, completions, references = flatten(groups)
    return regroup([float(x) for x in fn(prompts, completions, references)], groups)


def evaluate_agreement(rm_scores: list[list[float]], groups, metrics: list[str]) -> dict:
    """``{"reward_model": stats, "metrics": {name: stats}}`` on ``groups`` (see :func:`agreement`).
    Metrics are skipped (and said so) when the items have no references."""
    out: dict = {"reward_model": agreement(groups, rm_scores), "metrics": {}}
    if metrics and not all(g.references for g in groups):
        out["metrics_skipped"] = "the held-out items have no references to score lexical metrics against"
        return out
    for name in metrics:
        out["metrics"][name] = agreement(groups, baseline_scores(name, groups))
    return out


def fmt(x) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def agreement_table(result: dict) -> str:
    """Markdown rows: scorer | pairwise accuracy | Kendall tau | Spearman rho (group means, then pooled)."""
    head = (
        "| scorer | pairwise acc. | Kendall τ (per group) | Spearman ρ (per group) "
        "| Kendall τ (pooled) | Spearman ρ (pooled) |\n|---|---|---|---|---|---|\n"
    )
    rows = [("learned RM", result["reward_model"]), *result["metrics"].items()]
    lines = [
        f"| {name} | {fmt(s['pairwise_accuracy'])} | {fmt(s.get('kendall_tau'))} | "
        f"{fmt(s.get('spearman_rho'))} | {fmt(s.get('kendall_tau_pooled'))} | {fmt(s.get('spearman_rho_pooled'))} |"
        for name, s in rows
    ]
    return head + "\n".join(lines) + "\n"
