"""Tasks: named datasets of samples ``{"prompt": str, "references": [str, ...], "meta": {...}}`` with splits.

A task factory is registered by name (``@rl4text.register_task("name")``) and called with ``task.args``.
"""

from __future__ import annotations

import gzip
import io
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path


class TaskDataError(ValueError):
    """Missing or malformed task data; the message names the file, line and field."""


@dataclass
class Task:
    """A dataset of prompts and references.

    ``splits`` maps a split name to its samples or to a zero-argument loader (read on first use).
    ``metrics`` is the default evaluation suite; ``instruction`` is how prompts were worded (for the record).
    """

    name: str
    splits: dict[str, list[dict] | Callable[[], list[dict]]]
    metrics: list[str] = field(default_factory=list)

    def split(self, name: str) -> list[dict]:
        if name not in self.splits:
            raise TaskDataError(f"task {self.name!r} has no split {name!r}; splits: {', '.join(self.splits)}")
        data = self.splits[name]
        if callable(data):
            data = self.splits[name] = data()
        if not data:
            raise TaskDataError(f"task {self.name!r}: split {name!r} is empty")
        return data


def data_root() -> Path | None:
    """The folder named by ``RL4TEXT_DATA`` (layout of ``../shared/data``), or None when unset."""
    root = os.environ.get("RL4TEXT_DATA")
    return Path(root).expanduser() if root else None


def check_sample(sample: dict, where: str) -> dict:
    """Validate a sample; ``where`` names its file and line in the error."""
    prompt = sample.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise TaskDataError(f"{where}: field 'prompt' is missing or empty")
    refs = sample.get("references")
    if not isinstance(refs, list) or not refs or not all(isinstance(r, str) for r in refs):
        raise TaskDataError(f"{where}: field 'references' must be a non-empty list of strings, got {refs!r}")
    sample.setdefault("meta", {})
    return sample


def decode_line(raw: bytes, path: Path | str, line: int) -> str:
    """One line of a UTF-8 file; bytes that are not UTF-8 raise :class:`TaskDataError` naming file and line."""
    try:
        return raw.decode("utf-8-sig" if line == 1 else "utf-8")
    except UnicodeDecodeError as exc:
        raise TaskDataError(
            f"{path} line {line}: not valid UTF-8 (byte {raw[exc.start : exc.start + 1]!r} at column {exc.start + 1}); "
            "save the file as UTF-8"
        ) from None


def open_text(path: Path, newline: str | None = None) -> io.StringIO:
    """A UTF-8 text file (a BOM is skipped), gunzipped when it ends in ``.gz``, as a text stream.

    The whole file is decoded up front, so bytes that are not UTF-8 raise :class:`TaskDataError` naming the
    file and line (not a ``UnicodeDecodeError`` in the middle of a loop); a broken gzip file names the file too.
    """
    path = Path(path)
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise TaskDataError(f"{path}: cannot read the file ({exc})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        start = raw.rfind(b"\n", 0, exc.start) + 1
        decode_line(
            raw[start : raw.find(b"\n", exc.start) if b"\n" in raw[exc.start :] else None], path, line
        )
        raise  # not reached: decode_line raises for the line that holds the bad byte
    return io.StringIO(text, newline=newline)


def read_jsonl_rows(path: str | Path) -> Iterator[tuple[dict, str]]:
    """``(row, where)`` for each non-blank line of a JSON-lines file (``.gz`` too); ``where`` is "FILE line N".

    A missing file, a line that is not valid JSON or not a JSON object raises :class:`TaskDataError` naming it.
    """
    path = Path(path)
    if not path.is_file():
        raise TaskDataError(f"missing file {path}")
    with open_text(path) as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path} line {n}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise TaskDataError(f"{where}: not valid JSON ({exc.msg})") from exc
            if not isinstance(row, dict):
                raise TaskDataError(f"{where}: expected a JSON object, got {type(row).__name__}")
            yield row, where
