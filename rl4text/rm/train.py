"""Train a reward model from human judgments: load → split by group → fit → evaluate held-out → save.

One readable recipe. A step scores every completion of ``groups_per_batch`` groups in one forward pass and
averages the groups' losses (``rl4text.rm.losses``), so each text serves all the pairs it appears in. The run
folder, logging (``metrics.jsonl``, W&B, TensorBoard, progress), checkpoints and ``--resume`` come from
:mod:`rl4text.runtime`, as for RL and SFT runs.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from rl4text.rm.config import RMConfig
from rl4text.rm.data import Group, load_groups, split_groups
from rl4text.rm.evaluate import evaluate_agreement, flatten, regroup
from rl4text.rm.losses import group_loss
from rl4text.rm.model import build_backbone, model_inputs, normalization_stats, save_reward_model
from rl4text.runtime import (
    Checkpointer,
    RunDirError,
    RunFolder,
    RunInfo,
    RunLogger,
    check_finite_stats,
    write_text_atomic,
)
from rl4text.tracking import model_short_name

MAX_NORMALIZATION_TEXTS = 2000
OCCUPIED = (
    "output folder {path} exists and is not empty; pass --overwrite to replace it or --resume to continue it"
)

RMRunError = RunDirError
"""The output folder cannot be used (kept as a name for callers of earlier versions)."""


def _subsample(groups: list[Group], limit: int | None, rng: random.Random) -> list[Group]:
    return groups if limit is None or len(groups) <= limit else rng.sample(groups, limit)


def _trimmed(group: Group, size: int | None, rng: random.Random) -> Group:
    """The group with at most ``size`` completions (a seeded sample; explicit pairs kept if both sides are)."""
    n = len(group.completions)
    if size is None or n <= size:
        return group
    keep = sorted(rng.sample(range(n), size))
    where = {old: new for new, old in enumerate(keep)}
    return Group(
        key=group.key,
        prompt=group.prompt,
        completions=[group.completions[i] for i in keep],
        scores=[group.scores[i] for i in keep] if group.scores is not None else None,
        pairs=[(where[b], where[w]) for b, w in group.pairs if b in where and w in where],
        references=group.references,
    )


def score_groups(scorer, input_mode: str, groups: list[Group], batch_size: int) -> list[list[float]]:
    """Raw RM scores of every completion, shaped like ``groups``."""
    prompts, completions, _ = flatten(groups)
    texts, pairs = model_inputs(input_mode, prompts, completions)
    return regroup(scorer.scores(texts, pairs, output="scalar", batch_size=batch_size), groups)


def _normalization(scorer, cfg: RMConfig, train: list[Group], rng: random.Random) -> dict:
    """Mean/std of raw scores over the training completions or references (capped, seeded sample)."""
    if cfg.eval.normalize_on == "references":
        items = [(g.prompt, r) for g in train for r in g.references]
        if not items:
            raise ValueError("eval.normalize_on=references, but the training groups have no references")
    else:
        items = sorted({(g.prompt, c) for g in train for c in g.completions})
    if len(items) > MAX_NORMALIZATION_TEXTS:
        items = rng.sample(items, MAX_NORMALIZATION_TEXTS)
    texts, pairs = model_inputs(cfg.model.input, [p for p, _ in items], [c for _, c in items])
    raw = scorer.scores(texts, pairs, output="scalar", batch_size=cfg.train.batch_size)
    return normalization_stats(raw, cfg.eval.normalize_on)


@dataclass
class FitState:
    """Where the optimisation is (checkpointed): step, epoch, the epoch's group order and the position in it."""

    step: int = 0
    epoch: int = 0
    order: list[int] | None = None
    """Indices of the training groups in this epoch's shuffled order (None: the epoch has not started)."""
    position: int = 0
    """Start of the next batch in ``order``."""


def _fit(
    scorer, cfg: RMConfig, train: list[Group], log: RunLogger, checkpoints: Checkpointer, resume: bool
) -> int:
    """AdamW over the training groups for ``epochs``, checkpointing every ``save_every`` steps; returns the steps."""
    import torch

    t = cfg.train
    rng = random.Random(t.seed)
    model = scorer.model
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=t.learning_rate, weight_decay=t.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / (t.warmup_steps + 1)))
    fit = _restore(checkpoints, model, opt, sched, rng, log) if resume else FitState()
    start = time.time()
    target_scale = _target_scale(train, t.loss)
    while fit.epoch < t.epochs:
        if (
            fit.order is None
        ):  # shuffle indices: the same permutation random.shuffle gives the groups themselves
            fit.order = list(range(len(train)))
            rng.shuffle(fit.order)
            fit.position = 0
        while fit.position < len(fit.order):
            idx = fit.order[fit.position : fit.position + t.groups_per_batch]
            fit.position += t.groups_per_batch
            loss, grad_norm = _step(
                scorer,
                cfg,
                [_trimmed(train[i], t.max_group_size, rng) for i in idx],
                opt,
                sched,
                target_scale,
            )
            fit.step += 1
            check_finite_stats(
                {"loss": loss, "grad_norm": grad_norm}, ["loss", "grad_norm"], where=f"step {fit.step}"
            )
            if fit.step % t.log_every == 0 or fit.step == 1:
                row = {
                    "step": fit.step,
                    "epoch": fit.epoch,
                    "loss": loss,
                    "grad_norm": grad_norm,
                    "lr": sched.get_last_lr()[0],
                    "elapsed_s": round(time.time() - start, 1),
                }
                log.metrics(row)
                log.step_done(fit.step, row)
            if t.save_every and fit.step % t.save_every == 0:
                loop_state = {
                    "fit": asdict(fit),
                    "scheduler": sched.state_dict(),
                    "batch_rng": list(rng.getstate()),
                }
                checkpoints.save(fit.step, model, opt, loop_state)
        fit.epoch, fit.order = fit.epoch + 1, None
    return fit.step


def _restore(checkpoints: Checkpointer, model, opt, sched, rng: random.Random, log: RunLogger) -> FitState:
    """Continue from the newest checkpoint (weights, optimiser, schedule, batch order, RNG); logs cut back to it."""
    latest = checkpoints.latest()
    if latest is None:  # killed before its first checkpoint: start again, without the rows already logged
        log.truncate_after(-1)
        return FitState()
    state = checkpoints.restore(latest, model, opt)
    sched.load_state_dict(state["scheduler"])
    version, internal, gauss = state["batch_rng"]
    rng.setstate((version, tuple(internal), gauss))
    fit = FitState(**state["fit"])
    log.truncate_after(fit.step)
    print(f"resumed from {latest} at step {fit.step}", flush=True)
    return fit


def _target_scale(train: list[Group], loss: str) -> tuple[float, float] | None:
    """Regression: standardised targets, so the head starts near them whatever the rating scale."""
    if loss != "regression":
        return None
    scores = [x for g in train if g.scores is not None for x in g.scores]
    mean = sum(scores) / len(scores)
    std = (sum((x - mean) ** 2 for x in scores) / max(len(scores) - 1, 1)) ** 0.5 or 1.0
    return mean, std


def _step(scorer, cfg: RMConfig, batch: list[Group], opt, sched, target_scale) -> tuple[float, float]:
    """One optimiser step on ``batch``; returns ``(loss, gradient norm before clipping)``."""
    import torch

    t = cfg.train
    prompts, completions, _ = flatten(batch)
    rewards = scorer.model(**scorer.encode(*model_inputs(cfg.model.input, prompts, completions))).logits[:, 0]
    parts = regroup(list(range(len(completions))), batch)
    losses = [
        group_loss(rewards[idx[0] : idx[-1] + 1], g, t.loss, t.margin, target_scale)
        for g, idx in zip(batch, parts)
    ]
    loss = torch.stack(losses).mean()
    opt.zero_grad()
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(scorer.model.parameters(), 1.0)
    opt.step()
    sched.step()
    return loss.item(), float(grad_norm)


def _usable(groups: list[Group], loss: str) -> list[Group]:
    """Groups that carry a training signal: at least one preference (or, for regression, two ratings)."""
    if loss == "regression":
        return [g for g in groups if len(g.completions) >= 1]
    return [g for g in groups if g.preference_pairs()]


def rm_run_info(cfg: RMConfig) -> RunInfo:
    """How an RM run appears in W&B: ``rm-<data format>-<backbone>-seed<N>``, grouped by data format."""
    model, fmt, seed = model_short_name(cfg), cfg.data.format, cfg.train.seed
    return RunInfo(
        wandb=cfg.tracking.wandb,
        config=asdict(cfg),
        default_name=f"rm-{fmt}-{model}-seed{seed}",
        default_group=f"rm-{fmt}",
        tags=["rm", fmt, model, f"seed{seed}"],
        tensorboard=cfg.tracking.tensorboard,
    )


def train_rm(
    cfg: RMConfig, out: str | Path, *, resume: bool = False, overwrite: bool = False, quiet: bool = False
) -> dict:
    """Train, evaluate on held-out groups, save the RM folder; returns the ``eval.json`` content.

    ``train.save_every`` checkpoints under ``out/checkpoints`` for ``resume``; ``eval.json`` is written last,
    so a folder holding it is a finished run (resuming it does nothing)."""
    import torch

    out = Path(out)
    folder = RunFolder(
        out,
        asdict(cfg),
        resume=resume,
        overwrite=overwrite,
        config_file="rm_config.yaml",
        occupied_message=OCCUPIED,
    )
    folder.check()
    if resume and (out / "eval.json").is_file():
        print(f"{out} is a finished reward-model run: nothing to resume", flush=True)
        return json.loads((out / "eval.json").read_text())
    random.seed(cfg.train.seed)
    torch.manual_seed(cfg.train.seed)
    t0 = time.time()
    groups = load_groups(cfg.data.format, cfg.data.path, **cfg.data.options)
    train, held = split_groups(groups, cfg.data.held_out, cfg.data.split_seed)
    rng = random.Random(cfg.data.split_seed)
    train = _usable(_subsample(train, cfg.data.max_train_groups, rng), cfg.train.loss)
    held = _subsample(held, cfg.data.max_eval_groups, rng)
    if not train:
        raise ValueError("no training group carries a preference (all completions tied?)")
    scorer = build_backbone(cfg.model, cfg.train.device)
    total = cfg.train.epochs * math.ceil(len(train) / cfg.train.groups_per_batch)
    with folder:
        log = RunLogger.for_run(
            out,
            rm_run_info(cfg),
            resume=resume,
            total=total,
            progress="none" if quiet else cfg.tracking.progress,
            print_every=1,
            shown=(("loss", "loss", ".4f"), ("grad_norm", "grad_norm", ".3f")),
            step_key="step",
            unit="step",
            on_first_row=folder.started,
        )
        result = None
        try:
            checkpoints = Checkpointer(out / "checkpoints", keep=cfg.train.keep_checkpoints)
            steps = _fit(scorer, cfg, train, log, checkpoints, resume)
            result = _evaluate_and_save(scorer, cfg, train, held, out, steps, time.time() - t0)
            result["seconds_total"] = round(time.time() - t0, 1)
            write_text_atomic(out / "eval.json", json.dumps(result, indent=2) + "\n")
            return result
        finally:
            log.finish(None if result is None else result.get("held_out", {}))


def _evaluate_and_save(scorer, cfg: RMConfig, train, held, out: Path, steps: int, train_s: float) -> dict:
    """Held-out agreement, normalisation statistics, the saved RM folder; the ``eval.json`` content."""
    from rl4text.models import disable_dropout

    disable_dropout(scorer.model)
    result: dict = {
        "data": {
            "format": cfg.data.format,
            "options": cfg.data.options,
            "train_groups": len(train),
            "train_items": sum(len(g.completions) for g in train),
            "train_pairs": sum(len(g.preference_pairs()) for g in train),
            "held_out_groups": len(held),
            "held_out_keys": sorted(g.key[:80] for g in held)[:20],  # a sample, for the record
        },
        "train": {"steps": steps, "seconds": round(train_s, 1), "loss": cfg.train.loss},
    }
    if held:
        rm_scores = score_groups(scorer, cfg.model.input, held, cfg.train.batch_size)
        result["held_out"] = evaluate_agreement(rm_scores, held, cfg.eval.metrics)
    meta = {
        "input": cfg.model.input,
        "max_length": scorer.max_length,
        "truncation_side": "right",
        "backbone": scorer.name,
        "loss": cfg.train.loss,
        "data_format": cfg.data.format,
        "normalization": _normalization(scorer, cfg, train, random.Random(cfg.train.seed)),
    }
    save_reward_model(scorer, out, meta)
    return result
