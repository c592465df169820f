"""Figures of a finished GPU run folder for ``benchmarks/gpu_check.sh``: generation tokens/s, seconds per iteration
and the update's model FLOP utilisation (MFU), as one JSON line.

MFU = 6 * N * tokens / update_seconds / peak_flops, with N the policy's parameter count (from ``model/``) and
tokens the positions the update runs forward and backward: ``n_epochs * global_batch * (prompt + response)``;
the prompt is counted at ``rollout.max_prompt_length`` (the padded batch is at most that wide), so the figure is
an upper bound when prompts are shorter. Peak: ``PEAK_TFLOPS`` or the dense bf16 peak of the GPU by name.

    python benchmarks/gpu_report.py RUN_FOLDER LABEL
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import yaml

PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10": 125.0}


def peak_flops() -> float:
    if os.environ.get("PEAK_TFLOPS"):
        return float(os.environ["PEAK_TFLOPS"]) * 1e12
    import torch

    name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else ""
    for key, tflops in PEAK_BF16_TFLOPS.items():
        if key in name:
            return tflops * 1e12
    raise SystemExit(f"unknown GPU {name!r}: set PEAK_TFLOPS to its dense bf16 peak")


def parameter_count(model_dir: Path) -> int:
    from safetensors import safe_open

    total = 0
    for file in sorted(model_dir.glob("*.safetensors")):
        with safe_open(str(file), "pt") as f:
            for key in f.keys():  # noqa: SIM118 - a safetensors handle is not iterable
                shape = f.get_slice(key).get_shape()
                n = 1
                for d in shape:
                    n *= d
                total += n
    return total


def report(folder: Path, label: str) -> dict:
    cfg = yaml.safe_load((folder / "config.yaml").read_text())
    rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    its = [r for r in rows if "rollout/reward_mean" in r][1:]  # the first iteration warms kernels up
    batch = cfg["rollout"]["batch_size"] * its[0].get("dist/world_size", 1)
    epochs = cfg["algorithm"].get("n_epochs", 4)
    response = sum(r["rollout/response_length"] for r in its) / len(its)
    gen_tokens = sum(r["rollout/response_length"] * batch / r["time/rollout_s"] for r in its) / len(its)
    update_s = sum(r["time/update_s"] for r in its) / len(its)
    tokens = epochs * batch * (cfg["rollout"]["max_prompt_length"] + response)
    n = parameter_count(folder / "model")
    return {
        "run": label,
        "parameters": n,
        "generation_tokens_per_s": round(gen_tokens, 1),
        "seconds_per_iteration": round(sum(r["time/iteration_s"] for r in its) / len(its), 3),
        "update_seconds": round(update_s, 3),
        "update_mfu": round(6 * n * tokens / update_s / peak_flops(), 4),
    }


if __name__ == "__main__":
    print(json.dumps(report(Path(sys.argv[1]), sys.argv[2])))
