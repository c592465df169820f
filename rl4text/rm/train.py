"""Train a reward model from human judgments: load → split by group → fit → evaluate held-out → save.

One readable recipe. A step scores every completion of ``groups_per_batch`` groups in one forward pass and
averages the groups' losses (``rl4text.rm.losses``), so each text serves all the pairs it appears in.
"""

from __future__ import annotations

import json
import random
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import yaml

from rl4text.rm.config import RMConfig
from rl4text.rm.data import Group, load_groups, split_groups
from rl4text.rm.evaluate import evaluate_agreement, flatten, regroup
from rl4text.rm.losses import group_loss
from rl4text.rm.model import build_backbone, model_inputs, normalization_stats, save_reward_model

MAX_NORMALIZATION_TEXTS = 2000


class RMRunError(RuntimeError):
    """The output folder cannot be used (it exists and would be overwritten)."""


def _prepare_folder(out: Path, overwrite: bool) -> None:
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise RMRunError(f"output folder {out} exists and is not empty; pass --overwrite to replace it")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


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


def _fit(scorer, cfg: RMConfig, train: list[Group], log) -> int:
    """AdamW over the training groups for ``epochs``; returns the number of steps."""
    import torch

    t = cfg.train
    rng = random.Random(t.seed)
    scores = [x for g in train if g.scores is not None for x in g.scores]
    target_scale = None
    if t.loss == "regression":  # standardised targets: the head starts near them whatever the rating scale
        mean = sum(scores) / len(scores)
        std = (sum((x - mean) ** 2 for x in scores) / max(len(scores) - 1, 1)) ** 0.5 or 1.0
        target_scale = (mean, std)
    model = scorer.model
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=t.learning_rate, weight_decay=t.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / (t.warmup_steps + 1)))
    step, start = 0, time.time()
    for epoch in range(t.epochs):
        order = list(train)
        rng.shuffle(order)
        for i in range(0, len(order), t.groups_per_batch):
            batch = [_trimmed(g, t.max_group_size, rng) for g in order[i : i + t.groups_per_batch]]
            prompts, completions, _ = flatten(batch)
            rewards = model(**scorer.encode(*model_inputs(cfg.model.input, prompts, completions))).logits[
                :, 0
            ]
            parts = regroup(list(range(len(completions))), batch)
            losses = [
                group_loss(rewards[idx[0] : idx[-1] + 1], g, t.loss, t.margin, target_scale)
                for g, idx in zip(batch, parts)
            ]
            loss = torch.stack(losses).mean()
            opt.zero_grad()
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            step += 1
            if step % t.log_every == 0 or step == 1:
                log(
                    {
                        "step": step,
                        "epoch": epoch,
                        "loss": loss.item(),
                        "grad_norm": float(grad_norm),
                        "lr": sched.get_last_lr()[0],
                        "elapsed_s": round(time.time() - start, 1),
                    }
                )
    return step


def _usable(groups: list[Group], loss: str) -> list[Group]:
    """Groups that carry a training signal: at least one preference (or, for regression, two ratings)."""
    if loss == "regression":
        return [g for g in groups if len(g.completions) >= 1]
    return [g for g in groups if g.preference_pairs()]


def train_rm(cfg: RMConfig, out: str | Path, *, overwrite: bool = False, quiet: bool = False) -> dict:
    """Train, evaluate on held-out groups, save the RM folder; returns the ``eval.json`` content."""
    import torch

    out = Path(out)
    _prepare_folder(out, overwrite)
    (out / "rm_config.yaml").write_text(yaml.safe_dump(asdict(cfg), sort_keys=False))
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

    with (out / "metrics.jsonl").open("w") as metrics_file:

        def log(row: dict) -> None:
            metrics_file.write(json.dumps(row) + "\n")
            metrics_file.flush()
            if not quiet:
                print(f"step {row['step']}: loss {row['loss']:.4f} ({row['elapsed_s']} s)", flush=True)

        scorer = build_backbone(cfg.model, cfg.train.device)
        steps = _fit(scorer, cfg, train, log)
    train_s = time.time() - t0

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
    result["seconds_total"] = round(time.time() - t0, 1)
    (out / "eval.json").write_text(json.dumps(result, indent=2) + "\n")
    return result
