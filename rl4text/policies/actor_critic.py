"""Actor-critic over a Hugging Face LM: one forward pass gives the response log-probs and values.

Causal models see ``[prompt (left-padded) | response (right-padded)]``; the logits at position ``i`` score token
``i + 1``, so the response tokens are scored by the logits at positions ``P-1 .. P+T-2``. Encoder-decoder models
encode the prompt and decode ``[decoder_start | response[:-1]]``; the decoder logits at ``t`` score ``response[t]``.
The value of the state before response token ``t`` is read from the same hidden state that scores it.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import inspect
import warnings
from dataclasses import dataclass

import torch
from torch import nn

from rl4text.policies.scoring import MASKED_LOGIT, as_bool_mask, chunked_entropy, selective_logprobs


@dataclass
class ScoreOutput:
    """Scores of a batch of responses. ``B`` episodes, ``T`` response tokens, ``V`` vocabulary."""

    logits: torch.Tensor | None
    """``[B, T, V]`` float32, divided by the sampling temperature and masked; only with ``keep_logits=True``
    (TRPO's KL needs whole distributions; everything else reads ``logprobs`` and ``entropy``)."""
    logprobs: torch.Tensor
    """``[B, T]`` log-probs of the response tokens under the tempered (and masked) distribution."""
    values: torch.Tensor | None
    """``[B, T]`` critic values V(s_t), or None when not asked for."""
    entropy: torch.Tensor | None = None
    """``[B, T]`` entropy of each step's tempered (and masked) distribution; differentiable only when asked."""


def apply_action_mask(logits: torch.Tensor, action_mask: torch.Tensor | None) -> torch.Tensor:
    """Renormalise onto allowed actions: ``logits [..., V]``, ``action_mask [..., V]`` bool (True = allowed)."""
    if action_mask is None:
        return logits
    return logits.masked_fill(~action_mask, MASKED_LOGIT)


@functools.cache
def _forward_params(cls: type) -> frozenset[str]:
    return frozenset(inspect.signature(cls.forward).parameters)


def unwrapped(model: nn.Module) -> nn.Module:
    """The Hugging Face model under a PEFT wrapper (or the reference wrapper of :mod:`rl4text.policies.lora`)."""
    while True:
        inner = getattr(model, "get_base_model", None)
        if inner is None:
            return model
        base = inner()
        if base is model:
            return model
        model = base


def accepts_kwarg(model: nn.Module, name: str) -> bool:
    """Does the model's ``forward`` take keyword ``name`` (e.g. ``logits_to_keep``, not in every architecture)?

    Read from the wrapped Hugging Face class: PEFT's wrapper takes ``**kwargs`` and passes them on."""
    return name in _forward_params(type(unwrapped(model)))


def causal_position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions that skip left padding: the first real token is at position 0. ``[B, L] -> [B, L]``."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def decoder_start_id(model: nn.Module) -> int:
    start = model.config.decoder_start_token_id
    if start is None:
        start = getattr(model.generation_config, "decoder_start_token_id", None)
    if start is None:
        raise ValueError(f"{type(model).__name__} has no decoder_start_token_id in its config")
    return int(start)


def new_cache(model: nn.Module, seq2seq: bool):
    """An empty KV cache for ``model``: a ``DynamicCache`` (causal), or an ``EncoderDecoderCache`` of two
    (decoder self-attention, cross-attention) for seq2seq. Passed as ``cache=`` and read back from ``out.cache``,
    the API of transformers >= 5.24 (``past_key_values`` is deprecated there and removed in 5.40)."""
    from transformers import DynamicCache, EncoderDecoderCache

    if seq2seq:
        return EncoderDecoderCache(DynamicCache(config=model.config), DynamicCache(config=model.config))
    return DynamicCache(config=model.config)


def prompt_groups(
    prompt_ids: torch.Tensor, prompt_mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Rows with identical prompts (tokens and padding), e.g. the k samples of a prompt in RLOO/GRPO.

    ``(first [U], inverse [B])``: ``prompt_ids[first]`` are the ``U`` distinct prompts (each at its first row) and
    ``inverse[b]`` is the distinct prompt of row ``b``; None when all ``B`` prompts are distinct."""
    B = prompt_ids.shape[0]
    if B < 2:
        return None
    key = torch.cat([prompt_ids, prompt_mask.to(prompt_ids.dtype)], dim=1)
    unique, inverse = torch.unique(key, dim=0, return_inverse=True)
    if unique.shape[0] == B:
        return None
    rows = torch.arange(B, device=prompt_ids.device)
    first = torch.full((unique.shape[0],), B, dtype=torch.long, device=prompt_ids.device)
    first = first.scatter_reduce(0, inverse, rows, reduce="amin")
    return first, inverse


def encode_shared(model: nn.Module, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, groups):
    """Encoder outputs ``[B, P, H]`` computed once per distinct prompt (``groups`` from :func:`prompt_groups`)
    and gathered back to every row (differentiably: each prompt's gradient is the sum over its samples);
    ``groups=None``: the encoder over every row."""
    from transformers.modeling_outputs import BaseModelOutput

    if groups is None:
        return model.get_encoder()(input_ids=prompt_ids, attention_mask=prompt_mask)
    first, inverse = groups
    enc = model.get_encoder()(input_ids=prompt_ids[first], attention_mask=prompt_mask[first])
    return BaseModelOutput(last_hidden_state=enc.last_hidden_state.index_select(0, inverse))


def prefill_shared(model: nn.Module, prompt_ids, attention_mask, position_ids, groups, **kwargs):
    """Run a causal model once per distinct prompt with a fresh KV cache, then give every row its prompt's keys
    and values; ``(output of the distinct rows, cache [B, ...])``. Differentiable (``index_select``). A cache
    the model did not fill (a checkpointed differentiable pass drops it) is an error, never a wrong score."""
    first, inverse = groups
    cache = new_cache(model, False)
    out = model(
        input_ids=prompt_ids[first],
        attention_mask=attention_mask[first],
        position_ids=position_ids[first],
        cache=cache,
        use_cache=True,
        **kwargs,
    )
    if cache.get_seq_length() != prompt_ids.shape[1]:
        raise RuntimeError(
            f"{type(unwrapped(model)).__name__} did not keep the shared prompt's KV cache (gradient "
            "checkpointing in train mode?); score without share_prompts"
        )
    cache.reorder_cache(inverse)  # index_select on every layer's keys and values: U rows -> B rows
    return out, cache


def sequence_logits(
    model: nn.Module,
    seq2seq: bool,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    response_ids: torch.Tensor,
    response_mask: torch.Tensor,
    output_hidden: bool = False,
    logits: bool = True,
    share_prompts: bool = False,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Logits ``[B, T, V]`` scoring each response token, and the last hidden states ``[B, T, H]`` if asked.

    ``share_prompts``: rows with the same prompt (:func:`prompt_groups`) share one pass over it -- seq2seq models
    encode each distinct prompt once; causal models run each distinct prompt (but its last token) once into a KV
    cache and then only ``[last prompt token | response[:-1]]`` per row. The same function of the weights (equal
    to float rounding, ``tests/test_shared_prompts.py``); nothing changes when every prompt is distinct."""
    T = response_ids.shape[1]
    groups = prompt_groups(prompt_ids, prompt_mask) if share_prompts else None
    if seq2seq:
        start = torch.full_like(response_ids[:, :1], decoder_start_id(model))
        dec_ids = torch.cat([start, response_ids[:, :-1]], dim=1)
        dec_mask = torch.cat([torch.ones_like(response_mask[:, :1]), response_mask[:, :-1]], dim=1)
        source = (
            {"input_ids": prompt_ids}
            if groups is None
            else {"encoder_outputs": encode_shared(model, prompt_ids, prompt_mask, groups)}
        )
        out = model(
            **source,
            attention_mask=prompt_mask,
            decoder_input_ids=dec_ids,
            decoder_attention_mask=dec_mask,
            output_hidden_states=output_hidden,
            use_cache=False,
        )
        hidden = out.decoder_hidden_states[-1] if output_hidden else None
        return (out.logits if logits else None), hidden
    P = prompt_ids.shape[1]
    if groups is not None and P > 1:
        return _shared_causal_logits(
            model, prompt_ids, prompt_mask, response_ids, response_mask, groups, output_hidden, logits
        )
    input_ids = torch.cat([prompt_ids, response_ids], dim=1)
    mask = torch.cat([prompt_mask, response_mask], dim=1)
    kwargs = {}
    if accepts_kwarg(model, "logits_to_keep"):  # skip the LM head on prompt positions
        kwargs["logits_to_keep"] = T + 1 if logits else 1
    out = model(
        input_ids=input_ids,
        attention_mask=mask,
        position_ids=causal_position_ids(mask),
        output_hidden_states=output_hidden,
        use_cache=False,
        **kwargs,
    )
    hidden = out.hidden_states[-1][:, P - 1 : P + T - 1] if output_hidden else None
    return (out.logits[:, -(T + 1) : -1] if logits else None), hidden


def _shared_causal_logits(
    model, prompt_ids, prompt_mask, response_ids, response_mask, groups, output_hidden, logits
):
    """:func:`sequence_logits` of a causal model over shared prompts: ``prompt[:, :P-1]`` once per distinct
    prompt into the cache, then ``[prompt[:, P-1] | response[:, :-1]]`` for every row, whose ``T`` positions
    score the ``T`` response tokens."""
    P, T = prompt_ids.shape[1], response_ids.shape[1]
    mask = torch.cat([prompt_mask, response_mask], dim=1)
    positions = causal_position_ids(mask)
    keep = {"logits_to_keep": 1} if accepts_kwarg(model, "logits_to_keep") else {}
    _, cache = prefill_shared(
        model, prompt_ids[:, : P - 1], mask[:, : P - 1], positions[:, : P - 1], groups, **keep
    )
    out = model(
        input_ids=torch.cat([prompt_ids[:, P - 1 :], response_ids[:, :-1]], dim=1),
        attention_mask=mask[:, : P + T - 1],
        position_ids=positions[:, P - 1 : P + T - 1],
        cache=cache,
        use_cache=True,
        output_hidden_states=output_hidden,
        **({"logits_to_keep": 0 if logits else 1} if keep else {}),
    )
    hidden = out.hidden_states[-1] if output_hidden else None
    return (out.logits if logits else None), hidden


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """``log softmax(logits)[tokens]``: ``[B, T, V], [B, T] -> [B, T]`` (the full-vocabulary reference formula;
    scoring uses :func:`rl4text.policies.scoring.selective_logprobs`, equal to it to float rounding)."""
    return torch.log_softmax(logits, dim=-1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


class ActorCritic(nn.Module):
    """A language model (the actor) with a scalar value head (the critic).

    ``critic="shared"`` puts the value head on the policy's last hidden state (one forward pass for both);
    ``"separate"`` gives the critic its own copy of the base model, so value gradients leave the policy alone.
    """

    def __init__(self, model: nn.Module, seq2seq: bool, critic: str = "shared"):
        super().__init__()
        self.model = model
        self.seq2seq = seq2seq
        hidden = model.config.get_text_config().hidden_size
        self.value_head = nn.Linear(hidden, 1, dtype=torch.float32)
        # Start the critic at V = 0: a randomly initialised head on a pretrained LM's hidden states outputs O(1)
        # values, which swamp rewards of O(0.1) in the GAE advantages until the critic has learned (measured on
        # SmolLM2 + chrF: explained variance -9 to -24 over the first iterations). Gradients still reach the weights.
        nn.init.zeros_(self.value_head.weight)
        nn.init.zeros_(self.value_head.bias)
        self.critic_model = copy.deepcopy(model) if critic == "separate" else None
        if self.critic_model is not None:
            self.critic_model.requires_grad_(True)

    @property
    def device(self) -> torch.device:
        return self.value_head.weight.device

    def forward(self, *args, **kwargs) -> ScoreOutput:
        """:meth:`score`: a DDP/FSDP/DeepSpeed wrapper hides ``score`` but calls ``forward`` (and must, for its
        gradient hooks), so updates call the (wrapped) module itself."""
        return self.score(*args, **kwargs)

    def score(
        self,
        prompt_ids: torch.Tensor,
        prompt_mask: torch.Tensor,
        response_ids: torch.Tensor,
        response_mask: torch.Tensor,
        temperature: float = 1.0,
        with_values: bool = True,
        action_mask=None,
        *,
        keep_logits: bool = False,
        entropy: bool = False,
        entropy_grad: bool = False,
    ) -> ScoreOutput:
        """Log-probs, values (and optionally entropy and logits) of a batch of responses (:class:`ScoreOutput`).

        ``action_mask: [B, T, V]`` bool or :class:`~rl4text.policies.scoring.PackedMask` restricts each step to
        the allowed tokens (NLPO): the log-probs are those of the masked, renormalised distribution the tokens
        were sampled from. The LM head runs on the response positions only and the log-softmax is selective
        and chunked; ``keep_logits`` also returns the tempered, masked ``[B, T, V]`` float32 logits.
        """
        shared = with_values and self.critic_model is None
        share_prompts = self.prompts_shared()
        with self.scoring_mode():
            logits, hidden = sequence_logits(
                self.model,
                self.seq2seq,
                prompt_ids,
                prompt_mask,
                response_ids,
                response_mask,
                output_hidden=shared,
                share_prompts=share_prompts,
            )
            allowed = as_bool_mask(action_mask)
            logprobs = selective_logprobs(logits, response_ids, temperature, allowed)
            ent = chunked_entropy(logits, temperature, allowed, grad=entropy_grad) if entropy else None
            kept = apply_action_mask(logits.float() / temperature, allowed) if keep_logits else None
            values = None
            if with_values:
                if not shared:
                    _, hidden = sequence_logits(
                        self.critic_model,
                        self.seq2seq,
                        prompt_ids,
                        prompt_mask,
                        response_ids,
                        response_mask,
                        output_hidden=True,
                        logits=False,
                        share_prompts=share_prompts,
                    )
                values = self.value_head(hidden.float()).squeeze(-1)
        return ScoreOutput(logits=kept, logprobs=logprobs, values=values, entropy=ent)

    gradient_checkpointing = False
    """Set by :func:`enable_gradient_checkpointing`: differentiable scoring passes recompute activations."""
    share_prompts = True
    """Samples of the same prompt share one pass over it in every scoring pass (``rollout.share_prompts``)."""

    def prompts_shared(self) -> bool:
        """Whether this scoring pass shares prompts: not for a causal model under gradient checkpointing with
        gradients on (Hugging Face drops the KV cache there; a seq2seq encoder output is shared all the same)."""
        if not self.share_prompts:
            return False
        return self.seq2seq or not (self.gradient_checkpointing and torch.is_grad_enabled())

    autocast_dtype: torch.dtype | None = None
    """bfloat16 autocast around every forward pass (``model.autocast``), or None."""

    def autocast(self):
        """The autocast context of this policy's forward passes (a no-op without ``model.autocast``)."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def scoring_mode(self):
        """The context of every scoring forward pass (autocast when ``model.autocast`` is set). With gradient
        checkpointing a differentiable pass puts the model in train mode (Hugging Face checkpoints only there) and
        leaves it so, since the backward's recomputation must run in the same mode; :meth:`generation_mode` (the
        rollout, and ``Algorithm.step`` after the optimiser step) puts it back. Every dropout is at p=0."""
        if self.gradient_checkpointing and torch.is_grad_enabled() and not self.model.training:
            self.model.train()
        return self.autocast()

    def generation_mode(self) -> None:
        """Eval mode for sampling (some models, e.g. T5, turn the KV cache off in train mode with checkpointing)."""
        if self.model.training:
            self.model.eval()


def enable_gradient_checkpointing(policy: ActorCritic) -> None:
    """Recompute the trunk's activations in the backward pass (``train.gradient_checkpointing``)."""
    base = unwrapped(policy.model)
    enable = getattr(
        base, "activation_checkpointing_enable", None
    )  # transformers >= 5.24; the old name warns
    if enable is not None:
        enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    base.config.use_cache = False  # generation passes use_cache=True explicitly
    policy.gradient_checkpointing = True  # train mode during differentiable passes: ActorCritic.scoring_mode


def warn_if_emulated_bf16(device: torch.device) -> None:
    """``model.autocast`` on a CPU without native bfloat16 (AVX-512 BF16 / AMX) runs, but slower than fp32."""
    if device.type == "cpu" and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        warnings.warn(
            "model.autocast=true on a CPU without AVX-512 BF16 or AMX: bfloat16 matmuls are emulated there and "
            "slower than float32; set model.autocast=false (the CPU default)",
            stacklevel=2,
        )


@torch.inference_mode()
def reference_logprobs(
    ref_model: nn.Module,
    seq2seq: bool,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    response_ids: torch.Tensor,
    response_mask: torch.Tensor,
    temperature: float = 1.0,
    share_prompts: bool = False,
) -> torch.Tensor:
    """Log-probs ``[B, T]`` of the response tokens under the frozen reference model (same temperature), under
    ``torch.inference_mode()`` (no autograd bookkeeping; the result only enters the reward). ``share_prompts``:
    one pass over each distinct prompt (:func:`sequence_logits`)."""
    logits, _ = sequence_logits(
        ref_model, seq2seq, prompt_ids, prompt_mask, response_ids, response_mask, share_prompts=share_prompts
    )
    return selective_logprobs(logits, response_ids, temperature)


def frozen_copy(model: nn.Module) -> nn.Module:
    """A frozen, eval-mode copy of ``model`` (the KL reference)."""
    ref = copy.deepcopy(model)
    ref.requires_grad_(False)
    ref.eval()
    return ref


@torch.no_grad()
def observation_logits(
    policy: ActorCritic, obs: dict, temperature: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Next-token logits ``[V]`` and value (scalar) for one ``TextGenEnv`` observation.

    The token-by-token path: no batching, no padding, no KV cache, one full forward over the real prompt and
    context tokens. Used to drive the env with a policy and to check the batched fast path against it.
    """
    device = policy.device

    def real(ids_key: str, mask_key: str) -> torch.Tensor:
        ids, mask = torch.as_tensor(obs[ids_key]), torch.as_tensor(obs[mask_key]).bool()
        return ids[mask].to(device)[None]

    prompt, context = (
        real("prompt_input_ids", "prompt_attention_mask"),
        real("context_input_ids", "context_attention_mask"),
    )
    trunk = policy.critic_model if policy.critic_model is not None else policy.model

    def run(model: nn.Module):
        if policy.seq2seq:
            start = torch.full((1, 1), decoder_start_id(model), dtype=torch.long, device=device)
            out = model(
                input_ids=prompt, decoder_input_ids=torch.cat([start, context], 1), output_hidden_states=True
            )
            return out.logits[0, -1], out.decoder_hidden_states[-1][0, -1]
        out = model(input_ids=torch.cat([prompt, context], 1), output_hidden_states=True)
        return out.logits[0, -1], out.hidden_states[-1][0, -1]

    logits, hidden = run(policy.model)
    if trunk is not policy.model:
        _, hidden = run(trunk)
    value = policy.value_head(hidden.float()).squeeze(-1)
    return logits.float() / temperature, value
