"""Fast rollout: batched, KV-cached sampling, then one scoring pass each for policy (+values) and reference.

This is the same MDP as :class:`rl4text.envs.TextGenEnv` (``tests/test_equivalence.py`` forces the rollout's
tokens through the env and compares rewards and log-probs): prompts are encoded by ``rl4text.text``, each step
samples from ``softmax(logits / temperature)``, an episode ends at EOS (``terminated``) or after
``max_new_tokens`` (``truncated``), and everything after EOS is masked.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from rl4text.policies.actor_critic import (
    ActorCritic,
    accepts_kwarg,
    causal_position_ids,
    decoder_start_id,
    reference_logprobs,
)
from rl4text.text import decode_responses, encode_prompts, format_prompt

# (logits [B, V] of the current step, generated tokens so far [B, t]) -> logits [B, V]; e.g. NLPO's action mask.
LogitsProcessor = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class Rollout:
    """A batch of finished episodes. ``B`` episodes, prompts padded to ``P``, responses to ``T`` tokens."""

    samples: list[dict]
    """The task samples (``prompt``, ``references``, ...) the episodes started from, length ``B``."""
    prompt_ids: torch.Tensor
    """``[B, P]`` prompt tokens (left-padded for causal models, right-padded for seq2seq)."""
    prompt_mask: torch.Tensor
    """``[B, P]`` 1 on real prompt tokens."""
    response_ids: torch.Tensor
    """``[B, T]`` sampled tokens, pad after EOS."""
    response_mask: torch.Tensor
    """``[B, T]`` float, 1 on sampled tokens up to and including EOS."""
    completions: list[str]
    """Decoded responses (up to EOS, special tokens dropped)."""
    logprobs: torch.Tensor | None = None
    """``[B, T]`` policy log-probs of the sampled tokens (the behaviour policy's, for ratios)."""
    values: torch.Tensor | None = None
    """``[B, T]`` critic values of the state before each token."""
    ref_logprobs: torch.Tensor | None = None
    """``[B, T]`` reference-model log-probs of the sampled tokens (for the KL penalty)."""
    extras: dict = field(default_factory=dict)

    @property
    def lengths(self) -> torch.Tensor:
        """``[B]`` response lengths in tokens (EOS included)."""
        return self.response_mask.sum(-1)

    def ended_with_eos(self, eos_id: int) -> torch.Tensor:
        """``[B]`` bool: the episode terminated on EOS rather than being truncated."""
        last = (self.lengths.long() - 1).clamp(min=0)
        return (self.response_ids.gather(1, last[:, None]).squeeze(1) == eos_id) & (self.lengths > 0)


def _pick(logits: torch.Tensor, do_sample: bool, temperature: float) -> torch.Tensor:
    if not do_sample:
        return logits.argmax(-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    return torch.multinomial(probs, 1).squeeze(-1)


@torch.no_grad()
def generate(
    model: nn.Module,
    seq2seq: bool,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    max_new_tokens: int,
    eos_id: int,
    pad_id: int,
    do_sample: bool = True,
    temperature: float = 1.0,
    logits_processor: LogitsProcessor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample responses with the KV cache: ``[B, P]`` prompts -> ``(response_ids [B, T], response_mask [B, T])``.

    Seq2seq models run the encoder once; causal models run the prompt once. Each later step feeds one token
    per sequence. Stops when every sequence has emitted EOS or after ``max_new_tokens``.
    """
    B = prompt_ids.shape[0]
    device = prompt_ids.device
    if seq2seq:
        encoder_outputs = model.get_encoder()(input_ids=prompt_ids, attention_mask=prompt_mask)
        step_ids = torch.full((B, 1), decoder_start_id(model), dtype=torch.long, device=device)
        out = model(
            encoder_outputs=encoder_outputs,
            attention_mask=prompt_mask,
            decoder_input_ids=step_ids,
            use_cache=True,
        )
    else:
        attn = prompt_mask.clone()
        # only the last position's logits are needed: skip the LM head on the rest of the prompt
        keep = {"logits_to_keep": 1} if accepts_kwarg(model, "logits_to_keep") else {}
        out = model(
            input_ids=prompt_ids,
            attention_mask=attn,
            position_ids=causal_position_ids(attn),
            use_cache=True,
            **keep,
        )
    tokens, masks = [], []
    finished = torch.zeros(B, dtype=torch.bool, device=device)
    for t in range(max_new_tokens):
        logits = out.logits[:, -1].float()
        if logits_processor is not None:
            generated = torch.stack(tokens, 1) if tokens else prompt_ids.new_zeros((B, 0))
            logits = logits_processor(logits, generated)
        token = _pick(logits, do_sample, temperature)
        token = torch.where(finished, torch.full_like(token, pad_id), token)
        tokens.append(token)
        masks.append((~finished).float())
        finished = finished | (token == eos_id)
        if bool(finished.all()) or t == max_new_tokens - 1:
            break
        step = token[:, None]
        if seq2seq:
            out = model(
                encoder_outputs=encoder_outputs,
                attention_mask=prompt_mask,
                decoder_input_ids=step,
                past_key_values=out.past_key_values,
                use_cache=True,
            )
        else:
            attn = torch.cat([attn, (~finished).long()[:, None]], dim=1)
            position = causal_position_ids(attn)[:, -1:]
            out = model(
                input_ids=step,
                attention_mask=attn,
                position_ids=position,
                past_key_values=out.past_key_values,
                use_cache=True,
            )
    return torch.stack(tokens, 1), torch.stack(masks, 1)


def encode_samples(
    tokenizer, samples: list[dict], max_prompt_length: int, seq2seq: bool, use_chat_template: bool
):
    """Format and encode the prompts of ``samples``: ``(prompt_ids [B, P], prompt_mask [B, P])``."""
    prompts = [format_prompt(tokenizer, s["prompt"], use_chat_template) for s in samples]
    return encode_prompts(tokenizer, prompts, max_prompt_length, seq2seq)


@torch.no_grad()
def collect_rollout(
    policy: ActorCritic,
    reference: nn.Module | None,
    tokenizer,
    samples: list[dict],
    max_new_tokens: int,
    max_prompt_length: int,
    temperature: float = 1.0,
    use_chat_template: bool = False,
    logits_processor: LogitsProcessor | None = None,
    with_values: bool = True,
) -> Rollout:
    """Generate one episode per sample and score it (policy log-probs, values, reference log-probs)."""
    device = policy.device
    prompt_ids, prompt_mask = encode_samples(
        tokenizer, samples, max_prompt_length, policy.seq2seq, use_chat_template
    )
    prompt_ids, prompt_mask = prompt_ids.to(device), prompt_mask.to(device)
    response_ids, response_mask = generate(
        policy.model,
        policy.seq2seq,
        prompt_ids,
        prompt_mask,
        max_new_tokens,
        tokenizer.eos_token_id,
        tokenizer.pad_token_id,
        do_sample=True,
        temperature=temperature,
        logits_processor=logits_processor,
    )
    scored = policy.score(
        prompt_ids, prompt_mask, response_ids, response_mask.long(), temperature, with_values=with_values
    )
    ref = None
    if reference is not None:
        ref = reference_logprobs(
            reference,
            policy.seq2seq,
            prompt_ids,
            prompt_mask,
            response_ids,
            response_mask.long(),
            temperature,
        )
    mask = response_mask
    return Rollout(
        samples=samples,
        prompt_ids=prompt_ids,
        prompt_mask=prompt_mask,
        response_ids=response_ids,
        response_mask=mask,
        completions=decode_responses(tokenizer, response_ids.cpu(), mask.cpu()),
        logprobs=scored.logprobs * mask,
        values=None if scored.values is None else scored.values * mask,
        ref_logprobs=None if ref is None else ref * mask,
    )
