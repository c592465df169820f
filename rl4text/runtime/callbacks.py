"""The iteration hook point: a list of callbacks the loop calls after each iteration (stable-baselines3 style).

A callback is ``callback(event) -> bool | None``; returning ``False`` stops the run after that iteration (it
then finishes as usual: final evaluation, checkpoint, model). Features that act between iterations (early
stopping, multi-process reduction of statistics, NLPO's mask refresh) plug in here instead of new ``if``
branches in the loop.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class IterationEnd:
    """What a callback sees at the end of an iteration."""

    iteration: int
    """The iteration just done (1-based)."""
    total: int
    """The run's last iteration."""
    row: dict
    """The ``metrics.jsonl`` row just logged (a callback may read it; changing it changes nothing logged)."""
    state: Any = None
    """The recipe's loop state (e.g. :class:`rl4text.train.Loop`), for callbacks that need the models."""
    extra: dict = field(default_factory=dict)


Callback = Callable[[IterationEnd], "bool | None"]


def run_callbacks(callbacks: Sequence[Callback], event: IterationEnd) -> bool:
    """Call every callback; ``True`` when the run should go on (no callback returned ``False``)."""
    go_on = True
    for callback in callbacks:
        if callback(event) is False:
            go_on = False
    return go_on
