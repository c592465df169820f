"""A generic task over your own files: JSON lines or CSV/TSV, one file per split.

Registered three times, the same factory with a different default ``format``: ``files`` (by extension),
``jsonl`` (JSON lines; the original name, backward compatible) and ``csv``. Example::

    task:
      name: files
      args:
        files: {train: data/train.csv, val: data/val.jsonl}
        prompt_field: question
        reference_field: [answer_1, answer_2]      # several fields/columns; empty cells are skipped
        instruction: "Answer briefly.\\n\\n{text}"   # {text} = the prompt field; other {field}s of the row too
        meta_fields: [id]                            # default: every other field

A reference field may hold a string or (JSON) a list of strings; ``reference_separator`` splits string
references (e.g. ``"|||"`` in a CSV cell). Every malformed row is a ``TaskDataError`` naming the file, the
line (for CSV the line where the record starts) and the field.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

from rl4text.registry import register_task
from rl4text.tasks import Task, TaskDataError, check_sample, open_text, read_jsonl_rows
from rl4text.tasks.hub import first

FORMATS = ("jsonl", "csv", "tsv")


def detect_format(path: Path) -> str:
    """``jsonl``, ``csv`` or ``tsv`` from the file name (``.jsonl``/``.json``/``.ndjson``, ``.csv``, ``.tsv``,
    optionally ``.gz``)."""
    name = path.name.lower().removesuffix(".gz")
    for suffix, fmt in (
        (".jsonl", "jsonl"),
        (".ndjson", "jsonl"),
        (".json", "jsonl"),
        (".csv", "csv"),
        (".tsv", "tsv"),
    ):
        if name.endswith(suffix):
            return fmt
    raise TaskDataError(f"{path}: cannot tell the format from the name; pass format: jsonl, csv or tsv")


def _csv_rows(path: Path, delimiter: str, columns: list[str]) -> Iterator[tuple[dict, str]]:
    with open_text(path, newline="") as f:
        reader = csv.reader(f, delimiter=delimiter)
        try:
            header = next(reader)
        except StopIteration:
            raise TaskDataError(f"{path} line 1: the file is empty (a header row is needed)") from None
        except csv.Error as exc:
            raise TaskDataError(f"{path} line {reader.line_num}: not valid CSV ({exc})") from exc
        header = [h.strip() for h in header]
        missing = [c for c in columns if c not in header]
        if missing:
            raise TaskDataError(
                f"{path} line 1: missing column(s) {missing}; columns in the header: {header}"
            )
        start = reader.line_num + 1
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise TaskDataError(f"{path} line {start}: not valid CSV ({exc})") from exc
            where, start = f"{path} line {start}", reader.line_num + 1
            if not cells or all(not c.strip() for c in cells):
                continue
            if len(cells) != len(header):
                raise TaskDataError(f"{where}: {len(cells)} fields but the header has {len(header)}")
            yield dict(zip(header, cells)), where


def _as_list(value) -> list[str]:
    return value if isinstance(value, list) else [value]


def read_samples(
    path: str | Path,
    prompt_field: str,
    reference_field: str | list[str],
    template: str | None = "{text}",
    format: str | None = None,
    delimiter: str | None = None,
    reference_separator: str | None = None,
    meta_fields: list[str] | None = None,
    prefix: str = "",
    max_samples: int | None = None,
) -> list[dict]:
    """Samples from one JSON-lines or CSV/TSV file (``format`` None: by extension)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise TaskDataError(f"file task: file {path} does not exist")
    fmt = format or detect_format(path)
    if fmt not in FORMATS:
        raise TaskDataError(f"file task: format must be one of {FORMATS}, got {fmt!r}")
    ref_fields = _as_list(reference_field)
    needed = [prompt_field, *ref_fields, *(meta_fields or [])]
    if fmt == "jsonl":
        rows = read_jsonl_rows(path)
    else:
        rows = _csv_rows(path, delimiter or ("\t" if fmt == "tsv" else ","), needed)
    samples = []
    for row, where in rows:
        for key in needed:
            if key not in row:
                raise TaskDataError(f"{where}: missing field {key!r}; fields present: {sorted(row)}")
        text = row[prompt_field]
        if not isinstance(text, str) or not text.strip():
            raise TaskDataError(
                f"{where}: field 'prompt' is missing or empty (prompt field {prompt_field!r})"
            )
        refs: list[str] = []
        for key in ref_fields:
            for ref in _as_list(row[key]):
                if not isinstance(ref, str):
                    raise TaskDataError(f"{where}: field {key!r} must hold strings, got {ref!r:.80}")
                parts = ref.split(reference_separator) if reference_separator else [ref]
                refs.extend(p.strip() for p in parts if p.strip())
        if not refs:
            raise TaskDataError(
                f"{where}: field 'references' must be a non-empty list of non-empty strings; "
                f"reference field(s) {ref_fields} gave {[row[k] for k in ref_fields]!r:.120}"
            )
        if template is None:
            prompt = prefix + text
        else:
            try:
                prompt = template.format_map({**row, "text": text})
            except KeyError as exc:
                raise TaskDataError(
                    f"{where}: the template uses field {exc} that this row lacks; fields present: {sorted(row)}"
                ) from exc
            except (IndexError, ValueError) as exc:
                raise TaskDataError(f"{where}: cannot format the template {template!r}: {exc}") from exc
            prompt = prefix + prompt
        used = {prompt_field, *ref_fields}
        keep = meta_fields if meta_fields is not None else [k for k in row if k not in used]
        meta = {k: row[k] for k in keep}
        samples.append(check_sample({"prompt": prompt, "references": refs, "meta": meta}, where))
        if max_samples is not None and len(samples) >= max_samples:
            break
    return first(samples, max_samples)


def read_jsonl_samples(
    path: str | Path, prompt_field: str, reference_field: str, template: str
) -> list[dict]:
    """Samples from a JSON-lines file (kept for callers of the original ``jsonl`` task)."""
    return read_samples(path, prompt_field, reference_field, template, format="jsonl")


def _files_task(
    name: str,
    fmt: str | None,
    files: dict[str, str] | str,
    prompt_field: str,
    reference_field: str | list[str],
    instruction: str | None,
    template: str | None,
    prefix: str,
    delimiter: str | None,
    reference_separator: str | None,
    meta_fields: list[str] | None,
    max_samples: int | None,
    metrics: list[str] | None,
) -> Task:
    if isinstance(files, str):
        files = {"train": files}
    if not files:
        raise TaskDataError(
            f"{name} task: task.args.files must map split names to files, e.g. {{train: data.{fmt or 'jsonl'}}}"
        )
    if fmt is not None and fmt not in FORMATS:
        raise TaskDataError(f"{name} task: format must be one of {FORMATS}, got {fmt!r}")
    tmpl = template if template is not None else instruction  # template: the older name, wins when given
    splits = {
        split: (
            lambda p=path: read_samples(
                p,
                prompt_field,
                reference_field,
                tmpl,
                format=fmt,
                delimiter=delimiter,
                reference_separator=reference_separator,
                meta_fields=meta_fields,
                prefix=prefix,
                max_samples=max_samples,
            )
        )
        for split, path in files.items()
    }
    return Task(name, splits, metrics=list(metrics or ["chrf", "bleu"]))


@register_task("files")
def files_task(
    files: dict[str, str] | str,
    prompt_field: str = "prompt",
    reference_field: str | list[str] = "references",
    instruction: str | None = "{text}",
    template: str | None = None,
    prefix: str = "",
    format: str | None = None,
    delimiter: str | None = None,
    reference_separator: str | None = None,
    meta_fields: list[str] | None = None,
    max_samples: int | None = None,
    metrics: list[str] | None = None,
) -> Task:
    """Samples from JSON-lines or CSV/TSV files (``format``: jsonl, csv or tsv; default by extension).

    ``files`` maps split names to paths (one path: the ``train`` split). ``prompt_field`` is the field/column
    of the source text; ``reference_field`` one field or a list of fields (string or list-of-strings values;
    ``reference_separator`` splits strings). ``instruction`` (alias ``template``) formats the prompt from
    ``{text}`` and any other ``{field}`` of the row; ``instruction: null`` gives ``prefix + text``. ``meta_fields``
    picks the fields kept in ``meta`` (default: all but the prompt and reference fields). ``delimiter``
    overrides CSV's ``,`` / TSV's tab. Default metrics chrf, bleu (``metrics`` to change).
    """
    return _files_task(
        "files",
        format,
        files,
        prompt_field,
        reference_field,
        instruction,
        template,
        prefix,
        delimiter,
        reference_separator,
        meta_fields,
        max_samples,
        metrics,
    )


@register_task("jsonl")
def jsonl_task(
    files: dict[str, str] | str,
    prompt_field: str = "prompt",
    reference_field: str | list[str] = "references",
    instruction: str | None = "{text}",
    template: str | None = None,
    prefix: str = "",
    format: str | None = "jsonl",
    delimiter: str | None = None,
    reference_separator: str | None = None,
    meta_fields: list[str] | None = None,
    max_samples: int | None = None,
    metrics: list[str] | None = None,
) -> Task:
    """The ``files`` task reading JSON lines by default (``format`` to change); see :func:`files_task`."""
    return _files_task(
        "jsonl",
        format,
        files,
        prompt_field,
        reference_field,
        instruction,
        template,
        prefix,
        delimiter,
        reference_separator,
        meta_fields,
        max_samples,
        metrics,
    )


@register_task("csv")
def csv_task(
    files: dict[str, str] | str,
    prompt_field: str = "prompt",
    reference_field: str | list[str] = "references",
    instruction: str | None = "{text}",
    template: str | None = None,
    prefix: str = "",
    format: str | None = "csv",
    delimiter: str | None = None,
    reference_separator: str | None = None,
    meta_fields: list[str] | None = None,
    max_samples: int | None = None,
    metrics: list[str] | None = None,
) -> Task:
    """The ``files`` task reading CSV by default (``format: tsv`` or ``delimiter`` for others); see
    :func:`files_task`."""
    return _files_task(
        "csv",
        format,
        files,
        prompt_field,
        reference_field,
        instruction,
        template,
        prefix,
        delimiter,
        reference_separator,
        meta_fields,
        max_samples,
        metrics,
    )
