"""Experiment trackers: Weights & Biases and TensorBoard, next to the run folder's own JSON-lines logs.

The training loop calls three methods on every tracker made by :func:`make_trackers`:

* ``log(row, step)``: one ``metrics.jsonl`` row; every numeric key except ``iteration`` / ``final`` is logged;
* ``log_samples(rows, step)``: the evaluation samples written to ``samples.jsonl`` at that iteration;
* ``finish(final, run_dir)``: the final evaluation scores (``None`` when the run failed).

A tracker never stops training: an error inside W&B or TensorBoard is reported once as a warning and that
tracker goes quiet. W&B needs no network: without an API key (``mode: auto``) it writes an offline run under
``<run>/wandb/offline-run-*`` that ``wandb sync`` uploads later, and :func:`read_wandb_run` reads such a run
back (history, summary, config, tables) without W&B's servers.

``wandb`` and ``tensorboard`` are imported only when a tracker is made, so ``import rl4text`` stays cheap.
"""

from __future__ import annotations

import json
import os
import struct
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from rl4text.config import Config

SKIP_KEYS = ("iteration", "final")
"""metrics.jsonl keys that are bookkeeping, not metrics (the iteration is the tracker's step)."""
SAMPLES_KEY = "samples/eval"
"""History key of the evaluation samples table."""
REFERENCE_SEPARATOR = " ||| "
"""How the references of one sample are joined into one table cell."""
RUN_ID_FILE = "wandb_run_id"
"""File in the run folder holding the W&B run id, so ``--resume`` continues the same W&B run."""


class Tracker(Protocol):
    def log(self, row: dict, step: int) -> None: ...

    def log_samples(self, rows: list[dict], step: int) -> None: ...

    def finish(self, final: dict | None, run_dir: Path) -> None: ...


def _warn(msg: str) -> None:
    warnings.warn(msg, RuntimeWarning, stacklevel=3)


def numeric_items(row: dict) -> dict[str, float | int]:
    """The metrics of a ``metrics.jsonl`` row: numeric values (no bools), without ``iteration`` / ``final``."""
    return {
        k: v
        for k, v in row.items()
        if k not in SKIP_KEYS and isinstance(v, (int, float)) and not isinstance(v, bool)
    }


def sample_table_columns(rows: list[dict]) -> list[str]:
    """Columns of the samples table: prompt, completion, references, reward and each ``reward/<component>``."""
    components = sorted({k for r in rows for k in r if k.startswith("reward/")})
    return ["prompt", "completion", "references", "reward", *components]


def sample_table_row(row: dict, columns: list[str]) -> list[Any]:
    """One ``samples.jsonl`` row as a table row (references joined with :data:`REFERENCE_SEPARATOR`)."""
    out = []
    for col in columns:
        value = row.get(col)
        if col == "references" and isinstance(value, (list, tuple)):
            value = REFERENCE_SEPARATOR.join(str(v) for v in value)
        out.append(value)
    return out


def model_short_name(cfg: Config) -> str:
    """``Qwen/Qwen2.5-0.5B`` -> ``Qwen2.5-0.5B``; a randomly initialised model -> ``random-<model_type>``."""
    m = cfg.model
    if m.name_or_path:
        return Path(str(m.name_or_path).rstrip("/")).name or str(m.name_or_path)
    return f"random-{(m.random_init or {}).get('model_type', 'model')}"


# ---------------------------------------------------------------------------------------------- W&B


def new_run_id() -> str:
    """A W&B-style run id: 8 random lowercase letters and digits."""
    import secrets
    import string

    alphabet = string.ascii_lowercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(8))


def _wandb_host() -> str:
    from urllib.parse import urlparse

    url = os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai"
    return urlparse(url).hostname or "api.wandb.ai"


def wandb_api_key_available() -> bool:
    """Is a W&B API key configured (``WANDB_API_KEY``, an identity token file or a netrc entry)? No network."""
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    import netrc

    path = os.environ.get("NETRC") or str(Path.home() / ".netrc")
    try:
        auth = netrc.netrc(path).authenticators(_wandb_host())
    except (OSError, netrc.NetrcParseError):
        return False
    return bool(auth and auth[2])


def resolve_wandb_mode(cfg: Config) -> str:
    """``online``, ``offline`` or ``disabled`` for this run.

    ``wandb.enabled: false``, ``wandb.mode: disabled``, ``WANDB_MODE=disabled`` or ``WANDB_DISABLED=true``
    disable W&B. An explicit ``online`` / ``offline`` in the config is used as is; ``auto`` follows
    ``WANDB_MODE`` when it is set, otherwise it is online when an API key is configured, else offline.
    """
    w = cfg.tracking.wandb
    env_mode = os.environ.get("WANDB_MODE", "").strip().lower()
    env_mode = {"dryrun": "offline", "run": "online"}.get(env_mode, env_mode)
    env_disabled = os.environ.get("WANDB_DISABLED", "").strip().lower() in ("1", "true", "yes")
    if not w.enabled or w.mode == "disabled" or env_mode == "disabled" or env_disabled:
        return "disabled"
    if w.mode in ("online", "offline"):
        return w.mode
    if env_mode in ("online", "offline"):
        return env_mode
    return "online" if wandb_api_key_available() else "offline"


class WandbTracker:
    """Logs a run to W&B: config, per-iteration metrics, evaluation sample tables, final summary, model."""

    def __init__(self, cfg: Config, run_dir: Path, resume: bool, mode: str):
        import wandb

        self.wandb = wandb
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        w = cfg.tracking.wandb
        algorithm, task, model = cfg.algorithm.name, cfg.task.name, model_short_name(cfg)
        seed = cfg.train.seed
        tags = [algorithm, task, model, f"seed{seed}", *w.tags]
        tags = list(dict.fromkeys(t[:64] for t in tags))  # W&B: unique tags of at most 64 characters
        id_file = self.run_dir / RUN_ID_FILE
        run_id = id_file.read_text().strip() if resume and id_file.is_file() else None
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(
            project=w.project,
            entity=w.entity,
            group=w.group or task,
            tags=tags,
            name=w.name or f"{algorithm}-{task}-{model}-seed{seed}",
            config=cfg.to_dict(),
            dir=str(self.run_dir),
            id=run_id or new_run_id(),
            resume="allow",
            mode=mode,
        )
        id_file.write_text(self.run.id + "\n")
        self.mode = mode
        self.failed = False
        if mode == "offline":
            sync_dir = getattr(self.run.settings, "sync_dir", None) or str(self.run_dir / "wandb")
            print(f"W&B is offline; upload this run later with: wandb sync {sync_dir}", flush=True)

    def _guard(self, what: str, fn, *args) -> None:
        if self.failed:
            return
        try:
            fn(*args)
        except Exception as exc:  # never let W&B stop training
            self.failed = True
            _warn(f"W&B {what} failed ({type(exc).__name__}: {exc}); W&B logging stops for this run")

    def log(self, row: dict, step: int) -> None:
        self._guard("log", lambda: self.run.log(numeric_items(row), step=step))

    def log_samples(self, rows: list[dict], step: int) -> None:
        def do() -> None:
            columns = sample_table_columns(rows)
            table = self.wandb.Table(
                columns=columns, data=[sample_table_row(r, columns) for r in rows], allow_mixed_types=True
            )
            self.run.log({SAMPLES_KEY: table}, step=step)

        if rows:
            self._guard("log_samples", do)

    def finish(self, final: dict | None, run_dir: Path) -> None:
        def summary_and_model() -> None:
            if final is None:
                return
            for k, v in final.items():
                if k != "iteration":
                    self.run.summary[f"eval/{k}"] = v
            if self.cfg.tracking.wandb.log_model:
                artifact = self.wandb.Artifact(
                    f"model-{self.run.id}",
                    type="model",
                    metadata={"eval": final, "config": self.cfg.to_dict()},
                )
                model_dir, eval_file = Path(run_dir) / "model", Path(run_dir) / "eval.json"
                if model_dir.is_dir():
                    artifact.add_dir(str(model_dir), name="model")
                if eval_file.is_file():
                    artifact.add_file(str(eval_file), name="eval.json")
                self.run.log_artifact(artifact)

        self._guard("finish", summary_and_model)
        try:
            self.run.finish(exit_code=0 if final is not None else 1)
        except Exception as exc:
            _warn(f"W&B finish failed ({type(exc).__name__}: {exc})")


# ---------------------------------------------------------------------------------------------- TensorBoard


class TensorBoardTracker:
    """Scalars (and evaluation samples as a text table) in TensorBoard event files under ``<run>/tensorboard``."""

    def __init__(self, run_dir: Path):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(Path(run_dir) / "tensorboard"))
        self.failed = False

    def _guard(self, what: str, fn) -> None:
        if self.failed:
            return
        try:
            fn()
        except Exception as exc:
            self.failed = True
            _warn(f"TensorBoard {what} failed ({type(exc).__name__}: {exc}); TensorBoard logging stops")

    def log(self, row: dict, step: int) -> None:
        def do() -> None:
            for k, v in numeric_items(row).items():
                self.writer.add_scalar(k, v, global_step=step)

        self._guard("log", do)

    def log_samples(self, rows: list[dict], step: int) -> None:
        def do() -> None:
            columns = sample_table_columns(rows)

            def cell(v: Any) -> str:
                return str(v).replace("|", "\\|").replace("\n", " ")

            lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
            lines += ["| " + " | ".join(cell(v) for v in sample_table_row(r, columns)) + " |" for r in rows]
            self.writer.add_text(SAMPLES_KEY, "\n".join(lines), global_step=step)

        if rows:
            self._guard("log_samples", do)

    def finish(self, final: dict | None, run_dir: Path) -> None:
        try:
            self.writer.flush()
            self.writer.close()
        except Exception as exc:
            _warn(f"TensorBoard close failed ({type(exc).__name__}: {exc})")


# ---------------------------------------------------------------------------------------------- factory


def make_trackers(cfg: Config, run_dir: Path, resume: bool) -> list[Tracker]:
    """The trackers ``cfg.tracking`` asks for; one that cannot start is skipped with a warning."""
    trackers: list[Tracker] = []
    mode = resolve_wandb_mode(cfg)
    if mode != "disabled":
        try:
            trackers.append(WandbTracker(cfg, Path(run_dir), resume, mode))
        except Exception as exc:
            _warn(f"W&B could not start ({type(exc).__name__}: {exc}); training continues without W&B")
    if cfg.tracking.tensorboard:
        try:
            trackers.append(TensorBoardTracker(Path(run_dir)))
        except Exception as exc:
            _warn(f"TensorBoard could not start ({type(exc).__name__}: {exc}); training continues without it")
    return trackers


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


__all__ = [
    "SAMPLES_KEY",
    "TensorBoardTracker",
    "Tracker",
    "WandbTracker",
    "find_wandb_files",
    "iter_wandb_records",
    "make_trackers",
    "read_wandb_run",
    "resolve_wandb_mode",
    "wandb_api_key_available",
]
