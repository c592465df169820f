"""The runtime layer: what every recipe (``train``, ``sft``, ``rm train``, ``dpo``) needs around its own loop.

Recipes import from here; the runtime imports nothing of the domain (models, rollout, rewards, ...).

API (stable; a new recipe uses it like :mod:`rl4text.sft` does)::

    from rl4text.runtime import (Checkpointer, RunFolder, RunInfo, RunLogger, atomic_folder,
                                 pick_device, seed_everything)

    folder = RunFolder(out, cfg.to_dict(), resume=resume, overwrite=overwrite)
    folder.check()                      # RunDirError before any work: exists / nothing to resume / config changed
    seed_everything(cfg.train.seed); device = pick_device(cfg.train.device)
    ...build models, optimiser, data...
    with folder:                        # --overwrite: the old run moves aside, comes back if we fail before
        ckpt = Checkpointer(out / "checkpoints", keep=cfg.train.keep_checkpoints)
        log = RunLogger.for_run(out, RunInfo.from_config(cfg, "dpo"), resume=resume, total=N, start=start,
                                progress=cfg.tracking.progress, on_first_row=folder.started)
        try:
            if resume and (path := ckpt.latest()) is not None:
                state = ckpt.restore(path, model, optimizer)      # weights, optimiser, RNG; returns loop state
                log.truncate_after(state["iteration"])            # no duplicated rows after the checkpoint
            ...
            log.metrics({"step": s, ...}); log.step_done(s, row)  # metrics.jsonl + W&B + TensorBoard + progress
            ckpt.save(s, model, optimizer, {"sampler": ..., ...}) # refuses NaN weights (NonFiniteError)
            with atomic_folder(out / "model") as tmp: save(tmp)   # never a half-written model/
        finally:
            log.finish(final)                                     # final=None: the run failed

- :mod:`~rl4text.runtime.env`: :func:`seed_everything`, :func:`pick_device`.
- :mod:`~rl4text.runtime.folder`: :class:`RunFolder`, :func:`atomic_folder`, :func:`write_text_atomic`,
  :func:`read_jsonl`, :func:`cut_jsonl`.
- :mod:`~rl4text.runtime.logger`: :class:`RunLogger` (and :class:`RunInfo` from :mod:`rl4text.tracking`).
- :mod:`~rl4text.runtime.checkpoints`: :class:`Checkpointer` over :mod:`rl4text.checkpoint`.
- :mod:`~rl4text.runtime.finite`: NaN / inf guards that name the culprit and the iteration.
- :mod:`~rl4text.runtime.callbacks`: the iteration hook point (a callback returning ``False`` stops the run).
- :mod:`~rl4text.runtime.errors`: :class:`RunError` (printed without a traceback by the CLI),
  :class:`RunDirError`, :class:`NonFiniteError`.
"""

from __future__ import annotations

from rl4text.checkpoint import latest_checkpoint, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from rl4text.runtime.callbacks import Callback, IterationEnd, run_callbacks
from rl4text.runtime.checkpoints import Checkpointer
from rl4text.runtime.env import pick_device, seed_everything
from rl4text.runtime.errors import NonFiniteError, RunDirError, RunError
from rl4text.runtime.finite import check_finite_module, check_finite_stats, check_finite_values
from rl4text.runtime.folder import RunFolder, atomic_folder, cut_jsonl, read_jsonl, write_text_atomic
from rl4text.runtime.logger import RunLogger
from rl4text.tracking import RunInfo

__all__ = [
    "Callback",
    "Checkpointer",
    "IterationEnd",
    "NonFiniteError",
    "RunDirError",
    "RunError",
    "RunFolder",
    "RunInfo",
    "RunLogger",
    "atomic_folder",
    "check_finite_module",
    "check_finite_stats",
    "check_finite_values",
    "cut_jsonl",
    "latest_checkpoint",
    "load_checkpoint",
    "pick_device",
    "read_jsonl",
    "rng_state",
    "run_callbacks",
    "save_checkpoint",
    "seed_everything",
    "set_rng_state",
    "write_text_atomic",
]
