"""NaN / inf guards: name the culprit (reward component, loss, gradient, weights) and the iteration, never save
a non-finite model (issue 11: a NaN reward at iteration 5 used to be trained on and saved as ``latest``)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import torch

from rl4text.runtime.errors import NonFiniteError

KEPT = "the run stopped; the checkpoints on disk are all from before it (finite), and --resume continues from the last"


def check_finite_values(values: Mapping[str, Iterable[float]], *, what: str, where: str) -> None:
    """Raise :class:`NonFiniteError` naming the first key (e.g. a reward component) holding a NaN / inf value.

    ``values``: ``{name: [B] floats}``; ``what``: e.g. ``"reward component"``; ``where``: e.g. ``"iteration 5"``.
    """
    for name, row in values.items():
        for i, v in enumerate(row):
            if not math.isfinite(float(v)):
                raise NonFiniteError(
                    f"{what} {name!r} returned {v} for sample {i} at {where}; {KEPT}. "
                    "Fix the component (or the input it failed on) and resume."
                )


def check_finite_stats(stats: Mapping[str, float], keys: Iterable[str], *, where: str) -> None:
    """Raise naming the first of ``keys`` (losses, gradient norm) present in ``stats`` with a non-finite value."""
    for key in keys:
        if key in stats and not math.isfinite(float(stats[key])):
            raise NonFiniteError(
                f"{key} is {stats[key]} at {where} (the update diverged); {KEPT}. "
                "Try a lower learning rate, gradient clipping or reward normalisation."
            )


def check_finite_module(module: torch.nn.Module, *, where: str) -> None:
    """Raise naming the first parameter holding a NaN / inf weight (checked before every save)."""
    for name, p in module.named_parameters():
        if not bool(torch.isfinite(p).all()):
            raise NonFiniteError(f"weight {name} holds NaN/inf values at {where}; not saved; {KEPT}")
