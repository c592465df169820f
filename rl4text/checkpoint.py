"""Checkpoints: policy weights, optimiser state, RNG and loop state, written atomically, read without unpickling.

A checkpoint is a folder ``iter_NNNNNN/`` holding only safetensors and JSON:

- ``policy.safetensors``: the policy's weights (value head included); when some parameters are frozen (LoRA),
  only the trainable ones (``manifest.json`` says ``"weights": "trainable"``) -- the frozen base is the model
  the run started from;
- ``optimizer.safetensors`` + ``optimizer.json``: ``optimizer.state_dict()``, its tensors in the safetensors file
  and everything else (param groups, learning rates, step counts that are not tensors) in the JSON file
  (absent from a final checkpoint saved without its optimiser: ``"optimizer": false`` in the manifest);
- ``state.safetensors`` + ``state.json``: the loop state (``iteration``, ``rng`` of Python/NumPy/PyTorch, the
  prompt sampler, reward normaliser, KL controller, algorithm state such as NLPO's mask model) the same way;
- ``manifest.json``, written last: the size and SHA-256 of every file, so a truncated or altered file is found.

Loading never unpickles (``torch.load``/``pickle`` run arbitrary code from a file someone sent you): the JSON
encoding below restores tuples, dicts with non-string keys, NumPy arrays and arbitrary-size integers exactly, so
RNG states round-trip bit for bit and ``--resume`` continues the same trajectory.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, load_model, save_file, save_model

LATEST = "latest"
MANIFEST = "manifest.json"
FORMAT = "rl4text-checkpoint/2"
PARTS = ("optimizer", "state")  # each a pair PART.safetensors + PART.json


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read; the message names the folder and the file."""


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


# ------------------------------------------------------------------------------- tensors + JSON, no pickle


def encode(obj: Any, tensors: dict[str, torch.Tensor], path: str = "") -> Any:
    """``obj`` as plain JSON; tensors go into ``tensors`` (by their path) and are referenced by name.

    JSON has only string-keyed objects, lists, strings, numbers, booleans and null, so the rest is tagged:
    ``{"__tensor__": name}``, ``{"__ndarray__": [...], "dtype": ...}``, ``{"__tuple__": [...]}`` and
    ``{"__dict__": [[key, value], ...]}`` for a dict with a key that is not a string.
    """
    if isinstance(obj, torch.Tensor):
        name, n = path or "tensor", 1
        while name in tensors:  # a dict key with a dot could spell another entry's path
            name, n = f"{path or 'tensor'}#{n}", n + 1
        tensors[name] = obj.detach().to("cpu").contiguous()
        return {"__tensor__": name}
    if isinstance(obj, np.ndarray):
        return {"__ndarray__": obj.tolist(), "dtype": obj.dtype.str, "shape": list(obj.shape)}
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, tuple):
        return {"__tuple__": [encode(v, tensors, f"{path}.{i}") for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [encode(v, tensors, f"{path}.{i}") for i, v in enumerate(obj)]
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return {k: encode(v, tensors, f"{path}.{k}" if path else k) for k, v in obj.items()}
        return {
            "__dict__": [
                [encode(k, tensors), encode(v, tensors, f"{path}.{k}" if path else str(k))]
                for k, v in obj.items()
            ]
        }
    raise TypeError(
        f"cannot store {type(obj).__name__} at {path or 'the top level'!r} in a checkpoint: state must be "
        "tensors, NumPy arrays, numbers, strings, None, lists, tuples and dicts"
    )


def decode(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """The inverse of :func:`encode`."""
    if isinstance(obj, list):
        return [decode(v, tensors) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "__tensor__" in obj:
        return tensors[obj["__tensor__"]]
    if "__ndarray__" in obj:
        return np.array(obj["__ndarray__"], dtype=np.dtype(obj["dtype"])).reshape(obj["shape"])
    if "__tuple__" in obj:
        return tuple(decode(v, tensors) for v in obj["__tuple__"])
    if "__dict__" in obj:
        return {_hashable(decode(k, tensors)): decode(v, tensors) for k, v in obj["__dict__"]}
    return {k: decode(v, tensors) for k, v in obj.items()}


def _hashable(key: Any) -> Any:
    return tuple(_hashable(k) for k in key) if isinstance(key, (list, tuple)) else key


def _write_part(folder: Path, part: str, obj: Any) -> None:
    tensors: dict[str, torch.Tensor] = {}
    tree = encode(obj, tensors)
    # safetensors refuses tensors that share memory (tied weights): store each storage once
    seen: dict[tuple, str] = {}
    unique: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    for name, t in tensors.items():
        key = (t.data_ptr(), t.dtype, tuple(t.shape), t.stride()) if t.numel() else (name,)
        if key in seen:
            aliases[name] = seen[key]
        else:
            seen[key], unique[name] = name, t
    save_file(unique, str(folder / f"{part}.safetensors"), metadata={"format": FORMAT})
    text = json.dumps({"format": FORMAT, "aliases": aliases, "tree": tree}, allow_nan=True)
    (folder / f"{part}.json").write_text(text + "\n")


def _read_part(folder: Path, part: str) -> Any:
    tensors = load_file(str(folder / f"{part}.safetensors"))
    doc = json.loads((folder / f"{part}.json").read_text())
    for alias, name in doc.get("aliases", {}).items():
        tensors[alias] = tensors[name]
    return decode(doc["tree"], tensors)


# ----------------------------------------------------------------------------------------- save and load


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync_write(path: Path, text: str) -> None:
    with path.open("w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def save_checkpoint(
    folder: Path, iteration: int, policy: torch.nn.Module, optimizer, loop_state: dict, keep: int = 2
) -> Path:
    """Write ``folder/iter_NNNNNN/`` and point ``latest`` at it; keep the ``keep`` newest checkpoints.

    Written into a temporary folder that is renamed into place once complete, and ``latest`` is replaced
    atomically, so a process killed at any moment leaves the previous checkpoint intact.
    """
    if keep < 1:
        raise ValueError(f"keep must be >= 1 (the checkpoint just written), got {keep}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"iter_{iteration:06d}"
    tmp = folder / f".tmp_iter_{iteration:06d}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    trainable = _trainable_only(policy)
    if trainable is None:
        save_model(policy, str(tmp / "policy.safetensors"))  # handles tied embeddings
    else:
        save_file(trainable, str(tmp / "policy.safetensors"), metadata={"format": FORMAT})
    if optimizer is not None:
        _write_part(tmp, "optimizer", optimizer.state_dict())
    _write_part(tmp, "state", {"iteration": iteration, "rng": rng_state(), **loop_state})
    files = {p.name: {"bytes": p.stat().st_size, "sha256": _sha256(p)} for p in sorted(tmp.iterdir())}
    manifest = {"format": FORMAT, "iteration": iteration, "files": files}
    manifest.update(weights="all" if trainable is None else "trainable", optimizer=optimizer is not None)
    _fsync_write(tmp / MANIFEST, json.dumps(manifest) + "\n")
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    pointer_tmp = folder / f".{LATEST}.tmp"
    _fsync_write(pointer_tmp, final.name + "\n")
    os.replace(pointer_tmp, folder / LATEST)
    old = sorted(p for p in folder.glob("iter_*") if p.is_dir())
    for p in old[: max(0, len(old) - keep)]:
        shutil.rmtree(p)
    return final


def _trainable_only(policy: torch.nn.Module) -> dict[str, torch.Tensor] | None:
    """The trainable parameters by name when some are frozen (LoRA), else None (save everything)."""
    params = list(policy.named_parameters())
    if all(p.requires_grad for _, p in params):
        return None
    return {n: p.detach().contiguous() for n, p in params if p.requires_grad}


def check_checkpoint(path: Path) -> None:
    """Raise :class:`CheckpointError` naming the file when ``path`` is not a complete, intact checkpoint."""
    path = Path(path)
    if (path / "state.pt").is_file() or (path / "optimizer.pt").is_file():
        raise CheckpointError(
            f"{path} is a checkpoint of an older rl4text (optimizer.pt/state.pt, pickle files); rl4text no longer "
            "loads pickles because unpickling a file runs code from it. Start the run again, or resume it with the "
            "rl4text version that wrote it"
        )
    manifest = path / MANIFEST
    try:
        doc = json.loads(manifest.read_text())
        files = doc["files"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(
            f"{manifest}: missing or unreadable ({exc}); the checkpoint is incomplete"
        ) from None
    parts = PARTS if doc.get("optimizer", True) else ("state",)
    needed = {"policy.safetensors"} | {f"{p}.{ext}" for p in parts for ext in ("safetensors", "json")}
    for name in sorted(needed | set(files)):
        file = path / name
        if name not in files:
            raise CheckpointError(f"{file}: not listed in {MANIFEST}; the checkpoint is incomplete")
        if not file.is_file():
            raise CheckpointError(f"{file}: missing")
        size = file.stat().st_size
        if size != files[name]["bytes"]:
            raise CheckpointError(
                f"{file}: {size} bytes, but {files[name]['bytes']} were written (truncated or altered)"
            )
        if _sha256(file) != files[name]["sha256"]:
            raise CheckpointError(f"{file}: contents differ from what was written (SHA-256 mismatch)")


def latest_checkpoint(folder: Path) -> Path | None:
    """The newest intact checkpoint in ``folder`` (None when there is none).

    ``latest`` names the newest; when it is empty or names a broken checkpoint, the previous intact one is
    used instead, with a warning that names the broken file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return None
    found = sorted((p for p in folder.glob("iter_*") if p.is_dir()), reverse=True)
    pointer = folder / LATEST
    if pointer.is_file():
        name = pointer.read_text().strip()
        target = folder / name if name else None
        if target is None or not target.is_dir():
            what = "is empty" if not name else f"names {name!r}, which does not exist"
            if found:
                warnings.warn(f"{pointer} {what}; looking for the newest intact checkpoint", stacklevel=2)
        else:
            found = [target] + [p for p in found if p != target]
    for candidate in found:
        try:
            check_checkpoint(candidate)
        except CheckpointError as exc:
            warnings.warn(f"skipping a broken checkpoint: {exc}", stacklevel=2)
            continue
        return candidate
    return None


def load_checkpoint(path: Path, policy: torch.nn.Module, optimizer) -> dict:
    """Load weights and optimiser state in place; return the loop state (``iteration``, ``rng``, ...).

    Reads only safetensors and JSON (never a pickle); a broken file raises :class:`CheckpointError` naming it.
    """
    path = Path(path)
    check_checkpoint(path)
    manifest = json.loads((path / MANIFEST).read_text())
    try:
        if manifest.get("weights", "all") == "trainable":
            tensors = load_file(str(path / "policy.safetensors"))
            names = {n for n, p in policy.named_parameters() if p.requires_grad}
            missing, unexpected = sorted(names - set(tensors)), sorted(set(tensors) - names)
            if not missing and not unexpected:
                policy.load_state_dict(tensors, strict=False)
        else:
            missing, unexpected = load_model(policy, str(path / "policy.safetensors"), strict=False)
        if unexpected or missing:
            raise CheckpointError(
                f"checkpoint {path} does not fit this model: missing {sorted(missing)[:5]}, "
                f"unexpected {sorted(unexpected)[:5]} (a LoRA checkpoint needs the same model.lora settings)"
            )
        if manifest.get("optimizer", True):
            optimizer.load_state_dict(_read_part(path, "optimizer"))
        else:
            warnings.warn(
                f"{path} was saved without optimiser state (train.save_final_optimizer=false): the optimiser "
                "starts afresh, so the continued run is not the one an uninterrupted run would have made",
                stacklevel=2,
            )
        return _read_part(path, "state")
    except (SafetensorError, ValueError, KeyError) as exc:
        raise CheckpointError(f"checkpoint {path} cannot be loaded: {exc}") from exc
