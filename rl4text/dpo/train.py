"""``rl4text dpo``: direct preference optimisation from preference pairs, top to bottom.

load pairs -> split by group -> reference log-probs (once: the starting model, frozen) -> AdamW steps on the DPO /
IPO loss -> held-out preference accuracy and reward margins -> checkpoints -> ``model/``.

The reference's summed log-probs of every pair are computed once before the first step, from the model as loaded
(for a PEFT model: with its adapters disabled), so no second model copy is held during training and a resumed run
uses the same reference (the starting model is rebuilt from the config and seed before the checkpoint loads).
The run folder (``rl4text.runtime``, as every recipe's) holds ``config.yaml``, ``metrics.jsonl`` (a row every
``log_every`` steps and at every evaluation), W&B files (offline without an API key), ``checkpoints/``,
``eval.json`` and ``model/``.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import nn

from rl4text.core.dpo import dpo_loss, wilson_interval
from rl4text.dpo.config import DPOConfig
from rl4text.dpo.data import Pair, PairBatch, collate_pairs, groups_to_pairs, score_pairs, sequence_logprobs
from rl4text.models import load_model, load_tokenizer
from rl4text.runtime import (
    Checkpointer,
    RunFolder,
    RunInfo,
    RunLogger,
    atomic_folder,
    check_finite_stats,
    pick_device,
    seed_everything,
    write_text_atomic,
)
from rl4text.text import uses_chat_template


def load_pairs(cfg: DPOConfig) -> tuple[list[Pair], list[Pair], dict]:
    """``(train, held_out, info)``: the judgments split by whole groups, as pairs."""
    from rl4text.rm.data import load_groups, split_groups

    d = cfg.data
    groups = load_groups(d.format, d.path, **d.options)
    train, held = split_groups(groups, d.held_out, d.split_seed)
    rng = random.Random(d.split_seed)
    if d.max_train_groups is not None and len(train) > d.max_train_groups:
        train = rng.sample(train, d.max_train_groups)
    if d.max_eval_groups is not None and len(held) > d.max_eval_groups:
        held = rng.sample(held, d.max_eval_groups)
    train_pairs = groups_to_pairs(train, cfg.dpo.max_pairs_per_group, rng)
    held_pairs = groups_to_pairs(held, None, rng)
    if not train_pairs:
        raise ValueError(
            f"{d.path or d.format}: no training group carries a preference (all completions tied?)"
        )
    info = {"format": d.format, "path": d.path, "train_groups": len(train), "train_pairs": len(train_pairs)}
    info.update(held_out_groups=len(held), held_out_pairs=len(held_pairs))
    return train_pairs, held_pairs, info


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """The pair order of one epoch, a function of (seed, epoch) only, so a resumed run continues it exactly."""
    return np.random.default_rng([seed, epoch]).permutation(n).tolist()


def chunks(items: list, size: int) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)]


@contextlib.contextmanager
def as_reference(model: nn.Module):
    """The model as the frozen reference: a PEFT model with its adapters disabled (the base, no copy)."""
    disable = getattr(model, "disable_adapter", None)
    with disable() if callable(disable) else contextlib.nullcontext():
        yield model


def preference_stats(
    logps: tuple[torch.Tensor, torch.Tensor], ref: tuple[torch.Tensor, torch.Tensor], cfg
) -> dict:
    """Loss, preference accuracy (95% Wilson interval over pairs) and implicit-reward means of scored pairs."""
    d = cfg.dpo
    loss, s = dpo_loss(*logps, *ref, beta=d.beta, loss_type=d.loss, label_smoothing=d.label_smoothing)
    n = len(s["accuracy"])
    low, high = wilson_interval(float(s["accuracy"].sum()), n)
    return {
        "loss": loss.item(),
        "preference_accuracy": float(s["accuracy"].mean()),
        "preference_accuracy_low": low,
        "preference_accuracy_high": high,
        "reward_margin": float(s["margins"].mean()),
        "chosen_reward": float(s["chosen_rewards"].mean()),
        "rejected_reward": float(s["rejected_rewards"].mean()),
        "chosen_logp": float(logps[0].mean()),
        "rejected_logp": float(logps[1].mean()),
        "n_pairs": n,
    }


def lr_factor(step: int, warmup: int) -> float:
    """Linear warm-up over ``warmup`` steps, then constant (step is 0-based)."""
    return (step + 1) / warmup if step < warmup else 1.0


@dataclass
class Setup:
    """What the loop works on, built once: the model, the encoded pairs and the reference's log-probs."""

    model: nn.Module
    tokenizer: object
    seq2seq: bool
    device: torch.device
    train_pairs: list[Pair]
    held_batches: list[PairBatch]
    ref_train: tuple[torch.Tensor, torch.Tensor]
    """``([N], [N])`` the reference's summed log-probs of the chosen and rejected training responses."""
    ref_held: tuple[torch.Tensor, torch.Tensor]
    info: dict
    encode: Callable[[list[Pair]], PairBatch]
    steps_per_epoch: int
    total: int
    """Optimiser steps of the run (``train.max_steps``, or ``epochs`` passes over the training pairs)."""

    def held_out(self, cfg: DPOConfig) -> dict:
        """Preference statistics of the current model on the held-out pairs (``{}`` when none are held out)."""
        if not self.held_batches:
            return {}
        return preference_stats(
            score_pairs(self.model, self.seq2seq, self.held_batches, self.device), self.ref_held, cfg
        )


def build(cfg: DPOConfig) -> Setup:
    """Pairs (bad data fails before a model loads), tokenizer, model, and the reference's log-probs of every pair."""
    t = cfg.train
    train_pairs, held_pairs, info = load_pairs(cfg)
    seed_everything(t.seed)
    device = pick_device(t.device)
    tokenizer = load_tokenizer(cfg.model)
    model, seq2seq = load_model(cfg.model, tokenizer)
    model.to(device)
    encode = partial(
        collate_pairs,
        tokenizer,
        max_prompt_length=t.max_prompt_length,
        max_response_length=t.max_response_length,
        seq2seq=seq2seq,
        use_chat_template=uses_chat_template(cfg.model.use_chat_template, tokenizer, seq2seq),
    )
    held_batches = [encode(c) for c in chunks(held_pairs, t.eval_batch_size)]
    with as_reference(model) as ref_model:
        train_batches = [encode(c) for c in chunks(train_pairs, t.eval_batch_size)]
        ref_train = score_pairs(ref_model, seq2seq, train_batches, device)
        ref_held = score_pairs(ref_model, seq2seq, held_batches, device)
    steps_per_epoch = math.ceil(len(train_pairs) / t.batch_size)
    total = t.max_steps or t.epochs * steps_per_epoch
    return Setup(
        model,
        tokenizer,
        seq2seq,
        device,
        train_pairs,
        held_batches,
        ref_train,
        ref_held,
        info,
        encode,
        steps_per_epoch,
        total,
    )


def train_step(
    c: Setup, cfg: DPOConfig, index: list[int], optimizer, scheduler, *, where: str
) -> dict[str, float]:
    """One AdamW step on the pairs ``index``; returns the step's loss and training preference statistics."""
    batch = c.encode([c.train_pairs[i] for i in index]).to(c.device)
    logp = sequence_logprobs(c.model, c.seq2seq, batch)
    half = logp.shape[0] // 2
    ref = (c.ref_train[0][index].to(c.device), c.ref_train[1][index].to(c.device))
    d = cfg.dpo
    loss, s = dpo_loss(
        logp[:half], logp[half:], *ref, beta=d.beta, loss_type=d.loss, label_smoothing=d.label_smoothing
    )
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = nn.utils.clip_grad_norm_(c.model.parameters(), cfg.train.max_grad_norm or float("inf"))
    check_finite_stats(
        {"loss": loss.item(), "grad_norm": float(grad_norm)}, ["loss", "grad_norm"], where=where
    )
    optimizer.step()
    scheduler.step()
    return {
        "loss": loss.item(),
        "train/preference_accuracy": float(s["accuracy"].mean()),
        "train/reward_margin": float(s["margins"].mean()),
        "train/chosen_reward": float(s["chosen_rewards"].mean()),
        "train/rejected_reward": float(s["rejected_rewards"].mean()),
        "grad_norm": float(grad_norm),
    }


# ---------------------------------------------------------------------------------------------- run folder

DPO_SHOWN = (
    ("loss", "loss", ".4f"),
    ("margin", "train/reward_margin", "+.3f"),
    ("held-out acc", "eval/preference_accuracy", ".3f"),
)
"""What a progress line shows."""


def run_info(cfg: DPOConfig) -> RunInfo:
    """How the trackers name the run: ``dpo-<data>-<model>-seed<N>``, grouped by the data set."""
    from rl4text.tracking import model_short_name

    data = Path(cfg.data.path).stem if cfg.data.path else cfg.data.format
    model, seed = model_short_name(cfg), cfg.train.seed
    return RunInfo(
        wandb=cfg.tracking.wandb,
        config=cfg.to_dict(),
        default_name=f"dpo-{data}-{model}-seed{seed}",
        default_group=data,
        tags=["dpo", data, model, f"seed{seed}"],
        tensorboard=cfg.tracking.tensorboard,
    )


def train_dpo(
    cfg: DPOConfig, output_dir: str | Path, *, resume: bool = False, overwrite: bool = False
) -> dict:
    """Run DPO; returns the final held-out statistics (also written to ``eval.json``).

    ``resume`` continues from the last checkpoint (``train.save_every``) and ends as the uninterrupted run would."""
    out = Path(output_dir)
    folder = RunFolder(out, cfg.to_dict(), resume=resume, overwrite=overwrite)
    folder.check()  # RunDirError before any work
    c = build(cfg)  # before the folder is touched: bad data or a bad model leaves an old run as it was
    checkpoints = Checkpointer(out / "checkpoints", keep=cfg.train.keep_checkpoints)
    with folder:
        log = RunLogger.for_run(
            out,
            run_info(cfg),
            resume=resume,
            total=c.total,
            progress=cfg.tracking.progress,
            print_every=cfg.tracking.print_every,
            shown=DPO_SHOWN,
            unit="step",
            step_key="step",
            on_first_row=folder.started,
        )
        final = None
        try:
            final = _train(cfg, c, out, resume, log, checkpoints)
            return final
        finally:
            log.finish(final)


# ---------------------------------------------------------------------------------------------- the loop


def _train(
    cfg: DPOConfig, c: Setup, out: Path, resume: bool, log: RunLogger, checkpoints: Checkpointer
) -> dict:
    from rl4text.sft import optimizer_groups, save_sft_model

    t, began, total = cfg.train, time.perf_counter(), c.total
    optimizer = torch.optim.AdamW(optimizer_groups(c.model, t.weight_decay), lr=t.learning_rate)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, t.warmup_steps))
    print(
        f"dpo: {c.info['train_pairs']} training pairs ({c.info['train_groups']} groups), {c.info['held_out_pairs']} "
        f"held-out pairs; {total} steps of {t.batch_size} pairs; {'seq2seq' if c.seq2seq else 'causal'} model",
        flush=True,
    )
    at_start = c.held_out(cfg)  # before a checkpoint loads: the starting model (= the reference)
    start, ckpt = 0, checkpoints.latest() if resume else None
    if ckpt is not None:
        state = checkpoints.restore(ckpt, c.model, optimizer)  # weights, optimiser, RNG
        start = state["iteration"]
        scheduler.load_state_dict(state["scheduler"])
        log.truncate_after(start)
        print(f"resumed from {ckpt} at step {start}", flush=True)
    elif resume:  # killed before its first checkpoint: start again, without the rows already logged
        log.truncate_after(-1)
    if log.progress is not None:
        log.progress.resume_at(start)

    def checkpoint(step: int) -> None:
        checkpoints.save(step, c.model, optimizer, {"scheduler": scheduler.state_dict()})

    if start == 0:
        log.metrics({"iteration": 0, "step": 0, **{f"eval/{k}": v for k, v in at_start.items()}})
    window: list[dict[str, float]] = []
    for step in range(start + 1, total + 1):
        epoch, position = divmod(step - 1, c.steps_per_epoch)
        index = epoch_order(len(c.train_pairs), t.seed, epoch)[
            position * t.batch_size : (position + 1) * t.batch_size
        ]
        lr = optimizer.param_groups[0]["lr"]
        window.append(train_step(c, cfg, index, optimizer, scheduler, where=f"step {step}"))
        evaluate_now = t.eval_every and step % t.eval_every == 0 and step != total
        if step % t.log_every == 0 or step == total or evaluate_now:
            row = {"iteration": step, "step": step, "epoch": step / c.steps_per_epoch, "lr": lr}
            row.update({k: sum(w[k] for w in window) / len(window) for k in window[0]})
            if evaluate_now:
                row.update({f"eval/{k}": v for k, v in c.held_out(cfg).items()})
            row["time/elapsed_s"] = time.perf_counter() - began
            log.metrics(row)
            log.step_done(step, row)
            window = []
        if t.save_every and step % t.save_every == 0 and step != total:
            checkpoint(step)

    final = c.held_out(cfg)
    log.metrics(
        {"iteration": total, "step": total, "final": True, **{f"eval/{k}": v for k, v in final.items()}}
    )
    result = {"iteration": total, "step": total, **final, "at_start": at_start, "data": c.info}
    write_text_atomic(out / "eval.json", json.dumps(result, indent=2) + "\n")
    if start < total or ckpt is None:
        checkpoint(total)
    if t.save_final_model:
        with atomic_folder(out / "model") as tmp:
            save_sft_model(c.model, c.tokenizer, tmp)
    print(f"held-out: {json.dumps(final)}", flush=True)
    return final
