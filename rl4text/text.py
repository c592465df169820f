"""Tokenisation conventions shared by the environment, the fast rollout and evaluation.

Keeping them in one place is what makes the env and the rollout the same MDP: prompts are formatted,
truncated and padded here, and completions decoded here.
"""

from __future__ import annotations

import torch


def uses_chat_template(setting: bool | None, tokenizer, seq2seq: bool) -> bool:
    """``model.use_chat_template`` resolved: when unset (``None``), causal models whose tokenizer has a chat
    template use it; seq2seq models see the raw prompt."""
    if setting is None:
        return getattr(tokenizer, "chat_template", None) is not None and not seq2seq
    return bool(setting)


def format_prompt(tokenizer, prompt: str, use_chat_template: bool) -> str:
    """The text the model sees: the raw prompt, or the user turn of the tokenizer's chat template."""
    if not use_chat_template:
        return prompt
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
    )


def encode_prompts(
    tokenizer, prompts: list[str], max_length: int, seq2seq: bool, add_special_tokens: bool | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and attention mask ``[B, P]`` of already formatted prompts.

    Causal models: left padding (the next token follows the last prompt token) and left truncation (the end of
    a prompt, where an instruction or chat template's generation prompt sits, is kept). Seq2seq: right padding
    and right truncation, as encoders are trained. ``P = min(max_length, longest prompt)``.
    """
    if add_special_tokens is None:
        # chat templates already hold their special tokens; encoders want theirs (e.g. T5's </s>)
        add_special_tokens = seq2seq
    rows = [tokenizer(p, add_special_tokens=add_special_tokens)["input_ids"] for p in prompts]
    rows = [r[:max_length] if seq2seq else r[-max_length:] for r in rows]
    width = max(1, max(len(r) for r in rows))
    ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        if not r:
            continue
        if seq2seq:
            ids[i, : len(r)], mask[i, : len(r)] = torch.tensor(r), 1
        else:
            ids[i, width - len(r) :], mask[i, width - len(r) :] = torch.tensor(r), 1
    return ids, mask


def decode_completion(tokenizer, token_ids: list[int]) -> str:
    """Text of a response: tokens up to (excluding) EOS, special tokens dropped, surrounding spaces stripped."""
    eos = tokenizer.eos_token_id
    if eos in token_ids:
        token_ids = token_ids[: token_ids.index(eos)]
    return tokenizer.decode(token_ids, skip_special_tokens=True).strip()


def decode_responses(tokenizer, response_ids: torch.Tensor, response_mask: torch.Tensor) -> list[str]:
    """Decode a batch of right-padded responses ``[B, T]`` (mask ``[B, T]``)."""
    lengths = response_mask.sum(-1).tolist()
    return [decode_completion(tokenizer, row[: int(n)]) for row, n in zip(response_ids.tolist(), lengths)]
