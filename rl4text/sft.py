"""Supervised warm start (``rl4text sft``): teacher forcing on a task's references, before RL.

The prompt side follows the RL conventions exactly (:func:`rl4text.rollout.encode_samples`: the same
``format_prompt`` / chat template, left padding and left truncation for causal models, right padding and
special tokens for encoders), and the target side is what a rollout generates: the reference tokenised on its
own (no special tokens) followed by EOS. Logits come from the same scoring function RL uses
(:func:`rl4text.policies.actor_critic.sequence_logits`), so "logits[:, :-1] score tokens[:, 1:]" and the
seq2seq decoder inputs (``decoder_start`` + target[:-1]) are shared with training. The loss is the token-mean
cross-entropy over target tokens; prompt tokens and padding carry the label ``-100`` and are ignored.

The run folder holds ``config.yaml``, ``metrics.jsonl``, ``samples.jsonl``, ``eval.json`` and ``model/``, a
Hugging Face folder (model + tokenizer) usable as ``model.name_or_path`` of ``rl4text train``.
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

from rl4text.config import Config, ConfigError, TokenizerTrainingConfig
from rl4text.evaluate import evaluate
from rl4text.metrics import build_metrics
from rl4text.models import disable_dropout, load_model, load_tokenizer, save_pretrained_model
from rl4text.policies.actor_critic import sequence_logits
from rl4text.progress import format_seconds
from rl4text.registry import TASKS
from rl4text.rewards import build_reward
from rl4text.rollout import encode_samples
from rl4text.text import uses_chat_template
from rl4text.train import pick_device, prepare_run_dir, seed_everything

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


def set_dropout(model: nn.Module, rate: float) -> None:
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = rate


def optimizer_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on matrices only (not on biases and norm weights)."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    rest = [p for p in params if p.ndim < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


# ---------------------------------------------------------------------------------------------- the loop


def sft(cfg: Config, output_dir: str | Path, overwrite: bool = False) -> dict:
    """Run supervised fine-tuning; returns the final evaluation scores (also written to ``eval.json``)."""
    check_sft_config(cfg)
    s = cfg.sft
    out = Path(output_dir)
    prepare_run_dir(cfg, out, resume=False, overwrite=overwrite)
    device = pick_device(cfg.train.device)
    seed_everything(cfg.train.seed)
    task = TASKS.build(cfg.task.name, **cfg.task.args)
    train_samples = task.split(cfg.task.train_split)
    eval_samples = task.split(cfg.task.eval_split)[: cfg.eval.max_samples]

    t_build = time.perf_counter()
    tokenizer, model, seq2seq = build_tokenizer_and_model(cfg, train_samples)
    model.to(device)
    use_chat = uses_chat_template(cfg.model.use_chat_template, tokenizer, seq2seq)
    n_params = sum(p.numel() for p in model.parameters())
    print(
        f"model: {type(model).__name__}, {n_params / 1e6:.2f}M parameters, vocab {len(tokenizer)}, "
        f"{'seq2seq' if seq2seq else 'causal'} (built in {time.perf_counter() - t_build:.1f}s)",
        flush=True,
    )

    examples = make_examples(train_samples, s.references)
    targets = encode_targets(tokenizer, [t for _, t in examples], s.max_target_length)
    prompt_lengths = [
        min(len(r), cfg.rollout.max_prompt_length)
        for r in tokenizer([e[0]["prompt"] for e in examples], add_special_tokens=seq2seq)["input_ids"]
    ]
    lengths = [p + len(t) for p, t in zip(prompt_lengths, targets)]
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
    reward_fn = build_reward(cfg.reward)
    metrics = build_metrics(cfg.eval.metrics or task.metrics)
    rng = np.random.default_rng(cfg.train.seed)
    metrics_path, samples_path = out / "metrics.jsonl", out / "samples.jsonl"

    def log(row: dict) -> None:
        with metrics_path.open("a") as f:
            f.write(json.dumps(row) + "\n")

    def run_eval(step: int, samples: list[dict], log_samples: bool = True) -> dict:
        model.eval()
        scores, rows = evaluate(
            model,
            seq2seq,
            tokenizer,
            samples,
            reward_fn,
            metrics,
            batch_size=cfg.eval.batch_size,
            max_new_tokens=cfg.eval.max_new_tokens or cfg.rollout.max_new_tokens,
            max_prompt_length=cfg.rollout.max_prompt_length,
            use_chat_template=use_chat,
            do_sample=cfg.eval.do_sample,
            temperature=cfg.eval.temperature,
            num_beams=cfg.eval.num_beams,
        )
        if log_samples:
            with samples_path.open("a") as f:
                for r in rows[: cfg.eval.num_logged_samples]:
                    f.write(json.dumps({"step": step, "iteration": step, **r}) + "\n")
        return scores

    def eval_row(step: int) -> dict:
        t0 = time.perf_counter()
        scores = run_eval(step, eval_samples)
        shown = "  ".join(f"{k} {v:.4g}" for k, v in scores.items())
        print(f"eval step {step}: {shown}  ({time.perf_counter() - t0:.1f}s)", flush=True)
        return {f"eval/{k}": v for k, v in scores.items()}

    if cfg.eval.at_start:
        log({"step": 0, "iteration": 0, **eval_row(0)})

    set_dropout(model, s.dropout)
    step, epoch = 0, 0
    window = {"loss": 0.0, "tokens": 0, "targets": 0, "time": 0.0}
    began = time.perf_counter()
    while step < total:
        epoch += 1
        for idx in batch_order(lengths, s.batch_size, rng, s.group_by_length):
            if step >= total:
                break
            t0 = time.perf_counter()
            model.train()
            batch = collate(
                tokenizer,
                [examples[i][0] for i in idx],
                [targets[i] for i in idx],
                cfg.rollout.max_prompt_length,
                seq2seq,
                use_chat,
            ).to(device)
            loss, n = sft_loss(model, seq2seq, batch, s.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = None
            if s.max_grad_norm is not None:
                grad_norm = float(nn.utils.clip_grad_norm_(model.parameters(), s.max_grad_norm))
            lr = optimizer.param_groups[0]["lr"]
            optimizer.step()
            scheduler.step()
            step += 1
            window["loss"] += loss.item() * n
            window["targets"] += n
            window["tokens"] += batch.num_tokens
            window["time"] += time.perf_counter() - t0
            if step % s.log_every == 0 or step == total:
                row = {
                    "step": step,
                    "iteration": step,
                    "epoch": step / steps_per_epoch,
                    "loss": window["loss"] / max(window["targets"], 1),
                    "lr": lr,
                    "tokens_per_s": window["tokens"] / max(window["time"], 1e-9),
                }
                if grad_norm is not None:
                    row["grad_norm"] = grad_norm
                row["time/elapsed_s"] = time.perf_counter() - began
                eta = (time.perf_counter() - began) / step * (total - step)
                print(
                    f"step {step:5d}/{total}  epoch {row['epoch']:.2f}  loss {row['loss']:.4f}  lr {lr:.2e}  "
                    f"tok/s {row['tokens_per_s']:.0f}  eta {format_seconds(eta)}",
                    flush=True,
                )
                window = {"loss": 0.0, "tokens": 0, "targets": 0, "time": 0.0}
                if s.eval_every and step % s.eval_every == 0 and step != total:
                    row.update(eval_row(step))
                log(row)
            elif s.eval_every and step % s.eval_every == 0 and step != total:
                log({"step": step, "iteration": step, **eval_row(step)})

    disable_dropout(model)
    train_time = time.perf_counter() - began
    final = run_eval(total, eval_samples)
    print(f"final eval ({cfg.task.eval_split}): {json.dumps(final)}", flush=True)
    evals = {f"eval/{k}": v for k, v in final.items()}
    log({"step": total, "iteration": total, "final": True, **evals, "time/train_s": train_time})
    # the layout of rl4text train's eval.json, so `rl4text compare` reads SFT runs too
    (out / "eval.json").write_text(json.dumps({"iteration": total, **final}, indent=2) + "\n")
    if s.test_split is not None:
        test = run_eval(total, task.split(s.test_split), log_samples=False)
        print(f"eval ({s.test_split}): {json.dumps(test)}", flush=True)
        (out / f"eval_{s.test_split}.json").write_text(
            json.dumps({"step": total, "split": s.test_split, **test}, indent=2) + "\n"
        )
    save_sft_model(model, tokenizer, out / "model")
    return final


def save_sft_model(model: nn.Module, tokenizer, folder: Path) -> None:
    """A Hugging Face folder (model + tokenizer) that ``model.name_or_path`` can name."""
    save_pretrained_model(model, folder)
    tokenizer.save_pretrained(folder)


def check_sft_config(cfg: Config, source: str = "<config>") -> None:
    """Registry checks shared with ``rl4text train`` plus SFT ones that need no model."""
    from rl4text.train import check_config_runs

    check_config_runs(cfg, source)
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
