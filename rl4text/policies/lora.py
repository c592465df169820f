"""LoRA through PEFT (``model.lora``): adapters on the policy, the reference for free, a merged model at the end.

- :func:`add_lora` wraps the base model with PEFT adapters; only the adapters (and the value head) train.
- :class:`AdaptersDisabled` is the KL reference: the same module run under ``disable_adapter()``, so the
  reference costs no memory at all (never a copy).
- :class:`AdapterSnapshot` is NLPO's mask policy: a frozen copy of the adapter weights only, swapped into the
  policy's modules for the mask policy's forward passes.
- :func:`merged_for_saving` folds the adapters into the base weights for ``model/`` (a plain Hugging Face folder).

``peft`` is an optional dependency (``pip install 'rl4text[lora]'``), imported only here and only when used.
"""

from __future__ import annotations

import contextlib
import warnings

import torch
from torch import nn


def is_peft(model: nn.Module) -> bool:
    return hasattr(model, "disable_adapter") and hasattr(model, "peft_config")


def add_lora(
    model: nn.Module, seq2seq: bool, *, r: int, alpha: float, dropout: float, target_modules
) -> nn.Module:
    """``model`` with LoRA adapters (PEFT); the base weights are frozen. ``target_modules=None``: PEFT's
    default for the architecture (attention projections)."""
    try:
        from peft import LoraConfig, TaskType, get_peft_model
    except ImportError as exc:
        raise ImportError(
            "model.lora needs the peft package: pip install 'rl4text[lora]' (or pip install peft)"
        ) from exc
    config = LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=target_modules,
        task_type=TaskType.SEQ_2_SEQ_LM if seq2seq else TaskType.CAUSAL_LM,
    )
    with warnings.catch_warnings():
        # PEFT reads transformers 5's deprecated `is_gradient_checkpointing` property while it wraps the model
        warnings.filterwarnings(
            "ignore", message=r"`is_gradient_checkpointing` is deprecated", category=FutureWarning
        )
        peft_model = get_peft_model(model, config)
    peft_model.eval()
    return peft_model


def add_lora_from_config(model: nn.Module, lora, seq2seq: bool) -> nn.Module:
    """:func:`add_lora` with the keys of a ``model.lora`` section (``rl4text train`` and ``rl4text sft`` alike)."""
    return add_lora(
        model, seq2seq, r=lora.r, alpha=lora.alpha, dropout=lora.dropout, target_modules=lora.target_modules
    )


class _PeftView(nn.Module):
    """A view of a PEFT policy that runs it (and its encoder) inside :meth:`context`; holds the model without
    registering it, so its parameters stay the policy's, not counted twice."""

    def __init__(self, peft_model: nn.Module):
        super().__init__()
        object.__setattr__(self, "_peft", peft_model)

    def context(self):
        raise NotImplementedError

    def get_base_model(self) -> nn.Module:
        return self._peft.get_base_model()

    @property
    def config(self):
        return self._peft.config

    @property
    def generation_config(self):
        return self._peft.generation_config

    def get_encoder(self):
        encoder = self._peft.get_encoder()

        def run(*args, **kwargs):
            with self.context():
                return encoder(*args, **kwargs)

        return run

    def forward(self, *args, **kwargs):
        with self.context():
            return self._peft(*args, **kwargs)


class AdaptersDisabled(_PeftView):
    """The base model of a PEFT policy, adapters off: the KL reference without a second copy of the weights.

    Calls the wrapped model under ``disable_adapter()``."""

    def context(self):
        return self._peft.disable_adapter()


def lora_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """The adapter weights of a PEFT model, by name (what trains)."""
    return {n: p for n, p in model.named_parameters() if "lora_" in n}


class AdapterSnapshot(_PeftView):
    """A frozen snapshot of a PEFT policy's adapter weights, run on the policy's own (frozen) base weights.

    NLPO's mask policy lags the policy by up to mu - 1 updates; with LoRA only the adapters differ, so the
    snapshot holds those (a few MB) and swaps them in for its forward passes. Not thread-safe (nothing here runs
    forward passes concurrently)."""

    def __init__(self, peft_model: nn.Module):
        super().__init__(peft_model)
        self.weights = {n: p.detach().clone() for n, p in lora_parameters(peft_model).items()}

    def refresh(self) -> None:
        """Copy the policy's current adapter weights into the snapshot."""
        with torch.no_grad():
            for name, p in lora_parameters(self._peft).items():
                self.weights[name].copy_(p)

    def state_dict(self, *args, **kwargs) -> dict[str, torch.Tensor]:
        return {k: v.clone() for k, v in self.weights.items()}

    def load_state_dict(self, state, strict: bool = True, assign: bool = False):
        missing = set(self.weights) - set(state)
        if strict and missing:
            raise KeyError(f"adapter snapshot is missing {sorted(missing)[:3]}")
        with torch.no_grad():
            for name, value in state.items():
                self.weights[name].copy_(value)
        return None

    @contextlib.contextmanager
    def swapped_in(self):
        params = lora_parameters(self._peft)
        saved = {n: p.detach().clone() for n, p in params.items()}
        with torch.no_grad():
            for n, p in params.items():
                p.copy_(self.weights[n])
        try:
            yield
        finally:
            with torch.no_grad():
                for n, p in params.items():
                    p.copy_(saved[n])

    def context(self):
        return self.swapped_in()


def merged_for_saving(model: nn.Module) -> nn.Module:
    """The plain Hugging Face model to write as ``model/``: adapters merged into the base weights (in place,
    so call it last: the PEFT wrapper is gone afterwards). A model without adapters is returned as it is."""
    if not is_peft(model):
        return model
    base = model.get_base_model()
    head, embed = base.get_output_embeddings(), base.get_input_embeddings()
    head_weight = getattr(getattr(head, "base_layer", head), "weight", None)
    if head is not None and hasattr(head, "base_layer") and head_weight is embed.weight:
        # an adapted LM head tied to the input embeddings: merging would change the embeddings too, so untie
        head.base_layer.weight = nn.Parameter(head_weight.detach().clone())
        for config in {id(c): c for c in (base.config, base.config.get_text_config())}.values():
            config.tie_word_embeddings = False
    return model.merge_and_unload()


def write_model_folder(model: nn.Module, tokenizer, folder, *, keep_adapter: bool) -> None:
    """Into ``folder`` (an open temporary folder of :func:`rl4text.runtime.atomic_folder`): the adapters alone in
    ``adapter/`` (PEFT's format) when ``keep_adapter`` and the model has them, then the plain Hugging Face model
    (adapters merged: :func:`merged_for_saving`, so call it last) and the tokenizer."""
    from rl4text.models import save_pretrained_model

    if keep_adapter and is_peft(model):
        model.save_pretrained(folder / "adapter")
    save_pretrained_model(merged_for_saving(model), folder)
    tokenizer.save_pretrained(folder)
