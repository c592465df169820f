"""A short fp32-vs-bf16-autocast probe on SmolLM2-135M-Instruct: one rollout (generate + reference) and one
differentiable scoring pass + backward of the same episodes, alternated A B A B in one process.

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 PYTHONPATH=. .venv/bin/python benchmarks/autocast_probe.py --rounds 2

Prints the median seconds of each part per setting and the ratios (autocast / fp32), and how far the update's
first forward is from the behaviour log-probs taken from generation (PPO's first ratio) in each setting. Weights
are not changed (no optimiser step), so every round samples from the same policy.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--episodes", type=int, default=8)
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--no-update", action="store_true", help="time the rollout only")
    p.add_argument(
        "--warmup-tokens", type=int, default=4, help="new tokens of each setting's warm-up rollout"
    )
    p.add_argument(
        "--override", action="append", default=[], help="extra config override (tests: tiny model)"
    )
    args = p.parse_args()
    from rl4text.config import load_config
    from rl4text.rollout import collect_rollout
    from rl4text.train import build

    preset = Path(__file__).resolve().parents[1] / "rl4text" / "presets" / "quickstart.yaml"
    cfg = load_config(preset, [f"rollout.max_new_tokens={args.new_tokens}", *args.override])
    c = build(cfg)
    samples = c.task.split(cfg.task.train_split)[: args.episodes]
    times: dict[str, dict[str, list[float]]] = {"fp32": {}, "autocast": {}}

    def run(setting: str, measured: bool, new_tokens: int) -> None:
        c.policy.autocast_dtype = torch.bfloat16 if setting == "autocast" else None
        torch.manual_seed(0)
        t0 = time.perf_counter()
        r = collect_rollout(
            c.policy,
            c.reference,
            c.tokenizer,
            samples,
            max_new_tokens=new_tokens,
            max_prompt_length=cfg.rollout.max_prompt_length,
            temperature=cfg.rollout.temperature,
            use_chat_template=c.use_chat_template,
        )
        t1 = time.perf_counter()
        if not args.no_update:
            # score() enters the autocast itself; the backward runs outside it, as in Algorithm.step
            out = c.policy.score(
                r.prompt_ids, r.prompt_mask, r.response_ids, r.response_mask.long(), r.temperature
            )
            ((out.logprobs * r.response_mask).sum() + out.values.sum()).backward()
            c.policy.zero_grad(set_to_none=True)
        t2 = time.perf_counter()
        if measured and not args.no_update:
            # the update's first forward against the behaviour log-probs taken from generation: PPO's first ratio
            delta = (out.logprobs.detach() - r.logprobs)[r.response_mask.bool()]
            outside = ((delta.exp() - 1).abs() > 0.2).float().mean()
            print(
                f"{setting}: |update - behaviour log-prob| max {delta.abs().max():.2e} mean {delta.abs().mean():.2e}, "
                f"first ratios outside 1 +- 0.2: {outside:.1%}",
                flush=True,
            )
        if measured:
            for part, s in (("rollout", t1 - t0), ("update_fwd_bwd", t2 - t1), ("total", t2 - t0)):
                times[setting].setdefault(part, []).append(s)
            print(f"{setting}: rollout {t1 - t0:.2f} s, update fwd+bwd {t2 - t1:.2f} s", flush=True)

    run("fp32", False, args.warmup_tokens)  # warm-up of both settings (oneDNN picks its kernels on first use)
    run("autocast", False, args.warmup_tokens)
    for _ in range(args.rounds):
        run("fp32", True, args.new_tokens)
        run("autocast", True, args.new_tokens)
    for part in ("rollout",) if args.no_update else ("rollout", "update_fwd_bwd", "total"):
        a, b = (statistics.median(times[s][part]) for s in ("fp32", "autocast"))
        print(f"{part}: fp32 {a:.2f} s, autocast {b:.2f} s, autocast / fp32 {b / a:.2f}x")


if __name__ == "__main__":
    main()
