"""rl4text's RLOO (or GRPO) against Hugging Face TRL's ``RLOOTrainer`` (``GRPOTrainer``), side by side, in one run.

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

Several rl4text configurations alternate with TRL in one run with ``--variant NAME:OVERRIDES`` (repeatable;
OVERRIDES is a shell-quoted list of dotted overrides added to the ``--rl4text-override`` ones), e.g.
``--variant fp32: --variant autocast:model.autocast=true --variant "lora:'model.lora={r: 8, alpha: 16}'"``;
each round runs every variant, then TRL, and the table has one row (and one ratio) per variant. ``--no-trl``
runs the rl4text variants only (to check the plumbing on a tiny model). ``--algorithm grpo`` compares rl4text's
``grpo`` with TRL's ``GRPOTrainer`` on the same workload (both: the GRPO paper's loss, per-sequence token means,
group-std scaling, the k3 KL term with beta 0.05 in the loss, clip 0.2, one gradient step per step), written to
``results/vs_trl_grpo.md`` unless ``--output`` says otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
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
    overrides = [*base_overrides(args), *args.rl4text_override]
    data = load_yaml(preset.read_text(), str(preset))
    data["algorithm"] = {"name": args.algorithm}  # the preset's PPO keys do not apply
    if args.algorithm == "grpo":  # TRL's loss_type="grpo": per-sequence means of the token losses
        data["algorithm"]["loss_aggregation"] = "sequence_mean"
    cfg = config_from_dict(apply_overrides(data, overrides), f"{preset} ({args.algorithm})")
    with tempfile.TemporaryDirectory() as tmp:
        train(cfg, Path(tmp) / "run")
        rows = [r for r in read_jsonl(Path(tmp) / "run" / "metrics.jsonl") if "time/iteration_s" in r]
    steps = [r["time/iteration_s"] for r in rows][args.warmup :]
    tokens = [r["rollout/response_length"] * PROMPTS * K for r in rows][args.warmup :]
    split = [{k: v for k, v in r.items() if k.startswith("time/")} for r in rows]  # rollout / reward / update
    return {"step_s": steps, "tokens": tokens, "overrides": overrides, "time_split": split}


def base_overrides(args) -> list[str]:
    """The RLOO workload as overrides of rl4text's quickstart preset (before the user's own)."""
    return [
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
    ]


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

    grpo = args.algorithm == "grpo"
    config_class, trainer_class = (
        (trl.GRPOConfig, trl.GRPOTrainer) if grpo else (trl.RLOOConfig, trl.RLOOTrainer)
    )
    extra = {"loss_type": "grpo", "scale_rewards": "group", "epsilon": 0.2} if grpo else {}
    with tempfile.TemporaryDirectory() as tmp:
        config = config_class(
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
            **extra,
        )
        trainer = trainer_class(
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


def launch(name: str, python: str, args, overrides: list[str]) -> dict:
    """Run one worker process (``name``: a variant label for rl4text, or ``trl``) and read its RESULT line."""
    worker_kind = "trl" if name == "trl" else "rl4text"
    cmd = [
        python,
        __file__,
        "--worker",
        worker_kind,
        "--warmup",
        str(args.warmup),
        "--steps",
        str(args.steps),
        "--algorithm",
        args.algorithm,
    ]
    cmd += [x for o in overrides for x in ("--rl4text-override", o)]
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


def summary(results: list[dict]) -> tuple[float, float, float, int]:
    """(median s/step, peak RSS GB, generated tokens/s, measured steps) over a setting's processes."""
    steps = [s for r in results for s in r["step_s"]]
    toks = [t for r in results for t in r["tokens"]]
    rss = max(r["peak_rss_gb"] for r in results)
    return statistics.median(steps), rss, sum(toks) / sum(steps), len(steps)


def report(runs: dict[str, list[dict]], args, command: str) -> str:
    import torch

    variants = [n for n in runs if n != "trl"]
    trl = summary(runs["trl"]) if runs.get("trl") else None
    trl_versions = runs["trl"][0].get("versions", {}) if trl else {}
    order = " ".join([*variants, *(["trl"] if trl else [])])
    algo, trainer = args.algorithm, "GRPOTrainer" if args.algorithm == "grpo" else "RLOOTrainer"
    lines = [
        f"# rl4text vs TRL: {algo.upper()} on SmolLM2-135M-Instruct",
        "",
        f"{time.strftime('%Y-%m-%dT%H:%M:%S%z')}; {platform.machine()}, {os.cpu_count()} CPUs, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}; torch {torch.__version__}, "
        f"transformers {trl_versions.get('transformers', '?')}, TRL {trl_versions.get('trl', '?')} (own venv).",
        f"Workload: {PROMPTS} prompts x {K} samples = {PROMPTS * K} episodes per step, {NEW_TOKENS} new tokens, chrF "
        f"reward, KL {KL}, one gradient step per step, lr {LR}; TRL in fp32, rl4text as each row's overrides say. "
        f"Runs alternated {' | '.join([order] * args.rounds)}; each process {args.warmup} warm-up step(s) then "
        f"{args.steps} measured; the machine is shared with other sessions, so absolute times vary, the ratios "
        "are what counts.",
        "",
        "| framework | extra overrides | measured steps | median s/step | peak RSS (GB) | generated tokens/s |",
        "|---|---|---:|---:|---:|---:|",
    ]
    extra = dict(args.variants) if args.variants else {"rl4text": []}
    for name in variants:
        a = summary(runs[name])
        shown = " ".join(extra.get(name, [])) or "(none)"
        lines.append(
            f"| rl4text `{algo}` {name} | `{shown}` | {a[3]} | {a[0]:.1f} | {a[1]:.2f} | {a[2]:.1f} |"
        )
    if trl:
        lines.append(f"| TRL `{trainer}` | fp32 | {trl[3]} | {trl[0]:.1f} | {trl[1]:.2f} | {trl[2]:.1f} |")
    lines.append("")
    for name in variants if trl else []:
        a = summary(runs[name])
        lines.append(
            f"- **{name} / TRL: step time {a[0] / trl[0]:.2f}x (throughput {trl[0] / a[0]:.2f}x), peak RSS "
            f"{a[1] / trl[1]:.2f}x.**"
        )
    if not trl:
        lines.append("TRL was not run (`--no-trl`): no ratios.")
    lines += [
        "",
        "Targets of issue 13: step time <= 0.33x TRL's, peak RSS <= 0.25x TRL's (<= 3.5 GB).",
        "",
        f"rl4text overrides of the quickstart preset (every variant): `{' '.join(args.base_overrides)}`",
        "",
        "Per-run step times (s): "
        + "; ".join(f"{n} {[round(s, 1) for s in r['step_s']]}" for n in runs for r in runs[n]),
        "",
        f"Command: `{command}`",
        "",
    ]
    return "\n".join(lines)


def parse_variant(text: str) -> tuple[str, list[str]]:
    """``NAME:OVERRIDES`` -> (name, overrides split as a shell would)."""
    name, sep, rest = text.partition(":")
    if not sep or not name or name == "trl":
        raise SystemExit(f"--variant {text!r}: expected NAME:OVERRIDES with a NAME other than 'trl'")
    return name, shlex.split(rest)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--worker", choices=["rl4text", "trl"])
    p.add_argument("--trl-python", default="/work/trl-venv/bin/python")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--rl4text-override", action="append", default=[], help="extra rl4text config override")
    p.add_argument(
        "--variant",
        action="append",
        default=[],
        type=parse_variant,
        dest="variants",
        metavar="NAME:OVERRIDES",
        help="an rl4text configuration to alternate with TRL (repeatable)",
    )
    p.add_argument("--no-trl", action="store_true", help="run the rl4text variants only (no ratios)")
    p.add_argument("--algorithm", choices=["rloo", "grpo"], default="rloo")
    p.add_argument("--output", help="default: results/vs_trl.md (rloo), results/vs_trl_grpo.md (grpo)")
    args = p.parse_args()
    if args.output is None:
        name = "vs_trl.md" if args.algorithm == "rloo" else f"vs_trl_{args.algorithm}.md"
        args.output = str(Path(__file__).parent / "results" / name)
    if args.worker:
        return worker(args)
    args.base_overrides = [*base_overrides(args), *args.rl4text_override]
    variants = args.variants or [("rl4text", [])]
    if len({n for n, _ in variants}) != len(variants):
        raise SystemExit("--variant names must differ")
    runs: dict[str, list[dict]] = {name: [] for name, _ in variants}
    if not args.no_trl:
        runs["trl"] = []
    partial = Path(args.output).with_suffix(".partial.json")
    for _ in range(args.rounds):
        for name, extra in variants:
            runs[name].append(launch(name, sys.executable, args, [*args.rl4text_override, *extra]))
            runs[name][-1]["variant_overrides"] = extra
            partial.write_text(json.dumps(runs) + "\n")
        if not args.no_trl:
            runs["trl"].append(launch("trl", args.trl_python, args, []))
            partial.write_text(json.dumps(runs) + "\n")
    command = " ".join(
        ["OMP_NUM_THREADS=" + os.environ.get("OMP_NUM_THREADS", ""), *map(shlex.quote, sys.argv)]
    )
    text = report(runs, args, command)
    Path(args.output).write_text(text)
    Path(args.output).with_suffix(".json").write_text(json.dumps(runs, indent=1) + "\n")
    partial.unlink(missing_ok=True)
    print(text)


if __name__ == "__main__":
    main()
