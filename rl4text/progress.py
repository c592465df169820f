"""Progress over training iterations: a bar with ETA and the current phase on a terminal, plain summary lines
in non-interactive logs (no bar redraws filling CI logs)."""

from __future__ import annotations

import sys
import time


def format_seconds(seconds: float) -> str:
    """``3725 -> '1h02m05s'``, ``65 -> '1m05s'``, ``7.2 -> '7s'``."""
    s = round(seconds)
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s" if m else f"{s}s"


RL_SHOWN = (
    ("reward", "rollout/reward_mean", "+.4f"),
    ("kl", "kl/mean", "+.4f"),
    ("len", "rollout/response_length", ".1f"),
    ("approx_kl", "policy/approx_kl", ".4f"),
)
"""``(label, metrics key, format)`` of the values a summary shows (RL runs; SFT and RM runs pass their own)."""


class Progress:
    """``mode``: ``bar`` (tqdm), ``lines`` (one summary line every ``print_every`` iterations), ``none``, or
    ``auto`` (bar when stderr is a terminal, lines otherwise). ``shown``: the row values in the summary."""

    def __init__(
        self,
        total: int,
        start: int,
        mode: str = "auto",
        print_every: int = 1,
        *,
        shown=None,
        unit: str = "iter",
    ):
        if mode == "auto":
            mode = "bar" if sys.stderr.isatty() else "lines"
        self.mode, self.total, self.start, self.print_every = mode, total, start, print_every
        self.shown, self.unit = tuple(shown or RL_SHOWN), unit
        self.began = time.perf_counter()
        self.bar = None
        if mode == "bar":
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=start, unit="it", dynamic_ncols=True, desc="rl4text")

    def resume_at(self, start: int) -> None:
        """The run continues from ``start`` (known once a checkpoint is loaded): ETA and bar count from there."""
        self.start, self.began = start, time.perf_counter()
        if self.bar is not None:
            self.bar.n = start
            self.bar.refresh()

    def phase(self, name: str, iteration: int) -> None:
        """Show what the loop is doing now (rollout / update / eval / save)."""
        if self.bar is not None:
            self.bar.set_description(f"{self.unit} {iteration}/{self.total} {name}")

    def eta(self, iteration: int) -> float:
        done = iteration - self.start
        per = (time.perf_counter() - self.began) / max(done, 1)
        return per * (self.total - iteration)

    def iteration_done(self, iteration: int, row: dict) -> None:
        summary = {name: format(row[key], fmt) for name, key, fmt in self.shown if row.get(key) is not None}
        if self.bar is not None:
            self.bar.set_postfix(summary, refresh=False)
            self.bar.update(max(0, iteration - self.bar.n))
        elif self.mode == "lines" and self.print_every and iteration % self.print_every == 0:
            parts = "  ".join(f"{k} {v}" for k, v in summary.items())
            took = f"{row['time/iteration_s']:.2f}s  " if "time/iteration_s" in row else ""
            print(
                f"{self.unit} {iteration:4d}/{self.total}  {parts}  {took}eta {format_seconds(self.eta(iteration))}",
                flush=True,
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
