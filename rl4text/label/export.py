"""``rl4text label export``: the judgments as the JSON lines ``rl4text rm train`` reads (and DPO will).

- ``pairs``: ``{"prompt", "chosen", "rejected"}`` (``data.format: pairs``), one line per candidate pair of an
  item whose annotators' majority preferred one side (ties and even splits are left out);
- ``rankings``: ``{"prompt", "completions": [...], "ranks": [...]}`` (``data.format: rankings``, 1 = best,
  ties allowed), one line per prompt: its candidates ranked by Copeland score (majority wins − losses over
  the pairs above).

``--min-agreement X`` keeps a pair only when at least a share X of its annotators chose the majority side
(a tie counts against); ``--drop-failed-gold`` first drops every judgment of annotators whose gold accuracy is
below ``--gold-threshold``. Gold items themselves are not exported, nor pairs with an empty side (the
``pairs`` reader refuses blank texts). A line carries ``"references"`` when the
item has references (the RM evaluation's lexical baselines use them).
"""

from __future__ import annotations

import json
from pathlib import Path

from rl4text.label.stats import annotator_stats, pair_labels
from rl4text.label.store import LabelError, Store

FORMATS = ("pairs", "rankings")


def majority_pairs(
    folder: str | Path,
    *,
    min_agreement: float = 0.0,
    drop_failed_gold: bool = False,
    gold_threshold: float = 0.75,
) -> tuple[list[dict], dict]:
    """``(pairs, report)``: ``{"prompt", "chosen", "rejected", "references"}`` per kept candidate pair."""
    if not 0.0 <= min_agreement <= 1.0:
        raise LabelError(f"--min-agreement must be in [0, 1], got {min_agreement}")
    store = Store(folder)
    items, judgments = store.items(), store.judgments()
    dropped: list[str] = []
    if drop_failed_gold:
        per = annotator_stats(items, judgments, [])
        dropped = sorted(n for n, a in per.items() if a["gold_n"] and a["gold_accuracy"] < gold_threshold)
        judgments = [j for j in judgments if j["annotator"] not in dropped]
    pairs, report = (
        [],
        {
            "units": 0,
            "no_majority": 0,
            "below_agreement": 0,
            "same_text": 0,
            "blank_text": 0,
            "dropped_annotators": dropped,
        },
    )
    for (iid, a, b), labels in sorted(pair_labels(items, judgments).items()):
        report["units"] += 1
        item = items[iid]
        ta, tb = item["candidates"][a]["text"], item["candidates"][b]["text"]
        votes = list(labels.values())
        first, second = votes.count("first"), votes.count("second")
        if ta == tb:
            report["same_text"] += 1
            continue
        if not ta.strip() or not tb.strip():
            report["blank_text"] += 1  # the pairs reader refuses an empty side (nothing to score)
            continue
        if first == second:
            report["no_majority"] += 1
            continue
        if max(first, second) / len(votes) < min_agreement:
            report["below_agreement"] += 1
            continue
        chosen, rejected = (ta, tb) if first > second else (tb, ta)
        row = {"prompt": item["prompt"], "chosen": chosen, "rejected": rejected}
        if item["references"]:
            row["references"] = item["references"]
        pairs.append(row)
    report["pairs"] = len(pairs)
    return pairs, report


def rankings_from_pairs(pairs: list[dict]) -> list[dict]:
    """One ranking per prompt: candidates ordered by Copeland score (wins − losses), ties sharing a rank."""
    by_prompt: dict[str, dict] = {}
    for p in pairs:
        g = by_prompt.setdefault(p["prompt"], {"score": {}, "references": p.get("references", [])})
        g["score"][p["chosen"]] = g["score"].get(p["chosen"], 0) + 1
        g["score"][p["rejected"]] = g["score"].get(p["rejected"], 0) - 1
    rows = []
    for prompt, g in by_prompt.items():
        texts = sorted(g["score"], key=lambda t: -g["score"][t])
        if len({g["score"][t] for t in texts}) < 2:
            continue  # no preference survives (e.g. a cycle a > b > c > a)
        ranks = [1 + sum(g["score"][u] > g["score"][t] for u in texts) for t in texts]
        row = {"prompt": prompt, "completions": texts, "ranks": ranks}
        if g["references"]:
            row["references"] = g["references"]
        rows.append(row)
    return rows


def export(folder: str | Path, fmt: str, output: str | Path, **options) -> dict:
    """Write ``output`` in ``fmt``; returns the report (counts of kept and left-out pairs)."""
    if fmt not in FORMATS:
        raise LabelError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    pairs, report = majority_pairs(folder, **options)
    rows = pairs if fmt == "pairs" else rankings_from_pairs(pairs)
    if not rows:
        raise LabelError(
            f"{folder}: no judgment survives the filters ({json.dumps(report)}); nothing written"
        )
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    tmp.replace(output)
    report.update({"format": fmt, "lines": len(rows), "output": str(output)})
    return report
