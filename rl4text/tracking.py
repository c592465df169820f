"""Experiment trackers: Weights & Biases and TensorBoard, next to the run folder's own JSON-lines logs.

The training loop calls three methods on every tracker made by :func:`make_trackers`:

* ``log(row, step)``: one ``metrics.jsonl`` row; every numeric key except ``iteration`` / ``final`` is logged;
* ``log_samples(rows, step)``: the evaluation samples written to ``samples.jsonl`` at that iteration;
* ``finish(final, run_dir)``: the final evaluation scores (``None`` when the run failed).

A tracker never stops training: an error inside W&B or TensorBoard is reported once as a warning and that
tracker goes quiet. W&B needs no network: without an API key (``mode: auto``) it writes an offline run under
``<run>/wandb/offline-run-*`` that ``wandb sync`` uploads later, and :func:`rl4text.wandb_offline.read_wandb_run`
reads such a run back (history, summary, config, tables) without W&B's servers.

Every recipe (``train``, ``sft``, ``rm train``) describes its run with a :class:`RunInfo` (W&B settings, name,
group, tags, the resolved config); :meth:`RunInfo.from_config` builds the RL one from a :class:`Config`.

``wandb`` and ``tensorboard`` are imported only when a tracker is made, so ``import rl4text`` stays cheap.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from rl4text.config import Config, WandbConfig

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


def model_short_name(cfg) -> str:
    """``Qwen/Qwen2.5-0.5B`` -> ``Qwen2.5-0.5B``; a randomly initialised model -> ``random-<model_type>``.

    ``cfg``: anything with a ``model`` section holding ``name_or_path`` and ``random_init`` (RL, SFT, RM configs)."""
    m = cfg.model
    if m.name_or_path:
        return Path(str(m.name_or_path).rstrip("/")).name or str(m.name_or_path)
    return f"random-{(m.random_init or {}).get('model_type', 'model')}"


@dataclass
class RunInfo:
    """What the trackers record about a run, whatever recipe made it."""

    wandb: WandbConfig
    """The W&B settings (``tracking.wandb`` of the run's config)."""
    config: dict
    """The resolved config, as saved in the run folder."""
    default_name: str
    """Run name unless ``wandb.name`` is set, e.g. ``ppo-toy_letters-random-llama-seed0``."""
    default_group: str
    """Run group unless ``wandb.group`` is set (the task, or the data set)."""
    tags: list[str] = field(default_factory=list)
    """Always-added tags (algorithm or recipe, task, model, seed); ``wandb.tags`` are appended."""
    tensorboard: bool = False
    """Also write TensorBoard event files."""

    @classmethod
    def from_config(cls, cfg: Config, recipe: str | None = None) -> RunInfo:
        """An RL (``recipe=None``: the algorithm's name) or SFT (``recipe="sft"``) run of ``cfg``."""
        kind, task, model = recipe or cfg.algorithm.name, cfg.task.name, model_short_name(cfg)
        seed = cfg.train.seed
        return cls(
            wandb=cfg.tracking.wandb,
            config=cfg.to_dict(),
            default_name=f"{kind}-{task}-{model}-seed{seed}",
            default_group=task,
            tags=[kind, task, model, f"seed{seed}"],
            tensorboard=cfg.tracking.tensorboard,
        )


def as_run_info(source) -> RunInfo:
    return source if isinstance(source, RunInfo) else RunInfo.from_config(source)


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


def resolve_wandb_mode(cfg) -> str:
    """``online``, ``offline`` or ``disabled`` for this run.

    ``wandb.enabled: false``, ``wandb.mode: disabled``, ``WANDB_MODE=disabled`` or ``WANDB_DISABLED=true``
    disable W&B. An explicit ``online`` / ``offline`` in the config is used as is; ``auto`` follows
    ``WANDB_MODE`` when it is set, otherwise it is online when an API key is configured, else offline.
    """
    w = cfg.wandb if isinstance(cfg, RunInfo) else cfg.tracking.wandb
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

    def __init__(self, cfg: Config | RunInfo, run_dir: Path, resume: bool, mode: str):
        import wandb

        self.wandb = wandb
        self.info = info = as_run_info(cfg)
        self.run_dir = Path(run_dir)
        w = info.wandb
        tags = [*info.tags, *w.tags]
        tags = list(dict.fromkeys(t[:64] for t in tags))  # W&B: unique tags of at most 64 characters
        id_file = self.run_dir / RUN_ID_FILE
        run_id = id_file.read_text().strip() if resume and id_file.is_file() else None
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(
            project=w.project,
            entity=w.entity,
            group=w.group or info.default_group,
            tags=tags,
            name=w.name or info.default_name,
            config=info.config,
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
            if self.info.wandb.log_model:
                artifact = self.wandb.Artifact(
                    f"model-{self.run.id}",
                    type="model",
                    metadata={"eval": final, "config": self.info.config},
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
        if self.mode == "offline":
            self._wait_for_offline_log()

    def _wait_for_offline_log(self, timeout: float = 30.0) -> None:
        """wandb 0.31's ``finish`` returns before wandb-core has written the offline ``.wandb`` log (it holds
        only its 7-byte header for up to a second): wait until it has content and stops growing, so that the
        run folder is complete when the recipe returns (``rl4text compare`` may read it right away)."""
        import time

        sync_dir = Path(getattr(self.run.settings, "sync_dir", None) or "")
        files = sorted(sync_dir.glob("*.wandb")) if sync_dir.is_dir() else []
        if not files:
            return
        deadline, last = time.monotonic() + timeout, -1
        while time.monotonic() < deadline:
            size = files[0].stat().st_size
            if size > 7 and size == last:
                return
            last = size
            time.sleep(0.2)


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


def make_trackers(cfg: Config | RunInfo, run_dir: Path, resume: bool) -> list[Tracker]:
    """The trackers ``cfg.tracking`` (or a :class:`RunInfo`) asks for; one that cannot start is skipped with a warning."""
    trackers: list[Tracker] = []
    info = as_run_info(cfg)
    mode = resolve_wandb_mode(info)
    if mode != "disabled":
        try:
            trackers.append(WandbTracker(info, Path(run_dir), resume, mode))
        except Exception as exc:
            _warn(f"W&B could not start ({type(exc).__name__}: {exc}); training continues without W&B")
    if info.tensorboard:
        try:
            trackers.append(TensorBoardTracker(Path(run_dir)))
        except Exception as exc:
            _warn(f"TensorBoard could not start ({type(exc).__name__}: {exc}); training continues without it")
    return trackers


__all__ = [
    "SAMPLES_KEY",
    "RunInfo",
    "TensorBoardTracker",
    "Tracker",
    "WandbTracker",
    "make_trackers",
    "resolve_wandb_mode",
    "wandb_api_key_available",
]
