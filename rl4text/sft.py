"""Supervised warm start (``rl4text sft``): teacher forcing on a task's references, before RL.

The prompt side follows the RL conventions exactly (:func:`rl4text.rollout.encode_samples`: the same
``format_prompt`` / chat template, left padding and left truncation for causal models, right padding and
special tokens for encoders), and the target side is what a rollout generates: the reference tokenised on its
own (no special tokens) followed by EOS. Logits come from the same scoring function RL uses
(:func:`rl4text.policies.actor_critic.sequence_logits`), so "logits[:, :-1] score tokens[:, 1:]" and the
seq2seq decoder inputs (``decoder_start`` + target[:-1]) are shared with training. The loss is the token-mean
cross-entropy over target tokens; prompt tokens and padding carry the label ``-100`` and are ignored.

The run folder holds ``config.yaml``, ``metrics.jsonl``, ``samples.jsonl``, ``eval.json`` and ``model/``, a
Hugging Face folder (model + tokenizer) usable as ``model.name_or_path`` of ``rl4text train``; with
``sft.save_every`` also ``checkpoints/`` for ``--resume``. With ``model.lora`` only the adapters train (and go
into checkpoints), and ``model/`` is the merged model, as ``rl4text train`` saves it. The run folder, logging (W&B,
TensorBoard, progress), checkpoints and seeding come from :mod:`rl4text.runtime`, as for RL runs.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rl4text.config import Config, ConfigError, TokenizerTrainingConfig, save_config
from rl4text.evaluate import Decoding, evaluate, logged_rows
from rl4text.metrics import build_metrics
from rl4text.models import disable_dropout, load_model, load_tokenizer, set_dropout
from rl4text.policies.actor_critic import sequence_logits
from rl4text.registry import TASKS
from rl4text.rewards import build_reward
from rl4text.rollout import encode_samples
from rl4text.runtime import (
    Checkpointer,
    RunFolder,
    RunInfo,
    RunLogger,
    atomic_folder,
    check_finite_module,
    check_finite_stats,
    pick_device,
    seed_everything,
    write_text_atomic,
)
from rl4text.text import uses_chat_template

IGNORE_INDEX = -100
# trained tokenizers: T5-like ids (pad 0, EOS 1, unk 2) plus a BOS
SPECIAL_TOKENS = {"pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>", "bos_token": "<s>"}


# ---------------------------------------------------------------------------------------------- tokenizer


def train_tokenizer(texts: list[str], cfg: TokenizerTrainingConfig, seq2seq: bool):
    """A fast tokenizer trained on ``texts`` with the ``tokenizers`` library.

    Special tokens ``<pad>``=0, ``</s>``=1 (EOS), ``<unk>``=2, ``<s>``=3. For encoder-decoder models, encoding
    with special tokens appends ``</s>`` (as T5's tokenizer does), which is how RL encodes seq2seq prompts.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = list(SPECIAL_TOKENS.values())
    if cfg.kind == "bpe":
        backend = Tokenizer(models.BPE())
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
        backend.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=cfg.vocab_size,
            min_frequency=cfg.min_frequency,
            special_tokens=specials,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
    else:
        backend = Tokenizer(models.Unigram())
        backend.pre_tokenizer = pre_tokenizers.Metaspace()
        backend.decoder = decoders.Metaspace()
        trainer = trainers.UnigramTrainer(
            vocab_size=cfg.vocab_size, special_tokens=specials, unk_token="<unk>", show_progress=False
        )
    norm = [normalizers.NFKC()] + ([normalizers.Lowercase()] if cfg.lowercase else [])
    backend.normalizer = normalizers.Sequence(norm)
    backend.train_from_iterator(texts, trainer=trainer, length=len(texts))
    if seq2seq:
        eos = SPECIAL_TOKENS["eos_token"]
        backend.post_processor = processors.TemplateProcessing(
            single=f"$A {eos}", pair=f"$A {eos} $B {eos}", special_tokens=[(eos, backend.token_to_id(eos))]
        )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, clean_up_tokenization_spaces=False, **SPECIAL_TOKENS
    )


def tokenizer_texts(samples: list[dict], max_texts: int | None) -> list[str]:
    """Prompts and references of the training samples (the text the model reads and writes)."""
    texts = [t for s in samples for t in (s["prompt"], *s["references"])]
    return texts[:max_texts] if max_texts is not None else texts


def is_seq2seq_config(random_init: dict) -> bool:
    from transformers import AutoConfig

    args = {k: v for k, v in random_init.items() if k != "model_type"}
    return bool(AutoConfig.for_model(random_init["model_type"], **args).is_encoder_decoder)


def build_tokenizer_and_model(cfg: Config, train_samples: list[dict]) -> tuple[object, nn.Module, bool]:
    """The model section's tokenizer and model, or a trained tokenizer wired into a from-scratch model
    (``vocab_size``, pad / EOS / BOS and the decoder start token all come from the trained tokenizer)."""
    tcfg = cfg.sft.tokenizer_training
    if tcfg is None:
        tokenizer = load_tokenizer(cfg.model)
        model, seq2seq = load_model(cfg.model, tokenizer)
        return tokenizer, model, seq2seq
    assert cfg.model.random_init is not None  # checked by the config
    seq2seq = is_seq2seq_config(cfg.model.random_init)
    tokenizer = train_tokenizer(tokenizer_texts(train_samples, tcfg.max_texts), tcfg, seq2seq)
    random_init = {**cfg.model.random_init, "vocab_size": len(tokenizer)}
    model, seq2seq = load_model(dataclasses.replace(cfg.model, random_init=random_init), tokenizer)
    return tokenizer, model, seq2seq


# ---------------------------------------------------------------------------------------------- batches


def make_examples(samples: list[dict], references: str) -> list[tuple[dict, str]]:
    """``(sample, target)`` pairs: the first reference of each sample, or one pair per reference."""
    if references == "first":
        return [(s, s["references"][0]) for s in samples]
    return [(s, r) for s in samples for r in s["references"]]


def encode_targets(tokenizer, targets: list[str], max_length: int) -> list[list[int]]:
    """Target token ids as a rollout would generate them: the text without special tokens, then EOS."""
    rows = tokenizer(targets, add_special_tokens=False)["input_ids"]
    return [[*r, tokenizer.eos_token_id][:max_length] for r in rows]


@dataclass
class SFTBatch:
    """A teacher-forcing batch, in the layout RL scores responses in.

    ``prompt_ids/prompt_mask [B, P]`` are encoded by :func:`rl4text.rollout.encode_samples` (causal: left-padded);
    ``target_ids/target_mask [B, T]`` are right-padded with the pad id.
    """

    prompt_ids: torch.Tensor
    prompt_mask: torch.Tensor
    target_ids: torch.Tensor
    target_mask: torch.Tensor

    @property
    def labels(self) -> torch.Tensor:
        """``[B, T]`` target ids, ``-100`` on padding."""
        return self.target_ids.masked_fill(self.target_mask == 0, IGNORE_INDEX)

    def causal_inputs(self) -> dict[str, torch.Tensor]:
        """The causal model's full sequence: ``input_ids``, ``attention_mask`` ``[B, P + T]`` and ``labels``
        with ``-100`` on every prompt token and on padding (the labels of HF's shifted LM loss)."""
        prompt_labels = torch.full_like(self.prompt_ids, IGNORE_INDEX)
        return {
            "input_ids": torch.cat([self.prompt_ids, self.target_ids], 1),
            "attention_mask": torch.cat([self.prompt_mask, self.target_mask], 1),
            "labels": torch.cat([prompt_labels, self.labels], 1),
        }

    def to(self, device) -> SFTBatch:
        return SFTBatch(*(t.to(device) for t in dataclasses.astuple(self)))

    @property
    def num_tokens(self) -> int:
        """Real (non-padding) tokens, prompt and target."""
        return int(self.prompt_mask.sum() + self.target_mask.sum())


def collate(
    tokenizer,
    samples: list[dict],
    targets: list[list[int]],
    max_prompt_length: int,
    seq2seq: bool,
    use_chat_template: bool,
) -> SFTBatch:
    prompt_ids, prompt_mask = encode_samples(
        tokenizer, samples, max_prompt_length, seq2seq, use_chat_template
    )
    width = max(len(t) for t in targets)
    target_ids = torch.full((len(targets), width), tokenizer.pad_token_id, dtype=torch.long)
    target_mask = torch.zeros((len(targets), width), dtype=torch.long)
    for i, t in enumerate(targets):
        target_ids[i, : len(t)], target_mask[i, : len(t)] = torch.tensor(t), 1
    return SFTBatch(prompt_ids, prompt_mask, target_ids, target_mask)


def sft_loss(
    model: nn.Module, seq2seq: bool, batch: SFTBatch, label_smoothing: float = 0.0
) -> tuple[torch.Tensor, int]:
    """``(token-mean cross-entropy over target tokens, number of target tokens)``."""
    logits, _ = sequence_logits(
        model, seq2seq, batch.prompt_ids, batch.prompt_mask, batch.target_ids, batch.target_mask
    )
    labels = batch.labels
    n = int((labels != IGNORE_INDEX).sum())
    loss = F.cross_entropy(
        logits.float().flatten(0, 1),
        labels.flatten(),
        ignore_index=IGNORE_INDEX,
        reduction="sum",
        label_smoothing=label_smoothing,
    )
    return loss / max(n, 1), n


def batch_order(
    lengths: list[int], batch_size: int, rng: np.random.Generator, group_by_length: bool
) -> list[list[int]]:
    """One epoch of batches (index lists) in a seeded random order; with ``group_by_length`` each batch holds
    examples of similar length (sorted within shuffled windows of 64 batches)."""
    order = rng.permutation(len(lengths)).tolist()
    if group_by_length:
        window = batch_size * 64
        order = [
            i
            for start in range(0, len(order), window)
            for i in sorted(order[start : start + window], key=lambda j: lengths[j])
        ]
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if group_by_length:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def lr_factor(step: int, total: int, warmup: int, schedule: str) -> float:
    """Multiplier of the peak learning rate at optimiser step ``step`` (0-based)."""
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = (step - warmup) / max(1, total - warmup)
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return max(0.0, 1.0 - progress)


def optimizer_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on matrices only (not on biases and norm weights)."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    rest = [p for p in params if p.ndim < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


# ---------------------------------------------------------------------------------------------- the run

SFT_SHOWN = (("loss", "loss", ".4f"), ("lr", "lr", ".2e"), ("tok/s", "tokens_per_s", ".0f"))
"""What a progress line shows for an SFT run."""


@dataclass
class SFTRun:
    """Everything an SFT run is made of (built once by :func:`build_sft`) and its position (checkpointed)."""

    cfg: Config
    task: object
    tokenizer: object
    model: nn.Module
    seq2seq: bool
    use_chat: bool
    device: torch.device
    examples: list[tuple[dict, str]]
    targets: list[list[int]]
    lengths: list[int]
    eval_samples: list[dict]
    steps_per_epoch: int
    total: int
    optimizer: torch.optim.Optimizer
    scheduler: object
    reward_fn: object
    metrics: dict
    rng: np.random.Generator
    step: int = 0
    epoch: int = 0
    epoch_rng: dict | None = None
    """The batch-order generator's state when the current epoch's batches were drawn (to redraw them on resume)."""
    batches: list[list[int]] | None = None
    position: int = 0
    """Batches of the current epoch already trained on."""
    window: dict = dataclasses.field(default_factory=lambda: new_window())

    def loop_state(self) -> dict:
        return {
            "step": self.step,
            "epoch": self.epoch,
            "epoch_rng": self.epoch_rng,
            "position": self.position,
            "window": dict(self.window),
            "scheduler": self.scheduler.state_dict(),
        }

    def load_loop_state(self, state: dict) -> None:
        self.step, self.epoch, self.position = state["step"], state["epoch"], state["position"]
        self.window = dict(state["window"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.epoch_rng = state["epoch_rng"]
        if self.epoch_rng is not None:  # redraw the current epoch's batches exactly as they were drawn
            self.rng.bit_generator.state = self.epoch_rng
            self.batches = self.draw_batches()

    def draw_batches(self) -> list[list[int]]:
        s = self.cfg.sft
        return batch_order(self.lengths, s.batch_size, self.rng, s.group_by_length)


def new_window() -> dict:
    return {"loss": 0.0, "tokens": 0, "targets": 0, "time": 0.0}


def parameter_counts(model: nn.Module, cfg: Config) -> str:
    """``"1.23M parameters, 36,864 trainable (3.0%, LoRA r=8)"``: what the model holds and what the optimiser
    updates."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    how = f", LoRA r={cfg.model.lora.r}" if cfg.model.lora is not None else ""
    return f"{total / 1e6:.2f}M parameters, {trainable:,} trainable ({100 * trainable / max(total, 1):.1f}%{how})"


def with_lora(model: nn.Module, cfg: Config, seq2seq: bool) -> nn.Module:
    """``model`` with the adapters of ``model.lora`` (as ``rl4text train`` adds them; base weights frozen), or
    ``model`` itself for full fine-tuning."""
    if cfg.model.lora is None:
        return model
    from rl4text.policies.lora import add_lora_from_config

    return add_lora_from_config(model, cfg.model.lora, seq2seq)


def build_sft(cfg: Config) -> SFTRun:
    """Task, tokenizer and model, examples, optimiser and schedule, reward and metrics (in this order: seeded)."""
    s = cfg.sft
    device = pick_device(cfg.train.device)
    seed_everything(cfg.train.seed)
    task = TASKS.build(cfg.task.name, **cfg.task.args)
    train_samples = task.split(cfg.task.train_split)
    eval_samples = task.split(cfg.task.eval_split)[: cfg.eval.max_samples]
    t_build = time.perf_counter()
    tokenizer, model, seq2seq = build_tokenizer_and_model(cfg, train_samples)
    name = type(model).__name__
    model = with_lora(model, cfg, seq2seq).to(device)
    print(
        f"model: {name}, {parameter_counts(model, cfg)}, vocab {len(tokenizer)}, "
        f"{'seq2seq' if seq2seq else 'causal'} (built in {time.perf_counter() - t_build:.1f}s)",
        flush=True,
    )
    examples = make_examples(train_samples, s.references)
    targets = encode_targets(tokenizer, [t for _, t in examples], s.max_target_length)
    prompt_lengths = [
        min(len(r), cfg.rollout.max_prompt_length)
        for r in tokenizer([e[0]["prompt"] for e in examples], add_special_tokens=seq2seq)["input_ids"]
    ]
    steps_per_epoch = math.ceil(len(examples) / s.batch_size)
    total = s.max_steps or s.epochs * steps_per_epoch
    print(
        f"sft: {len(examples)} examples, {steps_per_epoch} steps/epoch, {total} steps "
        f"({total / steps_per_epoch:.2f} epochs), batch {s.batch_size}",
        flush=True,
    )
    optimizer = torch.optim.AdamW(optimizer_groups(model, s.weight_decay), lr=s.learning_rate)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, total, s.warmup_steps, s.schedule)
    )
    return SFTRun(
        cfg=cfg,
        task=task,
        tokenizer=tokenizer,
        model=model,
        seq2seq=seq2seq,
        use_chat=uses_chat_template(cfg.model.use_chat_template, tokenizer, seq2seq),
        device=device,
        examples=examples,
        targets=targets,
        lengths=[p + len(t) for p, t in zip(prompt_lengths, targets)],
        eval_samples=eval_samples,
        steps_per_epoch=steps_per_epoch,
        total=total,
        optimizer=optimizer,
        scheduler=scheduler,
        reward_fn=build_reward(cfg.reward),
        metrics=build_metrics(cfg.eval.metrics or task.metrics),
        rng=np.random.default_rng(cfg.train.seed),
    )


def sft(cfg: Config, output_dir: str | Path, resume: bool = False, overwrite: bool = False) -> dict:
    """Run supervised fine-tuning; returns the final evaluation scores (also written to ``eval.json``).

    ``sft.save_every`` checkpoints for ``resume``; a resumed run ends as the uninterrupted run would."""
    check_sft_config(cfg)
    out = Path(output_dir)
    folder = RunFolder(
        out, cfg.to_dict(), resume=resume, overwrite=overwrite, write_config=lambda p: save_config(cfg, p)
    )
    folder.check()
    if resume and (out / "model").is_dir() and (out / "eval.json").is_file():
        print(f"{out} is a finished SFT run: nothing to resume")
        return {k: v for k, v in json.loads((out / "eval.json").read_text()).items() if k != "iteration"}
    run = build_sft(cfg)  # before the folder is touched: a setup error leaves an old run as it was
    checkpoints = Checkpointer(out / "checkpoints", keep=cfg.train.keep_checkpoints)
    with folder:
        log = RunLogger.for_run(
            out,
            RunInfo.from_config(cfg, "sft"),
            resume=resume,
            total=run.total,
            progress=cfg.tracking.progress,
            print_every=1,
            shown=SFT_SHOWN,
            unit="step",
            on_first_row=folder.started,
        )
        final = None
        try:
            final = sft_loop(run, log, checkpoints, resume)
            return final
        finally:
            log.finish(final)


def sft_loop(run: SFTRun, log: RunLogger, checkpoints: Checkpointer, resume: bool) -> dict:
    """Evaluate the start, train ``run.total`` steps (logging, evaluating, checkpointing), then finish."""
    cfg, s = run.cfg, run.cfg.sft
    latest = checkpoints.latest() if resume else None
    if latest is not None:
        run.load_loop_state(checkpoints.restore(latest, run.model, run.optimizer))
        log.truncate_after(run.step)
        print(f"resumed from {latest} at step {run.step}", flush=True)
    elif resume:  # killed before its first checkpoint: start again, without the rows already logged
        log.truncate_after(-1)
    if log.progress is not None:
        log.progress.resume_at(run.step)
    if run.step == 0 and cfg.eval.at_start:
        log.metrics({"step": 0, "iteration": 0, **eval_row(run, log, 0)})
    set_sft_dropout(run.model, cfg)
    began = time.perf_counter()
    while run.step < run.total:
        if run.batches is None:  # a new epoch
            run.epoch += 1
            run.epoch_rng = run.rng.bit_generator.state
            run.batches, run.position = run.draw_batches(), 0
        while run.position < len(run.batches) and run.step < run.total:
            idx = run.batches[run.position]
            run.position += 1
            grad_norm, lr = train_step(run, idx)
            log_step(run, log, grad_norm, lr, began)
            if s.save_every and run.step % s.save_every == 0 and run.step != run.total:
                log.phase("save", run.step)
                checkpoints.save(run.step, run.model, run.optimizer, run.loop_state())
        if run.position >= len(run.batches):
            run.batches = None
    return finish_sft(run, log, time.perf_counter() - began)


def set_sft_dropout(model: nn.Module, cfg: Config) -> None:
    """Dropout at ``sft.dropout`` in the model, and at ``model.lora.dropout`` on the adapters' inputs."""
    set_dropout(model, cfg.sft.dropout)
    if cfg.model.lora is not None:
        for name, module in model.named_modules():
            if isinstance(module, nn.Dropout) and ".lora_dropout." in f"{name}.":
                module.p = cfg.model.lora.dropout


def train_step(run: SFTRun, idx: list[int]) -> tuple[float | None, float]:
    """One optimiser step on the examples ``idx``; returns ``(grad norm before clipping or None, lr used)``."""
    s = run.cfg.sft
    t0 = time.perf_counter()
    run.model.train()
    batch = collate(
        run.tokenizer,
        [run.examples[i][0] for i in idx],
        [run.targets[i] for i in idx],
        run.cfg.rollout.max_prompt_length,
        run.seq2seq,
        run.use_chat,
    ).to(run.device)
    loss, n = sft_loss(run.model, run.seq2seq, batch, s.label_smoothing)
    check_finite_stats({"loss": loss.item()}, ["loss"], where=f"step {run.step + 1}")
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = None
    if s.max_grad_norm is not None:
        # in the model's parameter order (the float sum, hence the recorded fixtures, depend on it); frozen
        # weights (LoRA's base) have no gradient and are skipped
        trained = [p for p in run.model.parameters() if p.requires_grad]
        grad_norm = float(nn.utils.clip_grad_norm_(trained, s.max_grad_norm))
        check_finite_stats({"grad_norm": grad_norm}, ["grad_norm"], where=f"step {run.step + 1}")
    lr = run.optimizer.param_groups[0]["lr"]
    run.optimizer.step()
    run.scheduler.step()
    run.step += 1
    w = run.window
    w["loss"] += loss.item() * n
    w["targets"] += n
    w["tokens"] += batch.num_tokens
    w["time"] += time.perf_counter() - t0
    return grad_norm, lr


def log_step(run: SFTRun, log: RunLogger, grad_norm: float | None, lr: float, began: float) -> None:
    """Every ``log_every`` steps (and at the last): a row with the window's mean loss; evaluations when due."""
    s, step, total = run.cfg.sft, run.step, run.total
    eval_due = s.eval_every and step % s.eval_every == 0 and step != total
    if step % s.log_every == 0 or step == total:
        w = run.window
        row = {
            "step": step,
            "iteration": step,
            "epoch": step / run.steps_per_epoch,
            "loss": w["loss"] / max(w["targets"], 1),
            "lr": lr,
            "tokens_per_s": w["tokens"] / max(w["time"], 1e-9),
        }
        if grad_norm is not None:
            row["grad_norm"] = grad_norm
        row["time/elapsed_s"] = time.perf_counter() - began
        run.window = new_window()
        if eval_due:
            row.update(eval_row(run, log, step))
        log.metrics(row)
        log.step_done(step, row)
    elif eval_due:
        log.metrics({"step": step, "iteration": step, **eval_row(run, log, step)})


def run_eval(run: SFTRun, log: RunLogger | None, step: int, samples: list[dict]) -> dict:
    """Decode ``samples`` and score them; with a ``log``, the first rows go to ``samples.jsonl``."""
    run.model.eval()
    scores, rows = evaluate(
        run.model,
        run.seq2seq,
        run.tokenizer,
        samples,
        run.reward_fn,
        run.metrics,
        decoding=Decoding.from_config(run.cfg),
        use_chat_template=run.use_chat,
    )
    if log is not None:
        log.samples(
            [
                {"step": step, "iteration": step, **r}
                for r in logged_rows(rows, run.cfg.eval.num_logged_samples)
            ]
        )
    return scores


def eval_row(run: SFTRun, log: RunLogger, step: int) -> dict:
    log.phase("eval", step)
    t0 = time.perf_counter()
    scores = run_eval(run, log, step, run.eval_samples)
    shown = "  ".join(f"{k} {v:.4g}" for k, v in scores.items())
    print(f"eval step {step}: {shown}  ({time.perf_counter() - t0:.1f}s)", flush=True)
    return {f"eval/{k}": v for k, v in scores.items()}


def finish_sft(run: SFTRun, log: RunLogger, train_time: float) -> dict:
    """Final evaluation, ``eval.json`` (and ``eval_<test_split>.json``), then ``model/`` (last, atomically)."""
    cfg, s, out, total = run.cfg, run.cfg.sft, log.folder, run.total
    disable_dropout(run.model)
    log.phase("eval", total)
    final = run_eval(run, log, total, run.eval_samples)
    print(f"final eval ({cfg.task.eval_split}): {json.dumps(final)}", flush=True)
    evals = {f"eval/{k}": v for k, v in final.items()}
    log.metrics({"step": total, "iteration": total, "final": True, **evals, "time/train_s": train_time})
    # the layout of rl4text train's eval.json, so `rl4text compare` reads SFT runs too
    write_text_atomic(out / "eval.json", json.dumps({"iteration": total, **final}, indent=2) + "\n")
    if s.test_split is not None:
        test = run_eval(run, None, total, run.task.split(s.test_split))
        print(f"eval ({s.test_split}): {json.dumps(test)}", flush=True)
        write_text_atomic(
            out / f"eval_{s.test_split}.json",
            json.dumps({"step": total, "split": s.test_split, **test}, indent=2) + "\n",
        )
    log.phase("save", total)
    check_finite_module(run.model, where=f"the end of SFT (step {total})")  # never save a NaN model
    keep_adapter = cfg.model.lora is not None and cfg.model.lora.keep_adapter
    save_sft_model(run.model, run.tokenizer, out / "model", keep_adapter=keep_adapter)
    return final


def save_sft_model(model: nn.Module, tokenizer, folder: Path, *, keep_adapter: bool = False) -> None:
    """A Hugging Face folder (model + tokenizer) that ``model.name_or_path`` can name, written atomically.

    LoRA: the adapters merged into the base weights (in place: the PEFT wrapper is gone afterwards), as
    ``rl4text train`` saves; ``keep_adapter`` also writes the adapters alone to ``model/adapter/`` (PEFT format)."""
    from rl4text.policies.lora import write_model_folder

    with atomic_folder(folder) as tmp:
        write_model_folder(model, tokenizer, tmp, keep_adapter=keep_adapter)


def check_sft_config(cfg: Config, source: str = "<config>") -> None:
    """Registry checks shared with ``rl4text train`` plus SFT ones that need no model."""
    from rl4text.train import check_config_runs

    check_config_runs(cfg, source, for_rl=False)
    if cfg.sft.tokenizer_training is not None:
        if cfg.model.random_init is None:
            raise ConfigError(
                f"{source}: sft.tokenizer_training builds a tokenizer for a new model; it needs model.random_init "
                "(a pretrained model keeps its own tokenizer)"
            )
        if cfg.model.tokenizer is not None:
            raise ConfigError(f"{source}: set either model.tokenizer or sft.tokenizer_training, not both")
    if cfg.sft.test_split is not None and cfg.sft.test_split == cfg.task.train_split:
        raise ConfigError(f"{source}: sft.test_split is the training split ({cfg.task.train_split!r})")
