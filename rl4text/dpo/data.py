"""Preference pairs for DPO, encoded exactly as RL encodes prompts and responses, and scored under teacher forcing.

Pairs come from the reward model's readers (``rl4text.rm.data``: generic ``pairs`` / ``rankings`` / ``ratings``
JSON lines, HH-RLHF, SummEval, WMT22), split by whole groups so no prompt is on both sides. A prompt is formatted
and encoded by :func:`rl4text.rollout.encode_samples` (chat template, left padding and truncation for causal
models, the encoder's special tokens for seq2seq), and a response the way a rollout generates it: its own tokens
without special tokens, then EOS (:func:`rl4text.sft.encode_targets`). Log-probs come from
:func:`rl4text.policies.actor_critic.sequence_logits`, the function RL scores rollouts with.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch
from torch import nn

from rl4text.policies.actor_critic import sequence_logits, token_logprobs
from rl4text.rm.data import Group
from rl4text.sft import collate, encode_targets


@dataclass
class Pair:
    """One judgment: ``chosen`` was preferred to ``rejected`` as a response to ``prompt`` (``group``: its split unit)."""

    prompt: str
    chosen: str
    rejected: str
    group: str


def groups_to_pairs(groups: list[Group], max_per_group: int | None, rng: random.Random) -> list[Pair]:
    """Every ``(better, worse)`` pair of every group (ratings and rankings imply all pairs whose scores differ),
    at most ``max_per_group`` of a group (a seeded sample)."""
    pairs = []
    for g in groups:
        found = g.preference_pairs()
        if max_per_group is not None and len(found) > max_per_group:
            found = rng.sample(found, max_per_group)
        pairs += [Pair(g.prompt, g.completions[b], g.completions[w], g.key) for b, w in found]
    return pairs


@dataclass
class PairBatch:
    """``B`` pairs as ``2B`` sequences: rows ``[0, B)`` the chosen responses, ``[B, 2B)`` the rejected ones.

    ``prompt_ids/prompt_mask: [2B, P]`` (causal: left-padded), ``response_ids/response_mask: [2B, T]``
    (right-padded, EOS at the end of each response that fits).
    """

    prompt_ids: torch.Tensor
    prompt_mask: torch.Tensor
    response_ids: torch.Tensor
    response_mask: torch.Tensor

    def to(self, device) -> PairBatch:
        return PairBatch(
            *(
                t.to(device)
                for t in (self.prompt_ids, self.prompt_mask, self.response_ids, self.response_mask)
            )
        )


def collate_pairs(
    tokenizer,
    pairs: list[Pair],
    *,
    max_prompt_length: int,
    max_response_length: int,
    seq2seq: bool,
    use_chat_template: bool,
) -> PairBatch:
    """Encode ``pairs`` (prompts as RL encodes them, responses as a rollout generates them)."""
    samples = [{"prompt": p.prompt} for p in pairs] * 2
    targets = encode_targets(
        tokenizer, [p.chosen for p in pairs] + [p.rejected for p in pairs], max_response_length
    )
    b = collate(tokenizer, samples, targets, max_prompt_length, seq2seq, use_chat_template)
    return PairBatch(b.prompt_ids, b.prompt_mask, b.target_ids, b.target_mask)


def sequence_logprobs(model: nn.Module, seq2seq: bool, batch: PairBatch) -> torch.Tensor:
    """``[2B]`` sums of the response tokens' log-probs under teacher forcing (temperature 1); a pair's chosen and
    rejected responses share one pass over its prompt."""
    logits, _ = sequence_logits(
        model,
        seq2seq,
        batch.prompt_ids,
        batch.prompt_mask,
        batch.response_ids,
        batch.response_mask,
        share_prompts=True,
    )
    logp = token_logprobs(logits.float(), batch.response_ids)
    return (logp * batch.response_mask).sum(-1)


@torch.no_grad()
def score_pairs(
    model: nn.Module, seq2seq: bool, batches: list[PairBatch], device
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(chosen [N], rejected [N])`` summed log-probs of every pair in ``batches``, without gradients."""
    chosen, rejected = [], []
    for batch in batches:
        logp = sequence_logprobs(model, seq2seq, batch.to(device))
        half = logp.shape[0] // 2
        chosen.append(logp[:half].cpu())
        rejected.append(logp[half:].cpu())
    return torch.cat(chosen), torch.cat(rejected)
