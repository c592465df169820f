"""Checkpoints of any recipe: the model's weights, the optimiser, RNG and the loop's own state.

A thin layer over :mod:`rl4text.checkpoint` (the file format) that refuses to save non-finite weights and
restores the RNG state on load. ``loop_state`` must be plain data (numbers, strings, lists, dicts; tensors for
weights such as NLPO's mask policy), so that checkpoints need no pickle.
"""

from __future__ import annotations

from pathlib import Path

import torch

from rl4text.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint, set_rng_state
from rl4text.runtime.finite import check_finite_module


class Checkpointer:
    """``folder/iter_NNNNNN/`` checkpoints, the ``keep`` most recent kept."""

    def __init__(self, folder: str | Path, keep: int = 2):
        self.folder, self.keep = Path(folder), keep

    def save(self, iteration: int, model: torch.nn.Module, optimizer, loop_state: dict) -> Path:
        """Save (after checking every weight is finite: a NaN model is never written)."""
        check_finite_module(model, where=f"iteration {iteration}")
        return save_checkpoint(self.folder, iteration, model, optimizer, loop_state, keep=self.keep)

    def latest(self) -> Path | None:
        return latest_checkpoint(self.folder)

    def restore(self, path: Path, model: torch.nn.Module, optimizer) -> dict:
        """Load weights and optimiser in place, set the RNG state; return the loop state (``iteration``, ...)."""
        state = load_checkpoint(path, model, optimizer)
        set_rng_state(state["rng"])
        return state

    def latest_iteration(self) -> int | None:
        """The iteration of the newest checkpoint, or None when there is none (read from its folder name)."""
        path = self.latest()
        return None if path is None else int(path.name.rsplit("_", 1)[-1])
