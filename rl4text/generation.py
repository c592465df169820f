"""The generation-backend seam: rollout and evaluation sample through a :class:`Generator`.

A backend turns prompts into responses under pure temperature sampling (or greedy decoding) and is told when
the policy's weights change. :class:`HFGenerator`, the default for causal and encoder-decoder models, is
rl4text's KV-cached loop (:func:`rl4text.rollout.generate`) on the policy's own module, so it shares the weights
and its ``update_weights`` has nothing to copy. A server backend (vLLM, causal models only: it has no
encoder-decoder models) would keep its own copy of the weights and load them in ``update_weights``; scoring
(``policy.score``, the reference's log-probs) stays one forward over prompt + response in rl4text either way.
A logits processor (NLPO's action mask) is applied at every step only by backends listed in the masker's
``generators``.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import nn

from rl4text.rollout import LogitsProcessor, generate


@runtime_checkable
class Generator(Protocol):
    """Prompts ``[B, P]`` -> responses ``(ids [B, T], mask [B, T])``, EOS included, pad after it."""

    name: str
    """The backend's name (``hf``); what an action masker lists in its ``generators``."""

    def generate(
        self,
        prompt_ids: torch.Tensor,
        prompt_mask: torch.Tensor,
        *,
        max_new_tokens: int,
        temperature: float = 1.0,
        do_sample: bool = True,
        logits_processor: LogitsProcessor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Sample from ``softmax(logits / temperature)`` (argmax unless ``do_sample``); ``response_mask`` is float."""
        ...

    def update_weights(self, model: nn.Module) -> None:
        """Called after every update with the policy's language model (its new weights)."""
        ...


class HFGenerator:
    """The Hugging Face model's own KV-cached sampling loop (:func:`rl4text.rollout.generate`)."""

    name = "hf"
    records_scores = True
    """``generate(..., record=StepScores)`` records the sampling loop's log-probs (and hidden states), so the
    rollout need not score its own samples again (``rollout.score_from_generation``)."""
    shares_prompts = True
    """``generate(..., share_prompts=True)`` prefills each distinct prompt once (``rollout.share_prompts``)."""

    def __init__(self, model: nn.Module, seq2seq: bool, *, eos_id: int, pad_id: int):
        self.model, self.seq2seq, self.eos_id, self.pad_id = model, seq2seq, eos_id, pad_id

    def generate(
        self,
        prompt_ids: torch.Tensor,
        prompt_mask: torch.Tensor,
        *,
        max_new_tokens: int,
        temperature: float = 1.0,
        do_sample: bool = True,
        logits_processor: LogitsProcessor | None = None,
        record=None,
        share_prompts: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return generate(
            self.model,
            self.seq2seq,
            prompt_ids,
            prompt_mask,
            max_new_tokens=max_new_tokens,
            eos_id=self.eos_id,
            pad_id=self.pad_id,
            do_sample=do_sample,
            temperature=temperature,
            logits_processor=logits_processor,
            record=record,
            share_prompts=share_prompts,
        )

    def update_weights(self, model: nn.Module) -> None:
        self.model = model  # the same module: its parameters are the policy's


GENERATORS = {"hf": HFGenerator}


def make_generator(name: str, model: nn.Module, seq2seq: bool, tokenizer) -> Generator:
    """The backend ``name`` over ``model``; a ``ValueError`` naming the valid ones otherwise."""
    if name not in GENERATORS:
        raise ValueError(f"unknown generation backend {name!r}; available: {', '.join(sorted(GENERATORS))}")
    return GENERATORS[name](model, seq2seq, eos_id=tokenizer.eos_token_id, pad_id=tokenizer.pad_token_id)


def check_masker_backend(masker, generator: Generator, algorithm: str) -> None:
    """An action masker (NLPO) must be supported by the generation backend; a ``ValueError`` otherwise."""
    if masker is None:
        return
    supported = tuple(getattr(masker, "generators", ("hf",)))
    if generator.name not in supported:
        raise ValueError(
            f"{algorithm} masks actions at every sampling step, which the {generator.name!r} generation backend "
            f"cannot do; supported backends: {', '.join(supported)}"
        )
