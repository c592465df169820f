"""rl4text's RLOO against Hugging Face TRL's ``RLOOTrainer``, side by side, on the same workload, in one run.

Workload (issue 13): SmolLM2-135M-Instruct (fp32), Multi30k de->en prompts in the chat template, 8 prompts x 4
samples = 32 episodes per step, 32 new tokens, chrF reward, KL coefficient 0.05, one gradient step per step.
Each framework runs in its own process (so peak RSS is its own), alternated A B A B; every process does
``--warmup`` steps, then ``--steps`` measured ones. Reported: median seconds per step over all measured steps,
peak RSS (``ru_maxrss``) of each process, generated tokens per second.

TRL is never a dependency of rl4text: it lives in its own virtual environment, e.g.

    python3 -m venv /work/trl-venv
    echo /work/main/.venv/lib/python3.11/site-packages > /work/trl-venv/lib/python3.11/site-packages/zz_main.pth
    /work/trl-venv/bin/pip install trl==1.16.0   # reuses the main venv's torch/transformers through the .pth

SmolLM2 is read from rl4text's de-quantised safetensors cache of the offline GGUF package (README, "Models");
run any rl4text command on SmolLM2 once to create it. Then:

    OMP_NUM_THREADS=2 HF_HUB_OFFLINE=1 PYTHONPATH=. .venv/bin/python benchmarks/vs_trl.py \\
        --trl-python /work/trl-venv/bin/python --rounds 2 --warmup 1 --steps 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROMPTS, K, NEW_TOKENS, KL, LR = 8, 4, 32, 0.05, 1e-6
SMOLLM2 = "HuggingFaceTB/SmolLM2-135M-Instruct"


def smollm2_folder() -> Path:
    from rl4text.config import ModelConfig
    from rl4text.models import gguf_cache_dir, resolve_source

    source, gguf = resolve_source(ModelConfig(name_or_path=SMOLLM2))
    folder = gguf_cache_dir(source, gguf) if gguf else Path(source)
    if folder is None or not (folder / "model.safetensors").is_file():
        raise SystemExit(
            f"no de-quantised SmolLM2 at {folder}: run `rl4text quickstart` (or any SmolLM2 run) once"
        )
    return folder


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # Linux: kilobytes


def train_samples(n: int) -> list[dict]:
    from rl4text.registry import TASKS

    return TASKS.build("multi30k", source_lang="de", target_lang="en").split("train")[:n]


# ------------------------------------------------------------------------------------------------- workers


def run_rl4text(args) -> dict:
    from rl4text.config import apply_overrides, config_from_dict, load_yaml
    from rl4text.runtime import read_jsonl
    from rl4text.train import train

    preset = Path(__file__).resolve().parents[1] / "rl4text" / "presets" / "quickstart.yaml"
    overrides = [
        f"algorithm.k={K}",
        f"algorithm.kl_coef={KL}",
        "algorithm.n_epochs=1",
        f"algorithm.minibatch_size={PROMPTS * K}",
        f"rollout.batch_size={PROMPTS * K}",
        f"rollout.max_new_tokens={NEW_TOKENS}",
        "rollout.temperature=1.0",
        f"train.iterations={args.warmup + args.steps}",
        f"train.learning_rate={LR}",
        "train.save_final_model=false",
        "train.save_final_optimizer=false",
        "eval.at_start=false",
        "eval.max_samples=1",
        "tracking.progress=none",
        *args.rl4text_override,
    ]
    data = load_yaml(preset.read_text(), str(preset))
    data["algorithm"] = {"name": "rloo"}  # the preset's PPO keys do not apply
    cfg = config_from_dict(apply_overrides(data, overrides), f"{preset} (rloo)")
    with tempfile.TemporaryDirectory() as tmp:
        train(cfg, Path(tmp) / "run")
        rows = [r for r in read_jsonl(Path(tmp) / "run" / "metrics.jsonl") if "time/iteration_s" in r]
    steps = [r["time/iteration_s"] for r in rows][args.warmup :]
    tokens = [r["rollout/response_length"] * PROMPTS * K for r in rows][args.warmup :]
    return {"step_s": steps, "tokens": tokens, "overrides": overrides}


def run_trl(args) -> dict:
    import sacrebleu
    import transformers
    import trl
    from datasets import Dataset
    from transformers import TrainerCallback

    folder = smollm2_folder()
    samples = train_samples(PROMPTS * (args.warmup + args.steps))
    data = Dataset.from_list(
        [
            {"prompt": [{"role": "user", "content": s["prompt"]}], "reference": s["references"][0]}
            for s in samples
        ]
    )

    def chrf(prompts, completions, reference, **_):
        return [
            sacrebleu.sentence_chrf(c[0]["content"], [r]).score / 100 for c, r in zip(completions, reference)
        ]

    times, tokens = [], []

    class Timer(TrainerCallback):
        def on_step_begin(self, *a, **k):
            self.t0 = time.perf_counter()

        def on_step_end(self, *a, **k):
            times.append(time.perf_counter() - self.t0)

        def on_log(self, _args, _state, _control, logs=None, **k):
            if logs and "completions/mean_length" in logs:
                tokens.append(logs["completions/mean_length"] * PROMPTS * K)

    with tempfile.TemporaryDirectory() as tmp:
        config = trl.RLOOConfig(
            output_dir=tmp,
            num_generations=K,
            per_device_train_batch_size=PROMPTS * K,
            gradient_accumulation_steps=1,
            steps_per_generation=1,
            max_completion_length=NEW_TOKENS,
            beta=KL,
            learning_rate=LR,
            max_steps=args.warmup + args.steps,
            logging_steps=1,
            save_strategy="no",
            report_to="none",
            use_cpu=True,
            bf16=False,
            temperature=1.0,
            seed=0,
        )
        trainer = trl.RLOOTrainer(
            model=str(folder), reward_funcs=chrf, args=config, train_dataset=data, callbacks=[Timer()]
        )
        trainer.train()
    versions = {"trl": trl.__version__, "transformers": transformers.__version__}
    return {"step_s": times[args.warmup :], "tokens": tokens[args.warmup :], "versions": versions}


# ------------------------------------------------------------------------------------------------- driver


def worker(args) -> None:
    out = run_rl4text(args) if args.worker == "rl4text" else run_trl(args)
    out["peak_rss_gb"] = peak_rss_gb()
    print("RESULT " + json.dumps(out), flush=True)


def launch(name: str, python: str, args) -> dict:
    cmd = [python, __file__, "--worker", name, "--warmup", str(args.warmup), "--steps", str(args.steps)]
    cmd += [x for o in args.rl4text_override for x in ("--rl4text-override", o)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"{name} worker failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    result = json.loads(lines[-1][7:])
    result["wall_s"] = time.perf_counter() - t0
    print(
        f"{name}: steps {[round(s, 1) for s in result['step_s']]} s, peak RSS {result['peak_rss_gb']:.2f} GB"
    )
    return result


def report(runs: dict[str, list[dict]], args, command: str) -> str:
    import torch

    def summary(name):
        steps = [s for r in runs[name] for s in r["step_s"]]
        toks = [t for r in runs[name] for t in r["tokens"]]
        med = statistics.median(steps)
        rss = max(r["peak_rss_gb"] for r in runs[name])
        return med, rss, sum(toks) / sum(steps), len(steps)

    a, b = summary("rl4text"), summary("trl")
    trl_versions = runs["trl"][0].get("versions", {})
    lines = [
        "# rl4text vs TRL: RLOO on SmolLM2-135M-Instruct",
        "",
        f"{time.strftime('%Y-%m-%dT%H:%M:%S%z')}; {platform.machine()}, {os.cpu_count()} CPUs, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}; torch {torch.__version__}, "
        f"transformers {trl_versions.get('transformers', '?')}, TRL {trl_versions.get('trl', '?')} (own venv).",
        f"Workload: {PROMPTS} prompts x {K} samples = {PROMPTS * K} episodes per step, {NEW_TOKENS} new tokens, chrF "
        f"reward, KL {KL}, one gradient step per step, fp32, lr {LR}. Runs alternated "
        f"{' '.join(['rl4text trl'] * args.rounds)}; each process {args.warmup} warm-up step(s) then {args.steps} "
        "measured; the machine is shared with other sessions, so absolute times vary, the ratios are what counts.",
        "",
        "| framework | measured steps | median s/step | peak RSS (GB) | generated tokens/s |",
        "|---|---:|---:|---:|---:|",
        f"| rl4text `rloo` | {a[3]} | {a[0]:.1f} | {a[1]:.2f} | {a[2]:.1f} |",
        f"| TRL `RLOOTrainer` | {b[3]} | {b[0]:.1f} | {b[1]:.2f} | {b[2]:.1f} |",
        "",
        f"**Ratios (rl4text / TRL): step time {a[0] / b[0]:.2f}x (throughput {b[0] / a[0]:.2f}x), peak RSS "
        f"{a[1] / b[1]:.2f}x.** Targets of issue 13: step time <= 0.33x, peak RSS <= 0.25x (<= 3.5 GB).",
        "",
        f"rl4text overrides of the quickstart preset: `{' '.join(runs['rl4text'][0]['overrides'])}`",
        "",
        "Per-run step times (s): "
        + "; ".join(f"{n} {[round(s, 1) for s in r['step_s']]}" for n in runs for r in runs[n]),
        "",
        f"Command: `{command}`",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--worker", choices=["rl4text", "trl"])
    p.add_argument("--trl-python", default="/work/trl-venv/bin/python")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--rl4text-override", action="append", default=[], help="extra rl4text config override")
    p.add_argument("--output", default=str(Path(__file__).parent / "results" / "vs_trl.md"))
    args = p.parse_args()
    if args.worker:
        return worker(args)
    runs: dict[str, list[dict]] = {"rl4text": [], "trl": []}
    partial = Path(args.output).with_suffix(".partial.json")
    for _ in range(args.rounds):
        runs["rl4text"].append(launch("rl4text", sys.executable, args))
        partial.write_text(json.dumps(runs) + "\n")
        runs["trl"].append(launch("trl", args.trl_python, args))
        partial.write_text(json.dumps(runs) + "\n")
    text = report(
        runs, args, " ".join(["OMP_NUM_THREADS=" + os.environ.get("OMP_NUM_THREADS", ""), *sys.argv])
    )
    Path(args.output).write_text(text)
    Path(args.output).with_suffix(".json").write_text(json.dumps(runs, indent=1) + "\n")
    print(text)


if __name__ == "__main__":
    main()
