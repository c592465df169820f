"""The DPO config: dataclasses are the schema, ``configs/dpo_*.yaml`` are presets (keys checked as everywhere).

``model`` and ``tracking`` are the RL config's sections (so a DPO run's ``model/`` and an RL run name models the
same way); ``data`` is the reward model's (the same files and readers serve ``rl4text rm train`` and DPO).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from rl4text.config import ConfigError, ModelConfig, TrackingConfig, build_dataclass, read_config_data
from rl4text.rm.config import RMDataConfig


@dataclass
class DPOLossConfig:
    """The preference loss (``rl4text.core.dpo``)."""

    beta: float = 0.1
    """Strength of the implicit KL to the reference (Rafailov et al. use 0.1-0.5)."""
    loss: Literal["sigmoid", "ipo"] = "sigmoid"
    """``sigmoid``: DPO's logistic loss; ``ipo``: IPO's squared loss towards a log-ratio gap of 1/(2 beta)."""
    label_smoothing: float = 0.0
    """Sigmoid loss only: assumed share of flipped labels (conservative DPO); 0 is plain DPO."""
    max_pairs_per_group: int | None = None
    """Train on at most this many pairs of one group (a SummEval document implies 120; seeded sample)."""


@dataclass
class DPOTrainConfig:
    """The optimisation and the run folder."""

    epochs: int = 1
    """Passes over the training pairs (ignored when ``max_steps`` is set)."""
    max_steps: int | None = None
    """Stop after this many optimiser steps (cycling through epochs as needed)."""
    batch_size: int = 8
    """Pairs per optimiser step (chosen and rejected are scored in one forward pass)."""
    learning_rate: float = 5.0e-7
    """Peak AdamW learning rate (Rafailov et al.: 1e-6 for 2.8B-parameter models)."""
    warmup_steps: int = 0
    """Linear warm-up from 0, then constant."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    max_grad_norm: float | None = 1.0
    """Clip the global gradient norm (``null``: no clipping)."""
    max_prompt_length: int = 128
    """Prompt tokens, cut as RL cuts them (from the left for causal models)."""
    max_response_length: int = 128
    """Response tokens, EOS included (longer responses are cut and lose their EOS)."""
    seed: int = 0
    """Seeds model initialisation, the pair order and subsampling."""
    device: str = "auto"
    """``cpu``, ``cuda``, ...; ``auto`` picks CUDA when available."""
    eval_batch_size: int = 32
    """Pairs per forward pass when scoring without gradients (reference, held-out)."""
    log_every: int = 10
    """Write a ``metrics.jsonl`` row every N steps."""
    eval_every: int = 0
    """Score the held-out pairs every N steps (0: before training and at the end only)."""
    save_every: int = 0
    """Checkpoint every N steps (0: only at the end)."""
    keep_checkpoints: int = 2
    """How many most recent checkpoints to keep."""
    save_final_model: bool = True
    """Write the trained policy as ``model/`` (a Hugging Face folder usable as ``model.name_or_path``)."""


@dataclass
class DPOConfig:
    """A DPO run."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: RMDataConfig = field(default_factory=RMDataConfig)
    dpo: DPOLossConfig = field(default_factory=DPOLossConfig)
    train: DPOTrainConfig = field(default_factory=DPOTrainConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def dpo_config_from_dict(data: dict[str, Any], source: str = "<config>") -> DPOConfig:
    cfg = build_dataclass(DPOConfig, data, "", source)
    m, d, t = cfg.model, cfg.dpo, cfg.train
    if (m.name_or_path is None) == (m.random_init is None):
        raise ConfigError(f"{source}: set exactly one of model.name_or_path and model.random_init")
    if m.random_init is not None and ("model_type" not in m.random_init or m.tokenizer is None):
        raise ConfigError(
            f"{source}: model.random_init needs a 'model_type' (e.g. llama, t5) and model.tokenizer (e.g. 'char')"
        )
    if cfg.data.format in ("pairs", "rankings", "ratings") and cfg.data.path is None:
        raise ConfigError(f"{source}: data.format {cfg.data.format!r} needs data.path (a JSON-lines file)")
    if not 0.0 <= cfg.data.held_out < 1.0:
        raise ConfigError(f"{source}: data.held_out must be in [0, 1), got {cfg.data.held_out}")
    if d.beta <= 0:
        raise ConfigError(f"{source}: dpo.beta must be > 0, got {d.beta}")
    if not 0.0 <= d.label_smoothing < 0.5:
        raise ConfigError(f"{source}: dpo.label_smoothing must be in [0, 0.5), got {d.label_smoothing}")
    if d.loss == "ipo" and d.label_smoothing:
        raise ConfigError(f"{source}: dpo.label_smoothing applies to dpo.loss=sigmoid only, not ipo")
    for key in (
        "epochs",
        "batch_size",
        "max_prompt_length",
        "max_response_length",
        "eval_batch_size",
        "log_every",
    ):
        if getattr(t, key) <= 0:
            raise ConfigError(f"{source}: train.{key} must be positive, got {getattr(t, key)}")
    if t.max_steps is not None and t.max_steps <= 0:
        raise ConfigError(f"{source}: train.max_steps must be positive or null, got {t.max_steps}")
    if min(t.warmup_steps, t.eval_every, t.save_every) < 0 or t.keep_checkpoints < 1:
        raise ConfigError(
            f"{source}: train.warmup_steps, eval_every, save_every must be >= 0, keep_checkpoints >= 1"
        )
    return cfg


def load_dpo_config(path: str | Path | None, overrides: list[str] | None = None) -> DPOConfig:
    """Read a YAML preset and apply dotted ``key=value`` overrides."""
    return dpo_config_from_dict(*read_config_data(path, overrides))
