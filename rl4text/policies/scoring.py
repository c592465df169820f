"""Scoring only what was sampled: the chosen token's log-prob and the entropy, chunked, without full copies.

``log softmax(logits / temperature)[token]`` over a ``[B, T, V]`` tensor the naive way materialises two or three
``[B, T, V]`` float32 tensors (the tempered copy, the log-softmax, and what autograd keeps of them). Here each
chunk of rows is converted to float32, tempered and masked on its own; the forward keeps only the log-sum-exp of
every row, and the backward recomputes the softmax chunk by chunk from the logits the model already holds.
NLPO's allowed-token masks are kept bit-packed (:class:`PackedMask`, one bit per token instead of one byte).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

MASKED_LOGIT = -1e9  # finite, so masked tokens get probability 0 without NaNs in entropies or log-probs
CHUNK_ROWS = 1024
"""Rows (response positions) per chunk: 1024 x 49k float32 is ~200 MB at most, whatever the batch."""


def _tempered(logits: torch.Tensor, temperature: float, allowed: torch.Tensor | None) -> torch.Tensor:
    x = logits.float()
    if temperature != 1.0:
        x = x / temperature
    if allowed is not None:
        x = x.masked_fill(~allowed, MASKED_LOGIT)
    return x


class _SelectiveLogSoftmax(torch.autograd.Function):
    """``[N, V]`` logits, ``[N]`` tokens -> ``[N]`` ``log softmax(mask(logits / t))[token]``, chunked."""

    @staticmethod
    def forward(ctx, logits, tokens, temperature, allowed, chunk):
        out = torch.empty(logits.shape[0], dtype=torch.float32, device=logits.device)
        lse = torch.empty_like(out)
        for s in range(0, logits.shape[0], chunk):
            x = _tempered(
                logits[s : s + chunk], temperature, None if allowed is None else allowed[s : s + chunk]
            )
            lse[s : s + chunk] = torch.logsumexp(x, dim=-1)
            out[s : s + chunk] = x.gather(-1, tokens[s : s + chunk, None]).squeeze(-1) - lse[s : s + chunk]
        ctx.save_for_backward(logits, tokens, lse, allowed if allowed is not None else torch.empty(0))
        ctx.temperature, ctx.chunk, ctx.masked = temperature, chunk, allowed is not None
        return out

    @staticmethod
    def backward(ctx, grad_out):
        logits, tokens, lse, allowed = ctx.saved_tensors
        grad = torch.empty_like(logits)
        for s in range(0, logits.shape[0], ctx.chunk):
            e = s + ctx.chunk
            x = _tempered(logits[s:e], ctx.temperature, allowed[s:e] if ctx.masked else None)
            g = grad_out[s:e, None].float()
            d = -torch.exp(x - lse[s:e, None]) * g  # masked tokens: exp(-1e9 - lse) = 0, no gradient
            d.scatter_add_(-1, tokens[s:e, None], g)
            grad[s:e] = (d / ctx.temperature).to(grad.dtype)
        return grad, None, None, None, None


def selective_logprobs(
    logits: torch.Tensor,
    tokens: torch.Tensor,
    temperature: float = 1.0,
    allowed: torch.Tensor | None = None,
    *,
    chunk: int = CHUNK_ROWS,
) -> torch.Tensor:
    """``log softmax(logits / temperature)[tokens]``: ``[..., V], [...] -> [...]`` float32, differentiable.

    ``allowed: [..., V]`` bool restricts each distribution to the True tokens (renormalised, NLPO). Equal to the
    full log-softmax to float rounding; no ``[..., V]`` float32 copy is kept for the backward pass."""
    shape = tokens.shape
    V = logits.shape[-1]
    flat_allowed = None if allowed is None else allowed.reshape(-1, V)
    out = _SelectiveLogSoftmax.apply(
        logits.reshape(-1, V), tokens.reshape(-1), float(temperature), flat_allowed, chunk
    )
    return out.reshape(shape)


def chunked_entropy(
    logits: torch.Tensor,
    temperature: float = 1.0,
    allowed: torch.Tensor | None = None,
    *,
    grad: bool = False,
    chunk: int = CHUNK_ROWS,
) -> torch.Tensor:
    """Entropy ``[...]`` of ``softmax(mask(logits / temperature))`` over ``logits: [..., V]``, chunk by chunk.

    ``grad=False`` (a logged statistic) computes it without autograd; ``grad=True`` (an entropy bonus) keeps
    each chunk's softmax for the backward pass."""
    V = logits.shape[-1]
    flat = logits.reshape(-1, V)
    flat_allowed = None if allowed is None else allowed.reshape(-1, V)
    parts = []
    with torch.set_grad_enabled(grad and torch.is_grad_enabled()):
        for s in range(0, flat.shape[0], chunk):
            x = _tempered(
                flat[s : s + chunk],
                temperature,
                None if flat_allowed is None else flat_allowed[s : s + chunk],
            )
            logp = torch.log_softmax(x, dim=-1)
            parts.append(-(logp.exp() * logp).sum(-1))
    out = torch.cat(parts) if parts else flat.new_zeros(0, dtype=torch.float32)
    return out.reshape(logits.shape[:-1])


@dataclass
class PackedMask:
    """``[B, T, V]`` bool allowed-token masks stored as ``bits: [B, T, ceil(V / 8)]`` uint8 (8x smaller).

    Indexing by episodes (``mask[index]``) selects rows without unpacking; :meth:`unpack` gives the bool tensor
    for one minibatch at a time."""

    bits: torch.Tensor
    vocab_size: int

    @classmethod
    def pack(cls, allowed: torch.Tensor) -> PackedMask:
        V = allowed.shape[-1]
        pad = (-V) % 8
        a = torch.nn.functional.pad(allowed.to(torch.uint8), (0, pad)).reshape(*allowed.shape[:-1], -1, 8)
        weights = torch.tensor([1, 2, 4, 8, 16, 32, 64, 128], dtype=torch.uint8, device=allowed.device)
        return cls((a * weights).sum(-1, dtype=torch.uint8), V)

    def unpack(self) -> torch.Tensor:
        shifts = torch.arange(8, dtype=torch.uint8, device=self.bits.device)
        a = (self.bits[..., None] >> shifts) & 1
        return a.reshape(*self.bits.shape[:-1], -1)[..., : self.vocab_size].bool()

    def __getitem__(self, index) -> PackedMask:
        return PackedMask(self.bits[index], self.vocab_size)

    @property
    def shape(self) -> tuple[int, ...]:
        return (*self.bits.shape[:-1], self.vocab_size)

    def counts(self) -> torch.Tensor:
        """``[B, T]`` number of allowed tokens at each step."""
        table = torch.tensor(
            [bin(i).count("1") for i in range(256)], dtype=torch.int32, device=self.bits.device
        )
        return table[self.bits.long()].sum(-1)

    @property
    def nbytes(self) -> int:
        return self.bits.numel()


def as_bool_mask(mask: torch.Tensor | PackedMask | None) -> torch.Tensor | None:
    """The ``[B, T, V]`` bool form of an action mask (packed or not), or None."""
    return mask.unpack() if isinstance(mask, PackedMask) else mask
