"""Evaluation: decode the eval split, score the reward and the metric suite."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import torch

from rl4text.config import ConfigError
from rl4text.metrics import build_metrics
from rl4text.rollout import encode_samples, generate
from rl4text.text import decode_responses, uses_chat_template


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
    num_beams: int = 1,
) -> tuple[list[str], list[list[int]], list[bool]]:
    """Completions, their token ids (EOS included) and whether each ended on EOS, in batches.

    Greedy or sampling use rl4text's KV-cached loop (the rollout's); ``num_beams > 1`` uses Hugging Face beam search.
    """
    if num_beams > 1 and do_sample:
        raise ValueError(
            "eval.num_beams > 1 is beam search: set eval.do_sample=false (or num_beams=1 to sample)"
        )
    device = next(policy_model.parameters()).device
    texts, token_ids, eos = [], [], []
    for start in range(0, len(samples), batch_size):
        chunk = samples[start : start + batch_size]
        ids, mask = encode_samples(tokenizer, chunk, max_prompt_length, seq2seq, use_chat_template)
        if num_beams > 1:
            resp, resp_mask = beam_search(
                policy_model, seq2seq, ids.to(device), mask.to(device), max_new_tokens, tokenizer, num_beams
            )
        else:
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
    num_beams: int = 1,
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
        num_beams,
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


# ------------------------------------------------------------------------------------------ rl4text eval


def run_model_config(cfg, run_dir):
    """The model section that loads a finished run's ``model/`` folder (weights and tokenizer saved there)."""
    folder = Path(run_dir) / "model"
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"{run_dir}: no trained model in {folder} (the run is unfinished or ran with "
            "train.save_final_model=false); evaluate its config instead to score the starting model"
        )
    return dataclasses.replace(
        cfg.model, name_or_path=str(folder), gguf_file=None, random_init=None, tokenizer=None
    )


def evaluate_model(
    cfg, split: str, max_samples: int | None = None, model_cfg=None
) -> tuple[dict, list[dict]]:
    """Decode ``split`` of ``cfg``'s task with ``cfg.eval``'s decoding and score the reward and the metric suite.

    ``model_cfg`` replaces ``cfg.model`` (e.g. a run's trained ``model/`` folder). Returns ``(scores, rows)``.
    """
    from rl4text.models import load_model, load_tokenizer
    from rl4text.registry import TASKS
    from rl4text.rewards import build_reward
    from rl4text.train import pick_device, seed_everything

    model_cfg = model_cfg or cfg.model
    seed_everything(cfg.train.seed)
    device = pick_device(cfg.train.device)
    tokenizer = load_tokenizer(model_cfg)
    model, seq2seq = load_model(model_cfg, tokenizer)
    model.to(device)
    task = TASKS.build(cfg.task.name, **cfg.task.args)
    if max_samples is not None and max_samples < 1:  # [:0] would decode nothing, [:-1] silently drop a sample
        raise ConfigError(f"--max-samples must be a positive integer, got {max_samples}")
    samples = task.split(split)[:max_samples]
    use_chat = uses_chat_template(model_cfg.use_chat_template, tokenizer, seq2seq)
    return evaluate(
        model,
        seq2seq,
        tokenizer,
        samples,
        build_reward(cfg.reward),
        cfg.eval.metrics or task.metrics,
        batch_size=cfg.eval.batch_size,
        max_new_tokens=cfg.eval.max_new_tokens or cfg.rollout.max_new_tokens,
        max_prompt_length=cfg.rollout.max_prompt_length,
        use_chat_template=use_chat,
        do_sample=cfg.eval.do_sample,
        temperature=cfg.eval.temperature,
        num_beams=cfg.eval.num_beams,
    )


def write_evaluation(out, scores: dict, rows: list[dict], info: dict) -> None:
    """``out/eval.json`` (``info`` + metrics) and ``out/predictions.jsonl`` (one row per sample), atomically."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name, text in (
        ("predictions.jsonl", "".join(json.dumps(r) + "\n" for r in rows)),
        ("eval.json", json.dumps({**info, "metrics": scores}, indent=2) + "\n"),
    ):
        tmp = out / f".{name}.tmp"
        tmp.write_text(text)
        os.replace(tmp, out / name)
