"""The run folder: created only when the run can use it, never clobbering a previous run by accident.

``--overwrite`` moves the old run aside (``.NAME.replaced``) and deletes it only once the new run has started
(written its first metrics row); a failure before that restores it. ``--resume`` checks that the saved config
matches. Finished artefacts (``model/``) are written to a temporary folder and renamed into place.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import yaml

from rl4text.runtime.errors import RunDirError


def config_differences(old: dict, new: dict, may_change: Sequence[str] = (), prefix: str = "") -> list[str]:
    """Dotted keys (two levels deep) where ``new`` differs from ``old``, except those in ``may_change``."""
    diff = []
    for key in dict.fromkeys([*new, *old]):
        dotted = f"{prefix}{key}"
        if dotted in may_change:
            continue
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict) and not prefix:
            diff += config_differences(a, b, may_change, prefix=f"{dotted}.")
        elif a != b:
            diff.append(dotted)
    return diff


class RunFolder:
    """A run folder: ``check()`` (no side effects), then ``with folder:`` creates it and saves the config.

    ``config``: the resolved config as a dict (compared on resume); ``write_config(path)`` writes it (default:
    YAML). ``may_change``: dotted keys a resume may change (``train.iterations`` for RL runs).
    ``occupied_message``: the error when the folder holds something and neither resume nor overwrite is asked
    (``{path}`` is filled in).
    """

    def __init__(
        self,
        path: str | Path,
        config: dict,
        *,
        resume: bool = False,
        overwrite: bool = False,
        config_file: str = "config.yaml",
        may_change: Sequence[str] = (),
        write_config: Callable[[Path], None] | None = None,
        occupied_message: str | None = None,
    ):
        self.path, self.config, self.resume, self.overwrite = Path(path), config, resume, overwrite
        self.config_path = self.path / config_file
        self.may_change = tuple(may_change)
        self.write_config = write_config or (
            lambda p: p.write_text(yaml.safe_dump(self.config, sort_keys=False))
        )
        self.occupied_message = occupied_message
        self.aside = self.path.parent / f".{self.path.name}.replaced"
        self.is_started = False

    def check(self) -> None:
        """Raise :class:`RunDirError` when the folder cannot be used as asked; changes nothing on disk."""
        if self.resume:
            if not self.config_path.is_file():
                raise RunDirError(
                    f"--resume: {self.path} holds no run (no {self.config_path.name}); start it without --resume"
                )
            diff = config_differences(
                yaml.safe_load(self.config_path.read_text()) or {}, self.config, self.may_change
            )
            if diff:
                allowed = ", ".join(self.may_change) or "nothing"
                raise RunDirError(
                    f"--resume: the config differs from the one saved in {self.config_path} at {', '.join(diff)}; "
                    f"only {allowed} may change when resuming"
                )
        elif self.path.exists() and any(self.path.iterdir()) and not self.overwrite:
            raise RunDirError(
                self.occupied_message.format(path=self.path)
                if self.occupied_message
                else f"{self.path} already holds a run; pass --resume to continue it, --overwrite to replace it, "
                "or choose another --output-dir"
            )

    def __enter__(self) -> RunFolder:
        self.check()
        if not self.resume and self.path.exists() and any(self.path.iterdir()):
            shutil.rmtree(self.aside, ignore_errors=True)
            self.path.rename(self.aside)  # kept until the new run has started
        self.path.mkdir(parents=True, exist_ok=True)
        self.write_config(self.config_path)
        return self

    def started(self) -> None:
        """The new run is under way: the run it replaces can go."""
        if not self.is_started:
            self.is_started = True
            shutil.rmtree(self.aside, ignore_errors=True)

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None or self.is_started:
            self.started()
        elif self.aside.exists():  # failed before it started: put the old run back as it was
            shutil.rmtree(self.path, ignore_errors=True)
            self.aside.rename(self.path)
            print(f"the run did not start; {self.path} holds the previous run again", flush=True)


@contextlib.contextmanager
def atomic_folder(final: str | Path) -> Iterator[Path]:
    """Write a folder under a temporary name, then rename it to ``final`` (replacing an old one).

    A kill mid-write leaves ``.NAME.tmp`` beside it, never a half-written ``final`` that looks finished."""
    final = Path(final)
    tmp, old = final.parent / f".{final.name}.tmp", final.parent / f".{final.name}.old"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    yield tmp
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``path`` through a temporary file and a rename (never a truncated file)."""
    path = Path(path)
    tmp = path.parent / f".{path.name}.tmp"
    tmp.write_text(text)
    os.replace(tmp, path)


def read_jsonl(path: Path) -> list[dict]:
    """The rows of a JSON-lines file; a torn last line (a kill mid-write) is dropped."""
    rows = []
    for line in path.read_text().splitlines():
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                break
    return rows


def cut_jsonl(path: Path, keep: Callable[[dict], bool]) -> int:
    """Keep only the rows ``keep`` accepts (originals saved as ``*.before-resume``); returns rows dropped."""
    if not path.is_file():
        return 0
    text = path.read_text()
    rows = read_jsonl(path)
    kept = [r for r in rows if keep(r)]
    if (len(kept) == len(rows) and text.endswith("\n")) or not text:
        return 0
    shutil.copyfile(path, path.with_suffix(path.suffix + ".before-resume"))
    write_text_atomic(path, "".join(json.dumps(r) + "\n" for r in kept))
    return len(rows) - len(kept)
