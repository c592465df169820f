"""``rl4text label new``: comparison items from the files runs write, plus gold items with known answers.

Inputs are JSON lines with a ``prompt`` and a ``completion`` per row: ``predictions.jsonl`` (``rl4text eval``)
or ``samples.jsonl`` (a training run's evaluation samples; each row's ``iteration`` becomes part of its system
name, ``NAME@ITERATION``, so one run's file compares its policy over time). Completions of the same prompt are
grouped: from different files (starting model vs trained policy) or several samples of one policy. Each
candidate remembers its system; annotators never see it.

- ``pairwise``: one item per pair of a prompt's candidates whose texts differ.
- ``ranking``: one item per prompt with all its candidates.

Gold items (``--gold FILE``) are shown to every annotator: ``pairs`` lines ``{"prompt", "chosen",
"rejected"}`` or ``rankings`` lines ``{"prompt", "completions": [best, ..., worst]}``.
"""

from __future__ import annotations

import secrets
import time
from itertools import combinations
from pathlib import Path

from rl4text.label.store import LabelError, Store
from rl4text.tasks import TaskDataError, read_jsonl_rows

MODES = ("pairwise", "ranking")


def _string(row: dict, key: str, where: str, *, empty_ok: bool = False) -> str:
    value = row.get(key)
    if not isinstance(value, str) or (not empty_ok and not value.strip()):
        raise TaskDataError(
            f"{where}: field {key!r} must be a{'' if empty_ok else ' non-empty'} string; fields present: {sorted(row)}"
        )
    return value


def read_candidates(path: str | Path, name: str) -> list[dict]:
    """``[{"prompt", "text", "system", "references"}]`` from a predictions / samples JSON-lines file."""
    out = []
    for row, where in read_jsonl_rows(path):
        prompt = _string(row, "prompt", where)
        text = _string(row, "completion", where, empty_ok=True)
        refs = row.get("references", [])
        if not isinstance(refs, list) or not all(isinstance(r, str) for r in refs):
            raise TaskDataError(f"{where}: field 'references' must be a list of strings, got {refs!r}")
        system = name if "iteration" not in row else f"{name}@{row['iteration']}"
        out.append({"prompt": prompt, "text": text, "system": system, "references": refs})
    if not out:
        raise TaskDataError(f"{path}: no rows (expected JSON lines with 'prompt' and 'completion')")
    return out


def read_gold(path: str | Path, mode: str) -> list[dict]:
    """Gold items: ``pairs`` or ``rankings`` lines (the formats ``rl4text rm train`` reads)."""
    items = []
    for row, where in read_jsonl_rows(path):
        prompt = _string(row, "prompt", where, empty_ok=True)
        if "chosen" in row or "rejected" in row:
            texts = [_string(row, "chosen", where), _string(row, "rejected", where)]
        elif isinstance(row.get("completions"), list):
            texts = row["completions"]
            if len(texts) < 2 or not all(isinstance(t, str) for t in texts):
                raise TaskDataError(f"{where}: field 'completions' must be a list of at least 2 strings")
        else:
            raise TaskDataError(
                f"{where}: a gold line needs 'chosen' and 'rejected' (a pair) or 'completions' (best first); "
                f"fields present: {sorted(row)}"
            )
        if len(set(texts)) != len(texts):
            raise TaskDataError(f"{where}: the gold candidates must differ from each other")
        if mode == "pairwise" and len(texts) != 2:
            raise TaskDataError(f"{where}: a pairwise project needs gold pairs, got {len(texts)} completions")
        items.append(
            {
                "id": f"g{len(items) + 1:03d}",
                "prompt": prompt,
                "references": [],
                "gold": list(range(len(texts))),
                "candidates": [{"text": t, "system": "gold"} for t in texts],
            }
        )
    if not items:
        raise TaskDataError(f"{path}: no gold lines")
    return items


def build_items(candidates: list[dict], mode: str) -> tuple[list[dict], int]:
    """``(items, prompts left out)``: candidates grouped by prompt (first-seen order), then per ``mode``."""
    by_prompt: dict[str, list[dict]] = {}
    for c in candidates:
        by_prompt.setdefault(c["prompt"], []).append(c)
    items, left_out = [], 0
    for p, (prompt, group) in enumerate(by_prompt.items(), start=1):
        refs = next((c["references"] for c in group if c["references"]), [])
        cands = [{"text": c["text"], "system": c["system"]} for c in group]
        if len({c["text"] for c in cands}) < 2:
            left_out += 1  # one candidate, or all the same text: nothing to compare
            continue
        if mode == "ranking":
            items.append({"id": f"p{p:04d}", "prompt": prompt, "references": refs, "candidates": cands})
            continue
        pairs = [(a, b) for a, b in combinations(cands, 2) if a["text"] != b["text"]]
        for k, (a, b) in enumerate(pairs, start=1):
            items.append({"id": f"p{p:04d}-{k}", "prompt": prompt, "references": refs, "candidates": [a, b]})
    return items, left_out


def new_project(
    folder: str | Path,
    files: list[str],
    *,
    names: list[str] | None = None,
    mode: str = "pairwise",
    per_item: int = 3,
    gold: str | None = None,
    show_references: bool = False,
) -> dict:
    """Create the project; returns a summary ``{"items", "gold", "prompts_left_out", "systems"}``."""
    if mode not in MODES:
        raise LabelError(f"--mode must be one of {', '.join(MODES)}, got {mode!r}")
    if per_item < 1:
        raise LabelError(f"--per-item must be at least 1, got {per_item}")
    if names is not None and len(names) != len(files):
        raise LabelError(f"--names gives {len(names)} names for {len(files)} --from files")
    names = names or list(files)
    if len(set(names)) != len(names):
        raise LabelError(f"system names must differ, got {names}")
    candidates = [c for f, n in zip(files, names) for c in read_candidates(f, n)]
    items, left_out = build_items(candidates, mode)
    if not items:
        raise LabelError(
            f"no prompt has two different completions in {', '.join(files)}: give files that share prompts "
            "(e.g. the starting model's and the trained policy's predictions on one split)"
        )
    gold_items = read_gold(gold, mode) if gold else []
    settings = {
        "mode": mode,
        "per_item": per_item,
        "show_references": show_references,
        "secret": secrets.token_hex(16),
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
        "sources": [{"file": str(f), "system": n} for f, n in zip(files, names)],
        "gold_file": str(gold) if gold else None,
    }
    Store.create(folder, settings, items + gold_items)
    return {
        "items": len(items),
        "gold": len(gold_items),
        "prompts_left_out": left_out,
        "systems": sorted({c["system"] for c in candidates}),
    }
