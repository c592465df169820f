"""Evaluation: decode the eval split, score the reward and the metric suite."""

from __future__ import annotations

import torch

from rl4text.metrics import build_metrics
from rl4text.rollout import encode_samples, generate
from rl4text.text import decode_responses


@torch.no_grad()
def generate_texts(
    policy_model,
    seq2seq: bool,
    tokenizer,
    samples: list[dict],
    batch_size: int,
    max_new_tokens: int,
    max_prompt_length: int,
    use_chat_template: bool,
    do_sample: bool = False,
    temperature: float = 1.0,
) -> tuple[list[str], list[list[int]], list[bool]]:
    """Completions, their token ids (EOS included) and whether each ended on EOS, in batches."""
    device = next(policy_model.parameters()).device
    texts, token_ids, eos = [], [], []
    for start in range(0, len(samples), batch_size):
        chunk = samples[start : start + batch_size]
        ids, mask = encode_samples(tokenizer, chunk, max_prompt_length, seq2seq, use_chat_template)
        resp, resp_mask = generate(
            policy_model,
            seq2seq,
            ids.to(device),
            mask.to(device),
            max_new_tokens,
            tokenizer.eos_token_id,
            tokenizer.pad_token_id,
            do_sample=do_sample,
            temperature=temperature,
        )
        resp, resp_mask = resp.cpu(), resp_mask.cpu()
        texts += decode_responses(tokenizer, resp, resp_mask)
        n = resp_mask.sum(-1).long()
        token_ids += [row[:k] for row, k in zip(resp.tolist(), n.tolist())]
        last = resp.gather(1, (n - 1).clamp(min=0)[:, None]).squeeze(1)
        eos += ((last == tokenizer.eos_token_id) & (n > 0)).tolist()
    return texts, token_ids, eos


def evaluate(
    policy_model,
    seq2seq: bool,
    tokenizer,
    samples: list[dict],
    reward_fn,
    metrics: list[str] | dict[str, object],
    *,
    batch_size: int,
    max_new_tokens: int,
    max_prompt_length: int,
    use_chat_template: bool,
    do_sample: bool = False,
    temperature: float = 1.0,
) -> tuple[dict[str, float], list[dict]]:
    """``(scores, rows)``: mean reward (and per component), each metric's corpus score, response length, EOS rate;
    ``rows`` are per-sample prompt / completion / references / reward and ``reward/<component>``. ``metrics``: names, or built metrics."""
    texts, token_ids, eos = generate_texts(
        policy_model,
        seq2seq,
        tokenizer,
        samples,
        batch_size,
        max_new_tokens,
        max_prompt_length,
        use_chat_template,
        do_sample,
        temperature,
    )
    prompts = [s["prompt"] for s in samples]
    refs = [s["references"] for s in samples]
    meta = [s.get("meta", {}) for s in samples]
    total, parts = reward_fn.score(
        prompts, texts, refs, ended_with_eos=eos, response_token_ids=token_ids, meta=meta
    )
    n = len(samples)
    scores: dict[str, float] = {"reward": sum(total) / n}
    scores.update({f"reward/{k}": sum(v) / n for k, v in parts.items()})
    # build once and pass the instances in when evaluating repeatedly (model-based metrics load encoders)
    built = build_metrics(metrics) if isinstance(metrics, list) else metrics
    for metric in built.values():
        scores.update(metric.compute(texts, refs).corpus)
    scores["response_length"] = sum(len(t) for t in token_ids) / n
    scores["eos_rate"] = sum(eos) / n
    rows = [
        {
            "prompt": p,
            "completion": c,
            "references": r,
            "reward": t,
            **{f"reward/{k}": v[i] for k, v in parts.items()},
        }
        for i, (p, c, r, t) in enumerate(zip(prompts, texts, refs, total))
    ]
    return scores, rows
