"""Seconds per RLOO iteration, LoRA r=8 against fp32 full fine-tuning, on vs_trl.py's workload with 16 new tokens.

A cross-check of ``benchmarks/results/vs_trl.md``'s ``lora`` row (slower than ``fp32`` there, under load): both
settings in one process through vs_trl.py's own rl4text worker, LoRA first, ``--iterations`` iterations each,
printing the time split of every iteration (rollout, reward, update). Needs SmolLM2's de-quantised cache (any
SmolLM2 run creates it) and RL4TEXT_DATA.

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 PYTHONPATH=. .venv/bin/python benchmarks/lora_iteration_check.py
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--iterations", type=int, default=2)
    p.add_argument("--new-tokens", type=int, default=16)
    args = p.parse_args()
    spec = importlib.util.spec_from_file_location("vs_trl", HERE / "vs_trl.py")
    vs_trl = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(vs_trl)
    for name, extra in [("lora", ["model.lora={r: 8, alpha: 16}"]), ("fp32", [])]:
        overrides = ["train.micro_batch_size=8", f"rollout.max_new_tokens={args.new_tokens}", *extra]
        workload = argparse.Namespace(
            warmup=0, steps=args.iterations, algorithm="rloo", rl4text_override=overrides
        )
        for times in vs_trl.run_rl4text(workload)["time_split"]:
            print(f"{name}: { ({k: round(v, 1) for k, v in times.items()}) }", flush=True)


if __name__ == "__main__":
    main()
