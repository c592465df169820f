"""A reward model: a Hugging Face backbone with a one-logit sequence-classification head, and its folder.

The head is ``AutoModelForSequenceClassification(num_labels=1)``, so each architecture pools as Hugging Face
defines it (the [CLS] pooler for BERT-style encoders, the last non-pad token for decoders such as Llama or
GPT-2), and the saved folder is a plain Hugging Face model that ``classifier`` or any HF code can load too.

An RM folder holds ``model.safetensors``, ``config.json``, the tokenizer files, ``rm_meta.json`` (how inputs
are built, and the normalisation statistics of the ``learned_rm`` reward), ``rm_config.yaml``, ``eval.json``
and ``metrics.jsonl``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from rl4text.rewards.learned import SequenceScorer, load_scorer_tokenizer, resolve_pretrained

META = "rm_meta.json"


def build_backbone(model_cfg, device: str = "auto") -> SequenceScorer:
    """A fresh reward model (``RMModelConfig``) wrapped in a :class:`SequenceScorer`; seed torch first."""
    from transformers import AutoConfig, AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    if model_cfg.random_init is not None:
        tokenizer = load_scorer_tokenizer(model_cfg.tokenizer)
        args = dict(model_cfg.random_init)
        model_type = args.pop("model_type")
        args.setdefault("vocab_size", len(tokenizer))
        args.update(num_labels=1, pad_token_id=tokenizer.pad_token_id)
        model = AutoModelForSequenceClassification.from_config(AutoConfig.for_model(model_type, **args))
        name = f"random {model_type}"
    else:
        source = resolve_pretrained(model_cfg.name_or_path)
        tokenizer = load_scorer_tokenizer(model_cfg.tokenizer or source)
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # "newly initialized: classifier.weight" is the point here
        try:
            model = AutoModelForSequenceClassification.from_pretrained(source, num_labels=1)
        finally:
            hf_logging.set_verbosity(verbosity)
        name = model_cfg.name_or_path
    model.config.problem_type = "regression"  # one real-valued output, whatever loss trained it
    return SequenceScorer.wrap(model, tokenizer, name=name, device=device, max_length=model_cfg.max_length)


def model_inputs(input_mode: str, prompts: list[str], completions: list[str]):
    """``(texts, pairs)`` for :meth:`SequenceScorer.encode`: a (prompt, completion) pair or the completion."""
    if input_mode == "pair":
        return list(prompts), list(completions)
    if input_mode == "completion":
        return list(completions), None
    raise ValueError(f"reward-model input must be 'pair' or 'completion', got {input_mode!r}")


class RewardModel:
    """A trained reward model loaded from its folder: raw scores, and scores normalised by the stored
    statistics (``(raw - mean) / std``)."""

    def __init__(self, folder: str | Path, device: str = "auto", dtype: str = "float32"):
        folder = Path(folder)
        meta_path = folder / META
        if not meta_path.is_file():
            raise FileNotFoundError(
                f"{folder} is not a reward-model folder: no {META} (make one with `rl4text rm train`)"
            )
        self.folder = folder
        self.meta = json.loads(meta_path.read_text())
        self.scorer = SequenceScorer(
            str(folder),
            device=device,
            dtype=dtype,
            max_length=self.meta["max_length"],
            truncation_side=self.meta.get("truncation_side", "right"),
        )

    @property
    def normalization(self) -> dict:
        return self.meta.get("normalization") or {"mean": 0.0, "std": 1.0}

    def raw(self, prompts: list[str], completions: list[str], batch_size: int = 32) -> list[float]:
        texts, pairs = model_inputs(self.meta["input"], prompts, completions)
        return self.scorer.scores(texts, pairs, output="scalar", batch_size=batch_size)

    def normalized(self, prompts: list[str], completions: list[str], batch_size: int = 32) -> list[float]:
        norm = self.normalization
        std = norm["std"] if norm["std"] > 0 else 1.0
        return [(x - norm["mean"]) / std for x in self.raw(prompts, completions, batch_size)]


def normalization_stats(values: list[float], on: str) -> dict:
    """``{"mean", "std", "n", "on"}`` of raw RM scores (sample std; 1 when undefined)."""
    n = len(values)
    mean = sum(values) / n if n else 0.0
    var = sum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else 1.0
    return {"mean": mean, "std": math.sqrt(var) or 1.0, "n": n, "on": on}


def save_reward_model(scorer: SequenceScorer, folder: str | Path, meta: dict) -> None:
    """Write the model (safetensors), its config, its tokenizer and ``rm_meta.json`` to ``folder``."""
    from rl4text.models import disable_dropout

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    disable_dropout(scorer.model)
    scorer.model.save_pretrained(folder, safe_serialization=True)
    scorer.tokenizer.save_pretrained(folder)
    write_meta(folder, meta)


def write_meta(folder: str | Path, meta: dict) -> None:
    (Path(folder) / META).write_text(json.dumps(meta, indent=2) + "\n")
