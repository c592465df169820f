"""``rl4text label stats``: quality control per annotator and overall, agreement, and the systems' win rates.

Units of agreement are candidate pairs of the non-gold items: each judgment labels a pair ``first`` /
``second`` / ``tie`` (a ranking labels all its pairs). Win rates aggregate each item's judgments first (the
mean of win 1 / tie ½ / loss 0 over its annotators decides the item: above ½ a win, below a loss, else a tie),
so the Wilson interval counts items, not correlated judgments of one item.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import defaultdict
from itertools import combinations
from pathlib import Path

from rl4text.label.agreement import cohen_kappa, krippendorff_alpha, pair_label, wilson_interval
from rl4text.label.store import Store


def gold_score(judgment: dict, gold: list[int]) -> float:
    """Share of the gold item's candidate pairs the judgment orders as the gold answer does (a tie: none)."""
    pairs = list(combinations(range(len(gold)), 2))
    if judgment["tie"]:
        return 0.0
    rank = judgment["ranking"]
    agree = sum((rank.index(a) < rank.index(b)) == (gold.index(a) < gold.index(b)) for a, b in pairs)
    return agree / len(pairs)


def pair_labels(items: dict, judgments: list[dict]) -> dict[tuple[str, int, int], dict[str, str]]:
    """``{(item, a, b): {annotator: label}}`` over the non-gold items' candidate pairs."""
    units: dict[tuple[str, int, int], dict[str, str]] = defaultdict(dict)
    for j in judgments:
        item = items[j["item"]]
        if item["gold"] is not None:
            continue
        for a, b in combinations(range(len(item["candidates"])), 2):
            units[(j["item"], a, b)][j["annotator"]] = pair_label(j["ranking"], j["tie"], a, b)
    return units


def annotator_stats(items: dict, judgments: list[dict], skips: list[tuple[str, str]]) -> dict[str, dict]:
    """Per annotator: judged, skipped, tie rate, gold accuracy, position-bias rate, seconds per item."""
    out: dict[str, dict] = {}
    names = sorted({j["annotator"] for j in judgments} | {a for a, _ in skips})
    for name in names:
        mine = [j for j in judgments if j["annotator"] == name]
        gold = [gold_score(j, items[j["item"]]["gold"]) for j in mine if items[j["item"]]["gold"] is not None]
        # position bias: of the 2-candidate judgments with a preference, how often the one shown first won
        pos = [j["ranking"][0] == j["shown"][0] for j in mine if len(j["shown"]) == 2 and not j["tie"]]
        secs = [j["seconds"] for j in mine if j["seconds"] is not None]
        out[name] = {
            "judged": len(mine),
            "skipped": sum(a == name for a, _ in skips),
            "tie_rate": sum(j["tie"] for j in mine) / len(mine) if mine else math.nan,
            "gold_n": len(gold),
            "gold_accuracy": sum(gold) / len(gold) if gold else math.nan,
            "position_n": len(pos),
            "first_shown_rate": sum(pos) / len(pos) if pos else math.nan,
            "first_shown_ci95": wilson_interval(sum(pos), len(pos)),
            "seconds_median": statistics.median(secs) if secs else math.nan,
            "seconds_mean": statistics.fmean(secs) if secs else math.nan,
        }
    return out


def agreement_stats(items: dict, judgments: list[dict]) -> dict:
    """Cohen's κ per annotator pair (units both labelled) and Krippendorff's α (nominal) overall."""
    units = pair_labels(items, judgments)
    keys = sorted(units)
    names = sorted({a for labels in units.values() for a in labels})
    kappas = {}
    for x, y in combinations(names, 2):
        a = [units[k].get(x) for k in keys]
        b = [units[k].get(y) for k in keys]
        shared = sum(p is not None and q is not None for p, q in zip(a, b))
        kappas[f"{x} / {y}"] = {"kappa": cohen_kappa(a, b), "shared_units": shared}
    rows = [[units[k].get(name) for k in keys] for name in names]
    overlap = [len(units[k]) for k in keys]
    return {
        "units": len(keys),
        "units_with_2plus": sum(n >= 2 for n in overlap),
        "mean_labels_per_unit": statistics.fmean(overlap) if overlap else math.nan,
        "krippendorff_alpha_nominal": krippendorff_alpha(rows) if rows else math.nan,
        "cohen_kappa": kappas,
    }


def item_outcomes(items: dict, judgments: list[dict]) -> list[tuple[str, str, float]]:
    """``(system_x, system_y, score of x)`` per (item, candidate pair) of different systems: the mean over
    the item's annotators of 1 (x preferred) / ½ (tie) / 0 (y preferred)."""
    units = pair_labels(items, judgments)
    out = []
    for (iid, a, b), labels in sorted(units.items()):
        sx, sy = items[iid]["candidates"][a]["system"], items[iid]["candidates"][b]["system"]
        if sx == sy:
            continue
        value = {"first": 1.0, "tie": 0.5, "second": 0.0}
        out.append((sx, sy, statistics.fmean(value[v] for v in labels.values())))
    return out


def _tally(outcomes) -> dict:
    wins = sum(s > 0.5 for s in outcomes)
    losses = sum(s < 0.5 for s in outcomes)
    ties = len(outcomes) - wins - losses
    decided = wins + losses
    return {
        "items": len(outcomes),
        "wins": wins,
        "losses": losses,
        "ties": ties,
        "win_rate": wins / decided if decided else math.nan,
        "win_rate_ci95": wilson_interval(wins, decided),
        "score": (wins + ties / 2) / len(outcomes) if outcomes else math.nan,
    }


def win_rates(items: dict, judgments: list[dict]) -> dict:
    """Per system (against all others) and head to head: wins / losses / ties over items, win rate among the
    decided items with its Wilson 95% interval, and the score counting a tie as half a win."""
    per: dict[str, list[float]] = defaultdict(list)
    head: dict[tuple[str, str], list[float]] = defaultdict(list)
    for sx, sy, s in item_outcomes(items, judgments):
        per[sx].append(s)
        per[sy].append(1.0 - s)
        x, y, v = (sx, sy, s) if sx < sy else (sy, sx, 1.0 - s)
        head[(x, y)].append(v)
    return {
        "systems": {name: _tally(v) for name, v in sorted(per.items())},
        "head_to_head": {
            f"{x} vs {y}": {"system": x, "opponent": y, **_tally(v)} for (x, y), v in sorted(head.items())
        },
    }


def project_stats(folder: str | Path) -> dict:
    store = Store(folder)
    items, judgments, skips = store.items(), store.judgments(), store.skips()
    per = annotator_stats(items, judgments, skips)
    all_gold = [
        gold_score(j, items[j["item"]]["gold"]) for j in judgments if items[j["item"]]["gold"] is not None
    ]
    pos = [j["ranking"][0] == j["shown"][0] for j in judgments if len(j["shown"]) == 2 and not j["tie"]]
    secs = [j["seconds"] for j in judgments if j["seconds"] is not None]
    n_items = sum(it["gold"] is None for it in items.values())
    per_item = defaultdict(int)
    for j in judgments:
        per_item[j["item"]] += 1
    return {
        "project": {
            "mode": store.settings["mode"],
            "per_item": store.settings["per_item"],
            "items": n_items,
            "gold_items": len(items) - n_items,
            "judgments": len(judgments),
            "history_rows": len(store.judgments(status=None)),
            "items_complete": sum(
                per_item[i] >= store.settings["per_item"] for i, it in items.items() if it["gold"] is None
            ),
        },
        "overall": {
            "gold_n": len(all_gold),
            "gold_accuracy": sum(all_gold) / len(all_gold) if all_gold else math.nan,
            "position_n": len(pos),
            "first_shown_rate": sum(pos) / len(pos) if pos else math.nan,
            "first_shown_ci95": wilson_interval(sum(pos), len(pos)),
            "seconds_median": statistics.median(secs) if secs else math.nan,
        },
        "annotators": per,
        "agreement": agreement_stats(items, judgments),
        "win_rates": win_rates(items, judgments),
    }


def _f(x, digits: int = 3) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _ci(pair) -> str:
    return "–" if any(math.isnan(v) for v in pair) else f"[{pair[0]:.3f}, {pair[1]:.3f}]"


def stats_markdown(s: dict) -> str:
    p, o, agr = s["project"], s["overall"], s["agreement"]
    lines = [
        "# Labeling statistics",
        "",
        f"{p['mode']} project: {p['items']} items ({p['items_complete']} with {p['per_item']}+ judgments) and "
        f"{p['gold_items']} gold items; {p['judgments']} judgments in force ({p['history_rows']} rows with history).",
        "",
        "## Annotators",
        "",
        "| annotator | judged | skipped | ties | gold acc. (n) | shown-first chosen (n) [95% Wilson] | s/item (median) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, a in s["annotators"].items():
        lines.append(
            f"| {name} | {a['judged']} | {a['skipped']} | {_f(a['tie_rate'])} | {_f(a['gold_accuracy'])} ({a['gold_n']}) "
            f"| {_f(a['first_shown_rate'])} ({a['position_n']}) {_ci(a['first_shown_ci95'])} | {_f(a['seconds_median'], 1)} |"
        )
    lines.append(
        f"| **all** | {p['judgments']} | | | {_f(o['gold_accuracy'])} ({o['gold_n']}) | {_f(o['first_shown_rate'])} "
        f"({o['position_n']}) {_ci(o['first_shown_ci95'])} | {_f(o['seconds_median'], 1)} |"
    )
    lines += [
        "",
        "Position bias: 0.5 = none (candidates are shown in an order drawn per annotator and item).",
        "",
        "## Agreement",
        "",
        f"Krippendorff's α (nominal: first / second / tie) over {agr['units']} candidate pairs "
        f"({agr['units_with_2plus']} labelled by 2+ annotators): **{_f(agr['krippendorff_alpha_nominal'])}**.",
        "",
        "| annotator pair | Cohen's κ | shared units |",
        "|---|---|---|",
    ]
    lines += [f"| {k} | {_f(v['kappa'])} | {v['shared_units']} |" for k, v in agr["cohen_kappa"].items()]
    lines += [
        "",
        "## Win rates",
        "",
        "Per item (its annotators' mean decides it); win rate = wins / (wins + losses) with its 95% Wilson "
        "interval; score counts a tie as half a win.",
        "",
        "| system | items | wins | losses | ties | win rate [95% Wilson] | score |",
        "|---|---|---|---|---|---|---|",
    ]
    rows = list(s["win_rates"]["systems"].items())
    rows += [(k, v) for k, v in s["win_rates"]["head_to_head"].items()] if len(rows) > 2 else []
    for name, t in rows:
        lines.append(
            f"| {name} | {t['items']} | {t['wins']} | {t['losses']} | {t['ties']} | {_f(t['win_rate'])} "
            f"{_ci(t['win_rate_ci95'])} | {_f(t['score'])} |"
        )
    return "\n".join(lines) + "\n"


def _jsonable(x):
    if isinstance(x, float) and math.isnan(x):
        return None
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x


def write_stats(folder: str | Path) -> tuple[dict, str]:
    """Compute, write ``stats.md`` and ``stats.json`` in the project folder; returns ``(stats, markdown)``."""
    raw = project_stats(folder)
    s, md = _jsonable(raw), stats_markdown(raw)
    Path(folder, "stats.json").write_text(json.dumps(s, indent=2) + "\n")
    Path(folder, "stats.md").write_text(md)
    return s, md
