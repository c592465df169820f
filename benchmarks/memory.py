"""Peak memory of PPO: full fine-tuning, LoRA, and an RL4LMs-style three-full-copies layout, in one run.

Each setting trains the quickstart workload (PPO, Multi30k de->en, 8 episodes per iteration, minibatches of 4,
chrF + KL) for ``--iterations`` iterations in its own process, so its peak RSS (``ru_maxrss``) is its own.
Settings, for a causal model (SmolLM2-135M-Instruct) and a seq2seq one (the T5-small architecture, random
init, SmolLM2's tokenizer: no pretrained seq2seq model is reachable offline; memory does not depend on weights):

- ``full``: full fine-tuning, value head on the shared trunk, reference = one frozen copy (the default);
- ``full_lean``: the same with ``train.gradient_checkpointing=true``, ``train.micro_batch_size=4`` and a
  bfloat16 reference copy (``model.reference_dtype=bfloat16``);
- ``lora``: ``model.lora.r=8`` (the reference is the base with adapters disabled: no copy);
- ``three_copies``: policy, separate value model (``model.critic=separate``) and reference, three full copies
  as RL4LMs lays them out;
- ``full_autocast``: ``full`` under bfloat16 autocast (``model.autocast=true``; weights stay fp32), the CPU option;
- ``lora_bf16``: ``lora`` on a bfloat16 base (``model.dtype=bfloat16``: frozen base and reference in bf16, the
  adapters, their optimiser state and the value head in float32).

Reported: peak RSS, median update seconds per iteration, bytes of the final checkpoint.

    OMP_NUM_THREADS=2 HF_HUB_OFFLINE=1 PYTHONPATH=. .venv/bin/python benchmarks/memory.py --iterations 2
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SETTINGS = {
    "full": [],
    "full_lean": [
        "train.gradient_checkpointing=true",
        "train.micro_batch_size=4",
        "model.reference_dtype=bfloat16",
    ],
    "lora": ["model.lora={r: 8, alpha: 16}"],
    "three_copies": ["model.critic=separate"],
    "full_autocast": ["model.autocast=true"],
    "lora_bf16": ["model.lora={r: 8, alpha: 16}", "model.dtype=bfloat16"],
}
T5_SMALL = (
    "{model_type: t5, d_model: 512, d_ff: 2048, num_layers: 6, num_decoder_layers: 6, num_heads: 8, d_kv: 64}"
)


def model_overrides(kind: str) -> list[str]:
    if kind == "causal":
        return []
    from vs_trl import smollm2_folder

    return ["model.name_or_path=null", f"model.random_init={T5_SMALL}", f"model.tokenizer={smollm2_folder()}"]


def worker(kind: str, setting: str, iterations: int, extra: list[str]) -> None:
    from rl4text.config import load_config
    from rl4text.runtime import read_jsonl
    from rl4text.train import train

    preset = Path(__file__).resolve().parents[1] / "rl4text" / "presets" / "quickstart.yaml"
    overrides = [
        f"train.iterations={iterations}",
        "train.save_final_model=false",
        "eval.at_start=false",
        "eval.max_samples=4",
        "tracking.progress=none",
        *model_overrides(kind),
        *SETTINGS[setting],
        *extra,
    ]
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        train(load_config(preset, overrides), run)
        rows = [r for r in read_jsonl(run / "metrics.jsonl") if "time/update_s" in r]
        ckpt = max((run / "checkpoints").glob("iter_*"))
        size = sum(p.stat().st_size for p in ckpt.iterdir())
    out = {
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
        "update_s": [r["time/update_s"] for r in rows],
        "checkpoint_bytes": size,
        "overrides": overrides,
    }
    print("RESULT " + json.dumps(out), flush=True)


def launch(kind: str, setting: str, iterations: int, extra: list[str]) -> dict:
    cmd = [sys.executable, __file__, "--worker", kind, setting, "--iterations", str(iterations)]
    cmd += [x for o in extra for x in ("--override", o)]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]),
    }
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"{kind}/{setting} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    result = json.loads(lines[-1][7:])
    result["wall_s"] = time.perf_counter() - t0
    print(
        f"{kind}/{setting}: peak RSS {result['peak_rss_gb']:.2f} GB, update {result['update_s']} s",
        flush=True,
    )
    return result


def report(results: dict, args) -> str:
    import torch

    lines = [
        "# Peak memory of PPO: full fine-tuning, LoRA, three full copies",
        "",
        f"{time.strftime('%Y-%m-%dT%H:%M:%S%z')}; torch {torch.__version__}; {os.cpu_count()} CPUs, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}; each setting in its own process, "
        f"{args.iterations} iterations of the quickstart workload (PPO, 8 episodes, minibatch 4, 28 new tokens), "
        "fp32 weights (bf16 compute only in `full_autocast`). Peak RSS is `ru_maxrss` of the process (model "
        "load included).",
        "",
        "| model | setting | peak RSS (GB) | median update s/iter | final checkpoint (MB) |",
        "|---|---|---:|---:|---:|",
    ]
    for (kind, setting), r in results.items():
        lines.append(
            f"| {kind} | `{setting}` | {r['peak_rss_gb']:.2f} | {statistics.median(r['update_s']):.2f} | "
            f"{r['checkpoint_bytes'] / 1e6:.1f} |"
        )
    lines += ["", "Ratios (measured in this run):", ""]
    for kind in args.kinds:
        get = {s: results[(kind, s)] for s in SETTINGS if (kind, s) in results}
        if {"full", "lora", "three_copies"} <= set(get):
            full, lora, three = (get[s]["peak_rss_gb"] for s in ("full", "lora", "three_copies"))
            uf, ul = (statistics.median(get[s]["update_s"]) for s in ("full", "lora"))
            lines.append(
                f"- {kind}: LoRA / full peak RSS {lora / full:.2f}x (target <= 0.5x); LoRA / three copies "
                f"{lora / three:.2f}x (target <= 0.35x); LoRA / full update time {ul / uf:.2f}x (target <= 0.7x); "
                f"full peak {full:.2f} GB (target <= 3.5 GB)."
            )
        for lean in ("full_lean", "full_autocast", "lora_bf16"):
            if {"full", lean} <= set(get):
                r, f = get[lean], get["full"]
                lines.append(
                    f"- {kind}: {lean} / full peak RSS {r['peak_rss_gb'] / f['peak_rss_gb']:.2f}x "
                    f"({r['peak_rss_gb']:.2f} GB), update time "
                    f"{statistics.median(r['update_s']) / statistics.median(f['update_s']):.2f}x."
                )
    lines += [
        "",
        f"Settings (config overrides): {json.dumps(SETTINGS)}",
        "",
        f"Command: `{' '.join(map(shlex.quote, sys.argv))}`",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--worker", nargs=2, metavar=("KIND", "SETTING"))
    p.add_argument("--iterations", type=int, default=2)
    p.add_argument("--kinds", nargs="+", default=["causal", "seq2seq"])
    p.add_argument("--settings", nargs="+", default=list(SETTINGS))
    p.add_argument("--override", action="append", default=[], help="extra config override of every setting")
    p.add_argument("--output", default=str(Path(__file__).parent / "results" / "memory.md"))
    args = p.parse_args()
    if args.worker:
        return worker(*args.worker, args.iterations, args.override)
    results = {
        (k, s): launch(k, s, args.iterations, args.override) for k in args.kinds for s in args.settings
    }
    text = report(results, args)
    Path(args.output).write_text(text)
    Path(args.output).with_suffix(".json").write_text(
        json.dumps({f"{k}/{s}": r for (k, s), r in results.items()}, indent=1) + "\n"
    )
    print(text)


if __name__ == "__main__":
    main()
