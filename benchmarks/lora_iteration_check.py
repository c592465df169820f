"""Seconds per RLOO iteration, LoRA r=8 against fp32 full fine-tuning, on vs_trl.py's workload with 16 new tokens.

A cross-check of ``benchmarks/results/vs_trl.md``'s ``lora`` row (slower than ``fp32`` there, under load): both
settings in one process, LoRA first, ``--iterations`` iterations each, printing the time split of every iteration
(rollout, reward, update). Needs SmolLM2's de-quantised cache (any SmolLM2 run creates it) and RL4TEXT_DATA.

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 PYTHONPATH=. .venv/bin/python benchmarks/lora_iteration_check.py
"""

from __future__ import annotations

import argparse
import importlib.util
import tempfile
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
    from rl4text.config import apply_overrides, config_from_dict, load_yaml
    from rl4text.runtime import read_jsonl
    from rl4text.train import train

    workload = argparse.Namespace(warmup=0, steps=args.iterations)
    preset = HERE.parent / "rl4text" / "presets" / "quickstart.yaml"
    for name, extra in [("lora", ["model.lora={r: 8, alpha: 16}"]), ("fp32", [])]:
        data = load_yaml(preset.read_text(), str(preset))
        data["algorithm"] = {"name": "rloo"}
        overrides = [
            *vs_trl.base_overrides(workload),
            "train.micro_batch_size=8",
            f"rollout.max_new_tokens={args.new_tokens}",
            *extra,
        ]
        cfg = config_from_dict(apply_overrides(data, overrides), f"{preset} ({name})")
        with tempfile.TemporaryDirectory() as tmp:
            train(cfg, Path(tmp) / "run")
            for row in read_jsonl(Path(tmp) / "run" / "metrics.jsonl"):
                if "time/iteration_s" in row:
                    times = {k: round(v, 1) for k, v in row.items() if k.startswith("time/")}
                    print(f"{name}: {times}", flush=True)


if __name__ == "__main__":
    main()
