"""One run logger for every recipe: ``metrics.jsonl`` + ``samples.jsonl`` in the run folder, mirrored to the
trackers (W&B, TensorBoard) and to the progress display."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

from rl4text.progress import Progress
from rl4text.runtime.folder import cut_jsonl, read_jsonl
from rl4text.tracking import RunInfo, make_trackers


class RunLogger:
    """Append-only JSON-lines logs, mirrored to ``trackers`` and ``progress``.

    ``step_key``: the row key that is the trackers' step (``iteration`` for RL, ``step`` for SFT and RM runs).
    ``on_first_row``: called once, when the first metrics row is written (the run has started).
    """

    def __init__(
        self,
        folder: str | Path,
        *,
        trackers: Sequence = (),
        progress: Progress | None = None,
        step_key: str = "iteration",
        on_first_row: Callable[[], None] | None = None,
    ):
        folder = Path(folder)
        self.metrics_path, self.samples_path = folder / "metrics.jsonl", folder / "samples.jsonl"
        self.folder = folder
        self.trackers, self.progress, self.step_key = list(trackers), progress, step_key
        self.on_first_row = on_first_row

    @classmethod
    def for_run(
        cls,
        folder: str | Path,
        info: RunInfo,
        *,
        resume: bool,
        total: int,
        start: int = 0,
        progress: str = "auto",
        print_every: int = 1,
        shown: Sequence[tuple[str, str, str]] | None = None,
        step_key: str = "iteration",
        unit: str = "iter",
        on_first_row: Callable[[], None] | None = None,
    ) -> RunLogger:
        """The trackers ``info`` asks for and a progress display over ``total`` steps from ``start``."""
        return cls(
            folder,
            trackers=make_trackers(info, Path(folder), resume),
            progress=Progress(total, start, progress, print_every, shown=shown, unit=unit),
            step_key=step_key,
            on_first_row=on_first_row,
        )

    def metrics(self, row: dict) -> None:
        with self.metrics_path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        for tracker in self.trackers:
            tracker.log(row, row[self.step_key])
        if self.on_first_row is not None:
            self.on_first_row, first = None, self.on_first_row
            first()

    def samples(self, rows: list[dict]) -> None:
        with self.samples_path.open("a") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")
        if rows:
            for tracker in self.trackers:
                tracker.log_samples(rows, rows[0][self.step_key])

    def phase(self, name: str, step: int) -> None:
        if self.progress is not None:
            self.progress.phase(name, step)

    def step_done(self, step: int, row: dict) -> None:
        """Advance the progress display to ``step`` (a summary line in ``lines`` mode)."""
        if self.progress is not None:
            self.progress.iteration_done(step, row)

    def truncate_after(self, step: int, *, drop_final: bool = True) -> int:
        """On resume: drop rows logged after ``step`` (and ``final`` rows), keeping the originals as
        ``*.before-resume``; ``step=-1`` drops everything (a run killed before its first checkpoint).

        Samples logged at ``step`` itself stay only when a kept metrics row at ``step`` holds ``eval/`` scores
        (a periodic evaluation); those of a final evaluation at ``step`` go, as it will run again."""

        def keep(row: dict) -> bool:
            return row.get(self.step_key, 0) <= step and not (drop_final and row.get("final"))

        dropped = cut_jsonl(self.metrics_path, keep)
        kept = read_jsonl(self.metrics_path) if self.metrics_path.is_file() else []
        evaluated = any(r.get(self.step_key) == step and any(k.startswith("eval/") for k in r) for r in kept)
        last = step if evaluated else step - 1
        return dropped + cut_jsonl(self.samples_path, lambda row: row.get(self.step_key, 0) <= last)

    def finish(self, final: dict | None) -> None:
        """Close the progress display and the trackers; ``final`` is None when the run failed."""
        if self.progress is not None:
            self.progress.close()
        for tracker in self.trackers:
            tracker.finish(final, self.folder)
