"""Reading W&B offline runs back without W&B's servers (for ``rl4text compare``): history, summary, config, tables.

:func:`read_wandb_run` takes a run folder holding ``wandb/offline-run-*`` (or one such folder, or a ``.wandb``
file) and returns ``{"run", "config", "history", "summary", "tables"}``. Writing runs is
:mod:`rl4text.tracking`'s job; this module only reads.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from rl4text.tracking import RUN_ID_FILE

# ---------------------------------------------------------------------------------------------- reading runs

# The .wandb transaction log is a LevelDB-style log: a 7-byte file header (":W&B", magic, version), then
# 32 KiB blocks of records, each with a 7-byte header (crc32, length, type: FULL/FIRST/MIDDLE/LAST) and a
# chunk of a serialised `wandb_internal_pb2.Record` protobuf. wandb >= 0.19 writes it from Go (wandb-core)
# and no longer ships a Python reader, so this is a small, tolerant one.
_BLOCK_LEN = 32768
_HEADER_LEN = 7
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4
# W&B's own bookkeeping keys, left out of history and summary
_INTERNAL_KEYS = ("_wandb", "_runtime", "_timestamp")


def iter_wandb_records(path: str | Path):
    """Yield the ``wandb_internal_pb2.Record`` messages of a ``.wandb`` file, in order.

    A truncated tail (a run that was killed mid-write) ends the iteration instead of raising.
    """
    from wandb.proto import wandb_internal_pb2

    data = Path(path).read_bytes()
    if len(data) < _HEADER_LEN or data[:4] != b":W&B":
        raise ValueError(f"{path} is not a W&B transaction log (.wandb file)")
    pos, pending = _HEADER_LEN, None
    while pos + _HEADER_LEN <= len(data):
        left = _BLOCK_LEN - pos % _BLOCK_LEN
        if left < _HEADER_LEN:  # block trailer: zero padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + _HEADER_LEN])
        pos += _HEADER_LEN
        if kind == 0 and length == 0:  # zero padding at the end of a block or of a preallocated file
            pos += left - _HEADER_LEN
            continue
        if pos + length > len(data):
            break
        chunk = data[pos : pos + length]
        pos += length
        if kind == _FULL:
            payload, pending = chunk, None
        elif kind == _FIRST:
            pending = chunk
            continue
        elif kind == _MIDDLE and pending is not None:
            pending += chunk
            continue
        elif kind == _LAST and pending is not None:
            payload, pending = pending + chunk, None
        else:
            break  # corrupt: stop at what was read so far
        record = wandb_internal_pb2.Record()
        try:
            record.ParseFromString(payload)
        except Exception:
            break
        yield record


def _item_key(item) -> list[str]:
    return list(item.nested_key) if item.nested_key else [item.key]


def _set_nested(target: dict, keys: list[str], value: Any) -> None:
    for key in keys[:-1]:
        nxt = target.get(key)
        if not isinstance(nxt, dict):
            nxt = target[key] = {}
        target = nxt
    target[keys[-1]] = value


def _del_nested(target: dict, keys: list[str]) -> None:
    for key in keys[:-1]:
        target = target.get(key)
        if not isinstance(target, dict):
            return
    target.pop(keys[-1], None)


def _loads(value_json: str) -> Any:
    try:
        return json.loads(value_json)
    except ValueError:
        return value_json


def _read_table(files_dir: Path, ref: dict) -> list[dict] | None:
    path = ref.get("path")
    if not path or not (files_dir / path).is_file():
        return None
    table = json.loads((files_dir / path).read_text())
    columns = table.get("columns", [])
    return [dict(zip(columns, row)) for row in table.get("data", [])]


def _read_segment(wandb_file: Path) -> dict:
    """One ``.wandb`` file: run info, config, history (with tables resolved) and summary."""
    files_dir = wandb_file.parent / "files"
    config: dict = {}
    summary: dict = {}
    history: list[dict] = []
    tables: dict[str, list[dict]] = {}
    info: dict = {"exit_code": None}
    artifacts: list[dict] = []
    for record in iter_wandb_records(wandb_file):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            r = record.run
            info.update(
                id=r.run_id,
                project=r.project,
                entity=r.entity,
                name=r.display_name,
                group=r.run_group,
                tags=list(r.tags),
            )
            for item in r.config.update:
                _set_nested(config, _item_key(item), _loads(item.value_json))
        elif kind == "config":
            for item in record.config.update:
                _set_nested(config, _item_key(item), _loads(item.value_json))
            for item in record.config.remove:
                _del_nested(config, _item_key(item))
        elif kind == "history":
            row: dict = {}
            for item in record.history.item:
                _set_nested(row, _item_key(item), _loads(item.value_json))
            if "_step" not in row and record.history.HasField("step"):
                row["_step"] = record.history.step.num
            for key in _INTERNAL_KEYS:
                row.pop(key, None)
            for key, value in row.items():
                if isinstance(value, dict) and str(value.get("_type", "")).startswith("table"):
                    rows = _read_table(files_dir, value)
                    if rows is not None:
                        tables.setdefault(key, []).extend({**r, "_step": row.get("_step")} for r in rows)
            history.append(row)
        elif kind == "summary":
            for item in record.summary.update:
                _set_nested(summary, _item_key(item), _loads(item.value_json))
            for item in record.summary.remove:
                _del_nested(summary, _item_key(item))
        elif kind == "artifact":
            a = record.artifact
            files = [c.path for c in a.manifest.contents]
            artifacts.append({"name": a.name, "type": a.type, "files": files})
        elif kind == "exit":
            info["exit_code"] = record.exit.exit_code
    for key in _INTERNAL_KEYS:
        config.pop(key, None)
        summary.pop(key, None)
    info["artifacts"] = artifacts
    return {"run": info, "config": config, "history": history, "summary": summary, "tables": tables}


def find_wandb_files(path: str | Path) -> list[Path]:
    """The ``.wandb`` files of one W&B run under ``path``, oldest first.

    ``path`` may be a ``.wandb`` file, a ``offline-run-*`` / ``run-*`` folder, a ``wandb/`` folder or a run
    folder containing ``wandb/``. A resumed run has one folder per session (same run id); all are returned.
    When a folder holds several runs, the one named in ``<run>/wandb_run_id`` is chosen, else the newest.
    """
    path = Path(path)
    if path.is_file():
        return [path]
    if list(path.glob("*.wandb")):
        return sorted(path.glob("*.wandb"))
    root = path / "wandb" if (path / "wandb").is_dir() else path
    files = sorted(root.glob("*run-*/run-*.wandb"), key=lambda p: (p.parent.name.split("-", 1)[-1], p.name))
    if not files:
        raise FileNotFoundError(f"no W&B run (.wandb transaction log) under {path}")

    def run_id(p: Path) -> str:
        return p.stem[len("run-") :]

    wanted = None
    for id_file in (path / RUN_ID_FILE, root.parent / RUN_ID_FILE):
        if id_file.is_file():
            wanted = id_file.read_text().strip()
            break
    if wanted not in {run_id(f) for f in files}:
        wanted = run_id(files[-1])
    return [f for f in files if run_id(f) == wanted]


def read_wandb_run(path: str | Path) -> dict:
    """Read a W&B run from its local files (an offline run, or the local copy of an online one); no network.

    ``path``: see :func:`find_wandb_files`. Returns::

        {
            "config": {...},          # the run config (rl4text: Config.to_dict()), W&B's "_wandb" key removed
            "history": [{"_step": 3, "rollout/reward_mean": 0.41, ...}, ...],  # one row per step, in order
            "summary": {"eval/reward": 0.8, "_step": 30, ...},
            "tables": {"samples/eval": [{"_step": 0, "prompt": ..., "completion": ..., ...}, ...]},
            "run": {"id", "project", "entity", "name", "group", "tags", "exit_code",
                    "artifacts": [{"name", "type", "files"}, ...]},  # logged artifacts (manifest paths)
        }

    History rows hold ``_step`` and the logged keys (W&B's ``_runtime`` / ``_timestamp`` are dropped); a logged
    table appears in its row as W&B's reference dict and its rows, each with the ``_step`` it was logged at,
    under ``tables[key]`` (read from the run's ``files/media/table/...`` JSON). A resumed run's sessions are
    merged: a later session replaces the earlier rows from its first step on (training resumed from a
    checkpoint repeats those iterations). NaN / infinities come back as floats.
    """
    merged: dict = {"config": {}, "history": [], "summary": {}, "tables": {}, "run": {}}
    for wandb_file in find_wandb_files(path):
        seg = _read_segment(wandb_file)
        steps = [r["_step"] for r in seg["history"] if isinstance(r.get("_step"), (int, float))]
        if steps:
            first = min(steps)
            merged["history"] = [r for r in merged["history"] if (r.get("_step") or 0) < first]
            merged["tables"] = {
                k: [r for r in rows if (r.get("_step") or 0) < first] for k, rows in merged["tables"].items()
            }
        merged["history"] += seg["history"]
        for key, rows in seg["tables"].items():
            merged["tables"].setdefault(key, []).extend(rows)
        merged["config"].update(seg["config"])
        merged["summary"].update(seg["summary"])
        previous_artifacts = merged["run"].get("artifacts", [])
        merged["run"].update({k: v for k, v in seg["run"].items() if v not in (None, "", [])})
        merged["run"]["exit_code"] = seg["run"]["exit_code"]
        merged["run"]["artifacts"] = previous_artifacts + seg["run"]["artifacts"]
    for row in merged["history"]:
        for k, v in row.items():
            if isinstance(v, str) and v in ("NaN", "Infinity", "-Infinity"):
                row[k] = float(v.replace("Infinity", "inf"))
    merged["tables"] = {k: v for k, v in merged["tables"].items() if v}
    return merged


__all__ = ["find_wandb_files", "iter_wandb_records", "read_wandb_run"]
