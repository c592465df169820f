"""Evaluation: decode samples (greedy, sampling or beam search), score the reward and the metric suite.

Depends on the rollout (generation), text and metrics only; building models from a config and the ``rl4text
eval`` command live in :mod:`rl4text.commands.eval`. :class:`Decoding` is the one place decoding settings are
read from a config (``eval`` and ``rollout`` sections), for training, SFT and ``rl4text eval`` alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rl4text.metrics import build_metrics
from rl4text.rollout import encode_samples, generate
from rl4text.text import decode_responses


@dataclass(frozen=True)
class Decoding:
    """How evaluation decodes: batch size, limits, and greedy / sampling / beam search."""

    batch_size: int = 32
    """Prompts per generation batch."""
    max_new_tokens: int = 32
    """Generation limit."""
    max_prompt_length: int = 128
    """Prompts are cut to this many tokens (as in training)."""
    do_sample: bool = False
    """Sample at ``temperature`` instead of greedy decoding."""
    temperature: float = 1.0
    """Sampling temperature (only with ``do_sample``)."""
    num_beams: int = 1
    """Beam search with this many beams when > 1."""

    @classmethod
    def from_config(cls, cfg) -> Decoding:
        """The decoding of a run config: its ``eval`` section, limits defaulting to the ``rollout`` ones."""
        e = cfg.eval
        return cls(
            batch_size=e.batch_size,
            max_new_tokens=e.max_new_tokens or cfg.rollout.max_new_tokens,
            max_prompt_length=cfg.rollout.max_prompt_length,
            do_sample=e.do_sample,
            temperature=e.temperature,
            num_beams=e.num_beams,
        )

    def describe(self) -> dict:
        """For ``eval.json``: strategy, beams, temperature (when sampling) and the generation limit."""
        return {
            "strategy": "beam" if self.num_beams > 1 else ("sampling" if self.do_sample else "greedy"),
            "num_beams": self.num_beams,
            "temperature": self.temperature if self.do_sample else None,
            "max_new_tokens": self.max_new_tokens,
        }


@torch.no_grad()
def generate_texts(
    policy_model,
    seq2seq: bool,
    tokenizer,
    samples: list[dict],
    *,
    decoding: Decoding,
    use_chat_template: bool,
    generator=None,
) -> tuple[list[str], list[list[int]], list[bool]]:
    """Completions, their token ids (EOS included) and whether each ended on EOS, in batches.

    Greedy or sampling use ``generator`` (an ``rl4text.generation.Generator``; default rl4text's KV-cached loop,
    the rollout's); ``num_beams > 1`` uses Hugging Face beam search.
    """
    d = decoding
    if d.num_beams > 1 and d.do_sample:
        raise ValueError(
            "eval.num_beams > 1 is beam search: set eval.do_sample=false (or num_beams=1 to sample)"
        )
    device = next(policy_model.parameters()).device
    texts, token_ids, eos = [], [], []
    for start in range(0, len(samples), d.batch_size):
        chunk = samples[start : start + d.batch_size]
        ids, mask = encode_samples(tokenizer, chunk, d.max_prompt_length, seq2seq, use_chat_template)
        if d.num_beams > 1:
            resp, resp_mask = beam_search(
                policy_model,
                seq2seq,
                ids.to(device),
                mask.to(device),
                d.max_new_tokens,
                tokenizer,
                d.num_beams,
            )
        elif generator is not None:
            resp, resp_mask = generator.generate(
                ids.to(device),
                mask.to(device),
                max_new_tokens=d.max_new_tokens,
                temperature=d.temperature,
                do_sample=d.do_sample,
            )
        else:
            resp, resp_mask = generate(
                policy_model,
                seq2seq,
                ids.to(device),
                mask.to(device),
                max_new_tokens=d.max_new_tokens,
                eos_id=tokenizer.eos_token_id,
                pad_id=tokenizer.pad_token_id,
                do_sample=d.do_sample,
                temperature=d.temperature,
            )
        resp, resp_mask = resp.cpu(), resp_mask.cpu()
        texts += decode_responses(tokenizer, resp, resp_mask)
        n = resp_mask.sum(-1).long()
        token_ids += [row[:k] for row, k in zip(resp.tolist(), n.tolist())]
        last = resp.gather(1, (n - 1).clamp(min=0)[:, None]).squeeze(1)
        eos += ((last == tokenizer.eos_token_id) & (n > 0)).tolist()
    return texts, token_ids, eos


@torch.no_grad()
def beam_search(
    model, seq2seq: bool, prompt_ids, prompt_mask, max_new_tokens: int, tokenizer, num_beams: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Best beam per prompt as ``(response_ids [B, T], response_mask [B, T])``, EOS included, like ``generate``."""
    out = model.generate(
        input_ids=prompt_ids,
        attention_mask=prompt_mask,
        num_beams=num_beams,
        do_sample=False,
        max_new_tokens=max_new_tokens,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    # causal: the prompt comes back in front; seq2seq: the decoder start token does
    resp = out[:, 1:] if seq2seq else out[:, prompt_ids.shape[1] :]
    if resp.shape[1] == 0:
        return resp, resp.float()
    is_eos = resp == tokenizer.eos_token_id
    seen = is_eos.long().cumsum(1)
    after_eos = (seen - is_eos.long()) > 0
    never_ended = seen[:, -1:] == 0  # generate pads rows that stopped for another reason (another row's EOS)
    mask = ~after_eos & ~(never_ended & _trailing(resp, tokenizer.pad_token_id))
    resp = torch.where(mask, resp, torch.full_like(resp, tokenizer.pad_token_id))
    return resp, mask.float()


def _trailing(ids: torch.Tensor, value: int) -> torch.Tensor:
    """``True`` where a position and everything after it equal ``value``."""
    same = (ids == value).flip(1).long().cumprod(1).flip(1)
    return same.bool()


def decode_and_reward(
    policy_model,
    seq2seq: bool,
    tokenizer,
    samples: list[dict],
    reward_fn,
    *,
    decoding,
    use_chat_template,
    generator=None,
    shard=None,
) -> tuple[list[str], list[list[int]], list[bool], list[float], dict[str, list[float]]]:
    """Texts, token ids, EOS flags, reward totals and per-component rewards of ``samples`` (sharded over
    processes when ``shard`` has several; the gathered lists are in sample order)."""
    world = 1 if shard is None else shard.world_size
    index = list(range(len(samples)))[(0 if shard is None else shard.rank) :: world]
    local = [samples[i] for i in index]
    texts, token_ids, eos = generate_texts(
        policy_model,
        seq2seq,
        tokenizer,
        local,
        decoding=decoding,
        use_chat_template=use_chat_template,
        generator=generator,
    )
    total, parts = reward_fn.score(
        [s["prompt"] for s in local],
        texts,
        [s["references"] for s in local],
        ended_with_eos=eos,
        response_token_ids=token_ids,
        meta=[s.get("meta", {}) for s in local],
    )
    if world == 1:
        return texts, token_ids, eos, list(total), {k: list(v) for k, v in parts.items()}
    pieces = shard.gather_objects(
        (index, texts, token_ids, eos, list(total), {k: list(v) for k, v in parts.items()})
    )
    order: dict[int, tuple] = {}
    for idx, *cols in pieces:
        p_texts, p_ids, p_eos, p_total, p_parts = cols
        for j, i in enumerate(idx):
            order[i] = (p_texts[j], p_ids[j], p_eos[j], p_total[j], {k: v[j] for k, v in p_parts.items()})
    rows = [order[i] for i in range(len(samples))]
    names = list(rows[0][4]) if rows else []
    return (
        [r[0] for r in rows],
        [r[1] for r in rows],
        [r[2] for r in rows],
        [r[3] for r in rows],
        {k: [r[4][k] for r in rows] for k in names},
    )


def evaluate(
    policy_model,
    seq2seq: bool,
    tokenizer,
    samples: list[dict],
    reward_fn,
    metrics: list[str] | dict[str, object],
    *,
    decoding: Decoding,
    use_chat_template: bool,
    generator=None,
    shard=None,
) -> tuple[dict[str, float], list[dict]]:
    """``(scores, rows)``: mean reward (and per component), each metric's corpus score, response length, EOS rate;
    ``rows`` are per-sample prompt / completion / references / reward and ``reward/<component>``, and ``item``:
    the sample's value of every score key whose score is the mean of per-sample values (reward and components,
    the metrics' ``per_item`` keys, ``response_length``, ``eos_rate``), for paired tests over samples.
    ``metrics``: names, or built metrics.

    ``shard`` (``rl4text.runtime.Dist``: ``rank``, ``world_size``, ``gather_objects``): each process decodes and
    rewards the samples ``rank::world_size``; the pieces are gathered back into sample order on every process,
    which then scores the corpus metrics over all of them (the same numbers as one process)."""
    texts, token_ids, eos, total, parts = decode_and_reward(
        policy_model,
        seq2seq,
        tokenizer,
        samples,
        reward_fn,
        decoding=decoding,
        use_chat_template=use_chat_template,
        generator=generator,
        shard=shard,
    )
    prompts = [s["prompt"] for s in samples]
    refs = [s["references"] for s in samples]
    n = len(samples)
    scores: dict[str, float] = {"reward": sum(total) / n}
    scores.update({f"reward/{k}": sum(v) / n for k, v in parts.items()})
    # build once and pass the instances in when evaluating repeatedly (model-based metrics load encoders)
    built = build_metrics(metrics) if isinstance(metrics, list) else metrics
    items: dict[str, list[float]] = {"reward": list(total), **{f"reward/{k}": v for k, v in parts.items()}}
    for metric in built.values():
        result = metric.compute(texts, refs)
        scores.update(result.corpus)
        items.update(result.per_item)
    scores["response_length"] = sum(len(t) for t in token_ids) / n
    scores["eos_rate"] = sum(eos) / n
    items["response_length"] = [len(t) for t in token_ids]
    items["eos_rate"] = [float(e) for e in eos]
    return scores, _rows(prompts, texts, refs, total, parts, items)


def logged_rows(rows: list[dict], n: int) -> list[dict]:
    """The first ``n`` rows for ``samples.jsonl``: without the per-item values (those are for predictions.jsonl)."""
    return [{k: v for k, v in r.items() if k != "item"} for r in rows[:n]]


def _rows(prompts, texts, refs, total, parts: dict, items: dict) -> list[dict]:
    """One ``predictions.jsonl`` row per sample (``items``: key -> one value per sample)."""
    return [
        {
            "prompt": p,
            "completion": c,
            "references": r,
            "reward": t,
            **{f"reward/{k}": v[i] for k, v in parts.items()},
            "item": {key: values[i] for key, values in items.items()},
        }
        for i, (p, c, r, t) in enumerate(zip(prompts, texts, refs, total))
    ]
