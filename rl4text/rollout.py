"""Fast rollout: batched, KV-cached sampling, then one scoring pass each for policy (+values) and reference.

This is the same MDP as :class:`rl4text.envs.TextGenEnv` (``tests/test_equivalence.py`` forces the rollout's
tokens through the env and compares rewards and log-probs): prompts are encoded by ``rl4text.text``, each step
samples from ``softmax(logits / temperature)``, an episode ends at EOS (``terminated``) or after
``max_new_tokens`` (``truncated``), and everything after EOS is masked.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import nn

from rl4text.policies.actor_critic import (
    ActorCritic,
    accepts_kwarg,
    causal_position_ids,
    decoder_start_id,
    encode_shared,
    new_cache,
    prefill_shared,
    prompt_groups,
    reference_logprobs,
)
from rl4text.policies.scoring import PackedMask
from rl4text.text import decode_responses, encode_prompts, format_prompt

# (logits [B, V] of the current step, generated tokens so far [B, t]) -> logits [B, V]; e.g. NLPO's action mask.
LogitsProcessor = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class ActionMasker(Protocol):
    """Restricts the action space (NLPO): the same mask during sampling and when the tokens are scored."""

    def processor(
        self, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, temperature: float
    ) -> LogitsProcessor:
        """A logits processor for one generation batch sampled at ``temperature`` (tempered logits in, masked out)."""
        ...

    def sequence_mask(
        self,
        prompt_ids: torch.Tensor,
        prompt_mask: torch.Tensor,
        response_ids: torch.Tensor,
        response_mask: torch.Tensor,
        temperature: float,
    ) -> torch.Tensor:
        """``[B, T, V]`` bool: the tokens allowed at each response step (True = allowed)."""
        ...


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
    """``[B, T]`` reference-model log-probs of the sampled tokens (for the KL penalty, never masked)."""
    action_mask: PackedMask | None = None
    """``[B, T, V]`` allowed tokens at each step (bit-packed), when an :class:`ActionMasker` restricted sampling."""
    temperature: float = 1.0
    """The sampling temperature; ``logprobs`` are of ``softmax(logits / temperature)`` and updates score under it."""

    @property
    def lengths(self) -> torch.Tensor:
        """``[B]`` response lengths in tokens (EOS included)."""
        return self.response_mask.sum(-1)

    def ended_with_eos(self, eos_id: int) -> torch.Tensor:
        """``[B]`` bool: the episode terminated on EOS rather than being truncated."""
        last = (self.lengths.long() - 1).clamp(min=0)
        return (self.response_ids.gather(1, last[:, None]).squeeze(1) == eos_id) & (self.lengths > 0)


def _pick(tempered_logits: torch.Tensor, do_sample: bool) -> torch.Tensor:
    """Sample from ``softmax(tempered_logits)`` (the distribution the log-probs are scored under), or argmax."""
    if not do_sample:
        return tempered_logits.argmax(-1)
    return torch.multinomial(torch.softmax(tempered_logits, dim=-1), 1).squeeze(-1)


class IncrementalDecoder:
    """Next-token logits ``[B, V]`` of a batch, advanced one token at a time with the KV cache.

    Seq2seq models run the encoder once; causal models run the prompt once (LM head on the last position only).
    Shared by :func:`generate` and anything that must follow the same states in lockstep (NLPO's mask policy).
    """

    def __init__(
        self,
        model: nn.Module,
        seq2seq: bool,
        prompt_ids: torch.Tensor,
        prompt_mask: torch.Tensor,
        *,
        output_hidden: bool = False,
        share_prompts: bool = False,
    ):
        self.model, self.seq2seq, self.prompt_mask = model, seq2seq, prompt_mask
        self.output_hidden = output_hidden
        self.hidden: torch.Tensor | None = None
        """``[B, H]`` the last layer's hidden state at the current position (with ``output_hidden``)."""
        self.cache = new_cache(model, seq2seq)
        # share_prompts: the samples of one prompt share its encoder pass (seq2seq) or prefill (causal)
        groups = prompt_groups(prompt_ids, prompt_mask) if share_prompts else None
        if seq2seq:
            self.encoder_outputs = encode_shared(model, prompt_ids, prompt_mask, groups)
            start = torch.full((prompt_ids.shape[0], 1), decoder_start_id(model), dtype=torch.long)
            out = model(
                encoder_outputs=self.encoder_outputs,
                attention_mask=prompt_mask,
                decoder_input_ids=start.to(prompt_ids.device),
                cache=self.cache,
                use_cache=True,
                output_hidden_states=output_hidden,
            )
        else:
            self.attn = prompt_mask.clone()
            # only the last position's logits are needed: skip the LM head on the rest of the prompt
            keep = {"logits_to_keep": 1} if accepts_kwarg(model, "logits_to_keep") else {}
            if groups is not None:
                out, _ = prefill_shared(
                    model,
                    prompt_ids,
                    self.attn,
                    causal_position_ids(self.attn),
                    groups,
                    output_hidden_states=output_hidden,
                    **keep,
                )
                self._read(out, rows=groups[1])  # the distinct prompts' outputs, one per row
                return
            out = model(
                input_ids=prompt_ids,
                attention_mask=self.attn,
                position_ids=causal_position_ids(self.attn),
                cache=self.cache,
                use_cache=True,
                output_hidden_states=output_hidden,
                **keep,
            )
        self._read(out)

    def _read(self, out, rows: torch.Tensor | None = None) -> None:
        """Take the cache and the last position's logits (and hidden state) from ``out``; ``rows`` gathers them
        from a shared prefill's distinct prompts to every row (its cache is already per row)."""
        self.cache = out.cache
        self.logits = out.logits[:, -1].float()
        if self.output_hidden:
            states = out.decoder_hidden_states if self.seq2seq else out.hidden_states
            self.hidden = states[-1][:, -1]
        if rows is not None:
            self.logits = self.logits.index_select(0, rows)
            self.hidden = None if self.hidden is None else self.hidden.index_select(0, rows)

    def advance(self, token: torch.Tensor, alive: torch.Tensor) -> torch.Tensor:
        """Feed ``token: [B]``; rows not ``alive: [B]`` (finished) are fed padding the model does not attend to."""
        step = token[:, None]
        if self.seq2seq:
            out = self.model(
                encoder_outputs=self.encoder_outputs,
                attention_mask=self.prompt_mask,
                decoder_input_ids=step,
                cache=self.cache,
                use_cache=True,
                output_hidden_states=self.output_hidden,
            )
        else:
            self.attn = torch.cat([self.attn, alive.long()[:, None]], dim=1)
            out = self.model(
                input_ids=step,
                attention_mask=self.attn,
                position_ids=causal_position_ids(self.attn)[:, -1:],
                cache=self.cache,
                use_cache=True,
                output_hidden_states=self.output_hidden,
            )
        self._read(out)
        return self.logits


@dataclass
class StepScores:
    """What the sampling loop records when asked (``generate(..., record=StepScores(...))``): the behaviour
    policy's log-prob of every sampled token and, with ``hidden=True``, the trunk's last hidden state that
    scored it -- the very numbers a separate scoring pass would recompute. ``B`` episodes, ``T`` steps."""

    hidden: bool = False
    """Also keep the ``[B, H]`` hidden state of every step (for the shared critic's values)."""
    masked: bool = False
    """Log-probs of the processed (masked) distribution (NLPO) rather than of the tempered logits alone."""
    logprobs: list[torch.Tensor] = field(default_factory=list)
    states: list[torch.Tensor] = field(default_factory=list)

    def add(self, tempered: torch.Tensor, processed: torch.Tensor, token: torch.Tensor, hidden) -> None:
        logits = processed if self.masked else tempered
        self.logprobs.append(torch.log_softmax(logits, -1).gather(-1, token[:, None]).squeeze(-1))
        if self.hidden:
            self.states.append(hidden)

    def stacked(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(logprobs [B, T], hidden [B, T, H] or None)``."""
        return torch.stack(self.logprobs, 1), (torch.stack(self.states, 1) if self.hidden else None)


@torch.no_grad()
def generate(
    model: nn.Module,
    seq2seq: bool,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    *,
    max_new_tokens: int,
    eos_id: int,
    pad_id: int,
    do_sample: bool = True,
    temperature: float = 1.0,
    logits_processor: LogitsProcessor | None = None,
    record: StepScores | None = None,
    share_prompts: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample responses with the KV cache: ``[B, P]`` prompts -> ``(response_ids [B, T], response_mask [B, T])``.

    ``logits_processor(logits / temperature, generated)`` may reshape each step's distribution (e.g. NLPO's mask);
    stops when every sequence has emitted EOS or after ``max_new_tokens``. ``record`` collects each step's
    log-prob (and hidden state) of the sampled token, so a rollout can skip its scoring pass. ``share_prompts``:
    rows with the same prompt share one prefill (causal) or encoder pass (seq2seq), its cache copied to each.
    """
    B = prompt_ids.shape[0]
    want_hidden = record is not None and record.hidden
    decoder = IncrementalDecoder(
        model, seq2seq, prompt_ids, prompt_mask, output_hidden=want_hidden, share_prompts=share_prompts
    )
    tokens, masks = [], []
    finished = torch.zeros(B, dtype=torch.bool, device=prompt_ids.device)
    for t in range(max_new_tokens):
        tempered = logits = decoder.logits / temperature
        if logits_processor is not None:
            generated = torch.stack(tokens, 1) if tokens else prompt_ids.new_zeros((B, 0))
            logits = logits_processor(logits, generated)
        token = _pick(logits, do_sample)
        token = torch.where(finished, torch.full_like(token, pad_id), token)
        if record is not None:
            record.add(tempered, logits, token, decoder.hidden)
        tokens.append(token)
        masks.append((~finished).float())
        finished = finished | (token == eos_id)
        if bool(finished.all()) or t == max_new_tokens - 1:
            break
        decoder.advance(token, ~finished)
    return torch.stack(tokens, 1), torch.stack(masks, 1)


def encode_samples(
    tokenizer, samples: list[dict], max_prompt_length: int, seq2seq: bool, use_chat_template: bool
):
    """Format and encode the prompts of ``samples``: ``(prompt_ids [B, P], prompt_mask [B, P])``."""
    prompts = [format_prompt(tokenizer, s["prompt"], use_chat_template) for s in samples]
    return encode_prompts(tokenizer, prompts, max_prompt_length, seq2seq)


def _sample(
    policy: ActorCritic,
    tokenizer,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    *,
    generator,
    max_new_tokens: int,
    temperature: float,
    logits_processor: LogitsProcessor | None,
    record: StepScores | None,
    share_prompts: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample responses through ``generator`` (a :class:`rl4text.generation.Generator`) or, by default, the
    KV-cached :func:`generate` on ``policy.model``; ``record`` collects the loop's scores when given."""
    if generator is not None:
        extra = {"record": record} if record is not None else {}
        if share_prompts and getattr(generator, "shares_prompts", False):
            extra["share_prompts"] = True
        return generator.generate(
            prompt_ids,
            prompt_mask,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            do_sample=True,
            logits_processor=logits_processor,
            **extra,
        )
    return generate(
        policy.model,
        policy.seq2seq,
        prompt_ids,
        prompt_mask,
        max_new_tokens=max_new_tokens,
        eos_id=tokenizer.eos_token_id,
        pad_id=tokenizer.pad_token_id,
        do_sample=True,
        temperature=temperature,
        logits_processor=logits_processor,
        record=record,
        share_prompts=share_prompts,
    )


def _behaviour_scores(
    policy,
    record,
    prompt_ids,
    prompt_mask,
    response_ids,
    response_mask,
    temperature,
    with_values,
    action_mask,
):
    """The behaviour policy's ``(logprobs [B, T], values [B, T] or None)``: from the sampling loop's ``record``
    or, without one, from a separate scoring pass."""
    if record is not None:
        logprobs, hidden = record.stacked()
        values = policy.value_head(hidden.float()).squeeze(-1) if hidden is not None else None
        return logprobs, values
    scored = policy.score(
        prompt_ids,
        prompt_mask,
        response_ids,
        response_mask.long(),
        temperature,
        with_values=with_values,
        action_mask=action_mask,
    )
    return scored.logprobs, scored.values


@torch.no_grad()
def collect_rollout(
    policy: ActorCritic,
    reference: nn.Module | None,
    tokenizer,
    samples: list[dict],
    *,
    max_new_tokens: int,
    max_prompt_length: int,
    temperature: float = 1.0,
    use_chat_template: bool = False,
    with_values: bool = True,
    action_masker: ActionMasker | None = None,
    logits_processor: LogitsProcessor | None = None,
    score_from_generation: bool = True,
    generator=None,
    share_prompts: bool | None = None,
) -> Rollout:
    """Generate one episode per sample and score it (policy log-probs, values, reference log-probs).

    With an ``action_masker`` (NLPO) sampling and the policy's log-probs use the masked distribution; the
    reference log-probs (for the KL penalty) stay unmasked. ``logits_processor`` alone only shapes sampling.
    ``score_from_generation`` takes the behaviour log-probs and (shared-critic) values from the sampling loop
    itself instead of a second forward pass (equal to ~1e-6 in fp32, ``tests/test_fast_scoring.py``); a separate
    critic always gets its own scoring pass, and so does a ``generator`` that cannot record the loop's scores.
    ``generator``: an ``rl4text.generation.Generator`` backend (default: :func:`generate` on ``policy.model``).
    ``share_prompts`` (default ``policy.share_prompts``): one pass over each distinct prompt, in generation too.
    """
    device = policy.device
    if share_prompts is None:
        share_prompts = policy.share_prompts
    policy.generation_mode()
    prompt_ids, prompt_mask = encode_samples(
        tokenizer, samples, max_prompt_length, policy.seq2seq, use_chat_template
    )
    prompt_ids, prompt_mask = prompt_ids.to(device), prompt_mask.to(device)
    from_gen = score_from_generation and not (with_values and policy.critic_model is not None)
    if generator is not None and not getattr(generator, "records_scores", False):
        from_gen = False
    record = StepScores(hidden=with_values, masked=action_masker is not None) if from_gen else None
    processor = (
        action_masker.processor(prompt_ids, prompt_mask, temperature) if action_masker else logits_processor
    )
    with policy.autocast():
        response_ids, response_mask = _sample(
            policy,
            tokenizer,
            prompt_ids,
            prompt_mask,
            generator=generator,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            logits_processor=processor,
            record=record,
            share_prompts=share_prompts,
        )
        action_mask = None
        if action_masker is not None:
            action_mask = PackedMask.pack(
                action_masker.sequence_mask(
                    prompt_ids, prompt_mask, response_ids, response_mask.long(), temperature
                )
            )
        logprobs, values = _behaviour_scores(
            policy,
            record,
            prompt_ids,
            prompt_mask,
            response_ids,
            response_mask,
            temperature,
            with_values,
            action_mask,
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
                share_prompts=share_prompts,
            ).clone()  # out of inference mode
    mask = response_mask
    return Rollout(
        samples=samples,
        prompt_ids=prompt_ids,
        prompt_mask=prompt_mask,
        response_ids=response_ids,
        response_mask=mask,
        completions=decode_responses(tokenizer, response_ids.cpu(), mask.cpu()),
        logprobs=logprobs * mask,
        values=None if values is None else values * mask,
        ref_logprobs=None if ref is None else ref * mask,
        action_mask=action_mask,
        temperature=temperature,
    )
