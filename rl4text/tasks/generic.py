"""A task over JSON-lines files: one file per split, prompt and reference fields configurable."""

from __future__ import annotations

import json
from pathlib import Path

from rl4text.registry import register_task
from rl4text.tasks import Task, TaskDataError, check_sample


def read_jsonl_samples(
    path: str | Path, prompt_field: str, reference_field: str, template: str
) -> list[dict]:
    """Read samples from ``path``; every malformed line is reported with its number and field."""
    path = Path(path)
    if not path.is_file():
        raise TaskDataError(f"jsonl task: file {path} does not exist")
    rows = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path} line {n}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise TaskDataError(f"{where}: not valid JSON ({exc.msg})") from exc
            for key in (prompt_field, reference_field):
                if key not in row:
                    raise TaskDataError(f"{where}: missing field {key!r}; fields present: {sorted(row)}")
            refs = row[reference_field]
            refs = [refs] if isinstance(refs, str) else refs
            meta = {k: v for k, v in row.items() if k not in (prompt_field, reference_field)}
            prompt = template.format(text=row[prompt_field]) if isinstance(row[prompt_field], str) else None
            rows.append(check_sample({"prompt": prompt, "references": refs, "meta": meta}, where))
    return rows


@register_task("jsonl")
def jsonl_task(
    files: dict[str, str],
    prompt_field: str = "prompt",
    reference_field: str = "references",
    template: str = "{text}",
    metrics: list[str] | None = None,
) -> Task:
    """``files`` maps split names to JSON-lines paths; a reference field may hold a string or a list of strings."""
    if not files:
        raise TaskDataError(
            "jsonl task: task.args.files must map split names to files, e.g. {train: data.jsonl}"
        )
    splits = {
        split: (lambda p=path: read_jsonl_samples(p, prompt_field, reference_field, template))
        for split, path in files.items()
    }
    return Task("jsonl", splits, metrics=list(metrics or ["chrf", "bleu"]))
