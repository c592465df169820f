"""RM + PPO against DPO on the same preference pairs, judged by learned reward models and the task metric.

    .venv/bin/python benchmarks/rm_ppo_vs_dpo.py [--seeds 0 1 2] [--output benchmarks/results/rm_ppo_vs_dpo]

Per seed, from ``configs/data/vowel_pairs.jsonl`` (synthetic judgments: of two strings the one with more vowels is
preferred; 20% of the prompts held out, the same split for every model):

1. **RM + PPO**: ``rl4text rm train`` (Bradley–Terry, tiny Llama on the completion) on the training pairs, then
   ``rl4text train configs/smoke_learned_rm.yaml`` (PPO, 30 iterations x 32 episodes on ``toy_letters`` prompts,
   KL coef 0.01) against that RM;
2. **DPO**: ``rl4text dpo configs/dpo_smoke.yaml`` (beta 0.1, 3 epochs) on the same training pairs.

Both policies start from the same random tiny Llama (same config and seed). Each policy, and the starting model, is
decoded on the 32 ``val`` prompts of ``toy_letters`` (greedy, and sampled at temperature 1) and scored by: the true
vowel share (``char_fraction``, what the judgments were about), the RM that PPO optimised (normalised score), and an
*independent* RM trained on the same pairs with another seed (PPO never saw it, so it measures less
over-optimisation of the RM's quirks). Finished runs are reused. Writes ``<output>.json`` and ``<output>.md``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import time
from pathlib import Path

from rl4text.commands.eval import evaluate_model, run_model_config
from rl4text.compare import mean_ci
from rl4text.config import load_config
from rl4text.dpo.config import load_dpo_config
from rl4text.dpo.train import train_dpo
from rl4text.rm.config import load_rm_config
from rl4text.rm.train import train_rm
from rl4text.train import train

PAIRS = "configs/data/vowel_pairs.jsonl"
QUIET = ["tracking.wandb.enabled=false", "tracking.progress=none", "tracking.print_every=0"]
RM_OVERRIDES = ["data.format=pairs", f"data.path={PAIRS}", "data.held_out=0.2", "eval.metrics=[]", *QUIET]
INDEPENDENT_RM_SEED = 100  # the independent judge of seed s is trained with seed 100 + s


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def reward_model(runs: Path, seed: int) -> tuple[Path, dict]:
    """Train (or reuse) a Bradley–Terry RM on the training pairs; its folder and held-out agreement."""
    out = runs / f"rm-seed{seed}"
    if not (out / "eval.json").is_file():
        cfg = load_rm_config("configs/rm_smoke.yaml", [*RM_OVERRIDES, f"train.seed={seed}"])
        seconds = timed(lambda: train_rm(cfg, out, overwrite=True, quiet=True))
        print(f"rm seed {seed}: {seconds:.1f}s", flush=True)
    result = json.loads((out / "eval.json").read_text())
    return out, {
        "pairwise_accuracy": result["held_out"]["reward_model"]["pairwise_accuracy"],
        **result["train"],
    }


def ppo_run(runs: Path, seed: int, rm_dir: Path) -> Path:
    out = runs / f"ppo-seed{seed}"
    if not (out / "eval.json").is_file():
        overrides = [f"reward.components.0.args.path={rm_dir}", f"train.seed={seed}", "eval.every=0", *QUIET]
        seconds = timed(
            lambda: train(load_config("configs/smoke_learned_rm.yaml", overrides), out, overwrite=True)
        )
        (out / "seconds.json").write_text(json.dumps({"train_s": seconds}))
        print(f"ppo seed {seed}: {seconds:.1f}s", flush=True)
    return out


def dpo_run(runs: Path, seed: int) -> tuple[Path, dict]:
    out = runs / f"dpo-seed{seed}"
    if not (out / "eval.json").is_file():
        cfg = load_dpo_config("configs/dpo_smoke.yaml", [f"train.seed={seed}", "train.eval_every=0"])
        seconds = timed(lambda: train_dpo(cfg, out, overwrite=True))
        (out / "seconds.json").write_text(json.dumps({"train_s": seconds}))
        print(f"dpo seed {seed}: {seconds:.1f}s", flush=True)
    return out, json.loads((out / "eval.json").read_text())


def judge(run_dir: Path | None, seed: int, rm_dir: Path, independent_rm: Path) -> dict:
    """Scores of a policy (a run's ``model/``, or the starting model when ``run_dir`` is None) on the val prompts."""
    out = {}
    for decoding, extra in (("greedy", []), ("sampled", ["eval.do_sample=true", "eval.temperature=1.0"])):
        cfg = load_config(
            "configs/smoke_learned_rm.yaml",
            [
                f"reward.components=[{{name: char_fraction, weight: 1.0, args: {{chars: aeiou}}}}, "
                f"{{name: learned_rm, weight: 0.0, args: {{path: {rm_dir}}}}}, "
                f"{{name: learned_rm, weight: 0.0, args: {{path: {independent_rm}}}}}]",
                f"train.seed={seed}",
                *QUIET,
                *extra,
            ],
        )
        model_cfg = run_model_config(cfg, run_dir) if run_dir is not None else None
        scores, _ = evaluate_model(cfg, "val", 32, model_cfg)
        out[decoding] = {
            "vowel_share": scores["reward/char_fraction"],
            "rm_optimised": scores["reward/learned_rm"],  # repeated component names get _2, _3, ...
            "rm_independent": scores["reward/learned_rm_2"],
            "response_length": scores["response_length"],
            "eos_rate": scores["eos_rate"],
        }
    return out


METRICS = [
    ("vowel_share", "vowel share (task metric)"),
    ("rm_optimised", "RM that PPO optimised"),
    ("rm_independent", "independent RM"),
    ("response_length", "response length"),
    ("eos_rate", "EOS rate"),
]


def cell(values: list[float]) -> str:
    mean, half = mean_ci(values)
    return f"{mean:.3f}" if half is None else f"{mean:.3f} ± {half:.3f}"


def markdown(record: dict) -> str:
    seeds, runs = record["seeds"], record["runs"]
    lines = [
        "# RM + PPO vs DPO on the same preference pairs (smoke scale)",
        "",
        f"{record['date']}; seeds {seeds}; mean ± half-width of the 95% Student t interval over seeds "
        f"(t = {record['t']:.2f} for {len(seeds)} seeds). Data: `{PAIRS}` ({record['data']['train_pairs']} training "
        f"pairs, {record['data']['held_out_pairs']} held out). Policies decoded on the 32 `val` prompts of "
        "`toy_letters`. Both policies start from the same random tiny Llama.",
        "",
        f"Command: `{record['command']}`",
        "",
    ]
    for decoding in ("greedy", "sampled"):
        lines += [f"**{decoding} decoding**", "", "| policy | " + " | ".join(m[1] for m in METRICS) + " |"]
        lines.append("|---" * (len(METRICS) + 1) + "|")
        for name, label in (("start", "starting model"), ("ppo", "RM + PPO"), ("dpo", "DPO")):
            row = [cell([runs[str(s)][name][decoding][m] for s in seeds]) for m, _ in METRICS]
            lines.append(f"| {label} | " + " | ".join(row) + " |")
        diff = [
            cell([runs[str(s)]["dpo"][decoding][m] - runs[str(s)]["ppo"][decoding][m] for s in seeds])
            for m, _ in METRICS
        ]
        lines += ["| DPO − PPO (paired by seed) | " + " | ".join(diff) + " |", ""]
    held = [
        ("RM held-out pairwise accuracy", [runs[str(s)]["rm"]["pairwise_accuracy"] for s in seeds]),
        (
            "independent RM held-out pairwise accuracy",
            [runs[str(s)]["rm_independent"]["pairwise_accuracy"] for s in seeds],
        ),
        (
            "DPO held-out preference accuracy (implicit reward)",
            [runs[str(s)]["dpo_eval"]["preference_accuracy"] for s in seeds],
        ),
        (
            "training seconds: RM + PPO",
            [runs[str(s)]["seconds"]["rm"] + runs[str(s)]["seconds"]["ppo"] for s in seeds],
        ),
        ("training seconds: DPO", [runs[str(s)]["seconds"]["dpo"] for s in seeds]),
    ]
    lines += ["| on the held-out pairs / cost | value |", "|---|---|"]
    lines += [f"| {label} | {cell(values)} |" for label, values in held]
    return "\n".join(lines) + "\n"


def one_seed(runs: Path, seed: int) -> dict:
    rm_dir, rm_info = reward_model(runs, seed)
    independent_dir, independent_info = reward_model(runs, INDEPENDENT_RM_SEED + seed)
    ppo_dir = ppo_run(runs, seed, rm_dir)
    dpo_dir, dpo_eval = dpo_run(runs, seed)
    seconds = {
        "rm": rm_info["seconds"],
        "ppo": json.loads((ppo_dir / "seconds.json").read_text())["train_s"],
        "dpo": json.loads((dpo_dir / "seconds.json").read_text())["train_s"],
    }
    return {
        "rm": rm_info,
        "rm_independent": independent_info,
        "dpo_eval": {k: v for k, v in dpo_eval.items() if k != "data"},
        "data": dpo_eval["data"],
        "seconds": seconds,
        **{
            name: judge(d, seed, rm_dir, independent_dir)
            for name, d in (("start", None), ("ppo", ppo_dir), ("dpo", dpo_dir))
        },
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--runs", default="runs/rm_ppo_vs_dpo", help="folder of the individual runs")
    p.add_argument("--output", default="benchmarks/results/rm_ppo_vs_dpo", help="results prefix")
    args = p.parse_args()
    runs = Path(args.runs)
    results = {str(s): one_seed(runs, s) for s in args.seeds}
    from rl4text.compare import t_critical

    record = {
        "date": str(datetime.date.today()),
        "command": "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/rm_ppo_vs_dpo.py --seeds "
        + " ".join(map(str, args.seeds)),
        "seeds": args.seeds,
        "t": t_critical(len(args.seeds) - 1) if len(args.seeds) > 1 else float("nan"),
        "data": results[str(args.seeds[0])]["data"],
        "runs": results,
    }
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.with_suffix(".json").write_text(json.dumps(record, indent=1) + "\n")
    output.with_suffix(".md").write_text(markdown(record))
    print(markdown(record))


if __name__ == "__main__":
    main()
