"""Checkpoints: policy weights (safetensors), optimiser state, RNG and loop state, written atomically."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_model, save_model

LATEST = "latest"


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    folder: Path, iteration: int, policy: torch.nn.Module, optimizer, loop_state: dict, keep: int = 2
) -> Path:
    """Write ``folder/iter_NNNNNN/`` (policy.safetensors, optimizer.pt, state.pt) and point ``latest`` at it."""
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"iter_{iteration:06d}"
    tmp = folder / f".tmp_iter_{iteration:06d}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_model(policy, str(tmp / "policy.safetensors"))  # handles tied embeddings
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    torch.save({"iteration": iteration, "rng": rng_state(), **loop_state}, tmp / "state.pt")
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    (folder / LATEST).write_text(final.name + "\n")
    old = sorted(p for p in folder.glob("iter_*") if p.is_dir())
    for p in old[: max(0, len(old) - keep)]:
        shutil.rmtree(p)
    return final


def latest_checkpoint(folder: Path) -> Path | None:
    pointer = folder / LATEST
    if pointer.is_file():
        path = folder / pointer.read_text().strip()
        if path.is_dir():
            return path
    found = sorted(p for p in folder.glob("iter_*") if p.is_dir()) if folder.is_dir() else []
    return found[-1] if found else None


def load_checkpoint(path: Path, policy: torch.nn.Module, optimizer) -> dict:
    """Load weights and optimiser state in place; return the loop state (``iteration``, ``rng``, ...)."""
    missing, unexpected = load_model(policy, str(path / "policy.safetensors"), strict=False)
    if unexpected or missing:
        raise RuntimeError(
            f"checkpoint {path} does not fit this model: missing {sorted(missing)[:5]}, "
            f"unexpected {sorted(unexpected)[:5]}"
        )
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=False))
    return torch.load(path / "state.pt", weights_only=False)
