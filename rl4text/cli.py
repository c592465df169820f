"""The ``rl4text`` command: ``train``, ``sft``, ``eval``, ``bench``, ``rm``, ``dpo``, ``compare``, ``list``, ``quickstart``."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

PRESETS = Path(__file__).parent / "presets"


def _default_output_dir(config_path: str | None) -> Path:
    stem = Path(config_path).stem if config_path else "run"
    return Path("runs") / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"


def _load_with_seed(args: argparse.Namespace):
    """``args.config`` with ``args.overrides``, ``--seed N`` as ``train.seed=N``."""
    from rl4text.config import load_config

    overrides = list(args.overrides)
    if args.seed is not None:
        overrides.append(f"train.seed={args.seed}")
    return load_config(args.config, overrides)


def cmd_train(args: argparse.Namespace) -> int:
    from rl4text.train import check_config_runs, train

    cfg = _load_with_seed(args)
    check_config_runs(cfg, args.config)
    out = Path(args.output_dir) if args.output_dir else _default_output_dir(args.config)
    if args.resume and not args.output_dir:
        raise SystemExit("rl4text train: --resume needs --output-dir (the run folder to continue)")
    final = train(cfg, out, resume=args.resume, overwrite=args.overwrite)
    print(json.dumps(final, indent=2))
    print(f"run folder: {out}")
    return 0


def cmd_sft(args: argparse.Namespace) -> int:
    from rl4text.sft import check_sft_config, sft

    cfg = _load_with_seed(args)
    check_sft_config(cfg, args.config)
    out = Path(args.output_dir) if args.output_dir else _default_output_dir(args.config)
    if args.resume and not args.output_dir:
        raise SystemExit("rl4text sft: --resume needs --output-dir (the run folder to continue)")
    final = sft(cfg, out, resume=args.resume, overwrite=args.overwrite)
    print(json.dumps(final, indent=2))
    print(f"run folder: {out} (model: {out / 'model'})")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from rl4text.registry import REGISTRIES

    for title, registry in REGISTRIES.items():
        print(f"{title}:")
        for name in registry.names():
            print(f"  {name}")
    return 0


def cmd_quickstart(args: argparse.Namespace) -> int:
    from rl4text.quickstart import run_quickstart

    return run_quickstart(args.output_dir, args.overrides)


def cmd_compare(args: argparse.Namespace) -> int:
    from rl4text.compare import CompareError, compare

    try:
        result = compare(args.run_dirs, metrics=args.metric, output=args.output)
    except CompareError as exc:
        print(f"rl4text compare: error: {exc}", file=sys.stderr)
        return 2
    print(result.markdown)
    print("wrote:")
    for path in result.files:
        print(f"  {path}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from rl4text.bench import BenchError, run_bench

    try:
        result = run_bench(args.bench, args.output_dir, args.overrides, args.jobs, args.only, args.report)
    except BenchError as exc:
        print(f"rl4text bench: error: {exc}", file=sys.stderr)
        return 2
    if args.only is None:
        print(result.read_text())
        print(f"wrote {result} and results.json beside it")
    return 0


def add_train_parser(sub) -> None:
    p = sub.add_parser("train", help="train a policy from a YAML config")
    p.add_argument("config", help="YAML preset (see configs/)")
    p.add_argument(
        "overrides", nargs="*", help="dotted overrides, e.g. train.iterations=10 rollout.batch_size=8"
    )
    p.add_argument("--output-dir", help="run folder (default: runs/<config>-<time>)")
    p.add_argument("--seed", type=int, help="shorthand for train.seed=N")
    p.add_argument(
        "--resume", action="store_true", help="continue the run in --output-dir from its last checkpoint"
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    p.set_defaults(func=cmd_train, trailing="overrides")


def add_sft_parser(sub) -> None:
    p = sub.add_parser(
        "sft", help="supervised warm start: teacher forcing on a task's references (the config's sft section)"
    )
    p.add_argument("config", help="YAML preset (see configs/sft_*.yaml)")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. sft.epochs=2 sft.batch_size=64")
    p.add_argument(
        "--output-dir", help="run folder (default: runs/<config>-<time>); the model goes to DIR/model"
    )
    p.add_argument("--seed", type=int, help="shorthand for train.seed=N")
    p.add_argument(
        "--resume", action="store_true", help="continue the run in --output-dir from its last checkpoint"
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    p.set_defaults(func=cmd_sft, trailing="overrides")


def add_small_parsers(sub) -> None:
    """``list``, ``quickstart`` and ``compare``."""
    p = sub.add_parser("list", help="list registered algorithms, rewards, metrics and tasks")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser(
        "quickstart", help="the demo: PPO on SmolLM2-135M-Instruct, Multi30k de->en, chrF reward"
    )
    p.add_argument("overrides", nargs="*", help="dotted overrides of the quickstart preset")
    p.add_argument("--output-dir", help="run folder (default: runs/quickstart-<time>)")
    p.set_defaults(func=cmd_quickstart, trailing="overrides")

    p = sub.add_parser(
        "compare",
        help="group runs by config (seeds together), tabulate final metrics with 95%% CIs and plot curves",
    )
    p.add_argument("run_dirs", nargs="*", metavar="RUN_DIR", help="run folders or W&B offline run folders")
    p.add_argument(
        "--metric",
        action="append",
        metavar="NAME",
        help="final eval metric for the table, without eval/ (repeatable; default: all)",
    )
    p.add_argument(
        "--output", default="compare", metavar="PREFIX", help="writes PREFIX.md and PREFIX_<curve>.png"
    )
    p.set_defaults(func=cmd_compare, trailing="run_dirs")


def add_bench_parser(sub) -> None:
    p = sub.add_parser(
        "bench",
        help="run every (algorithm, seed) of a benchmark, evaluate on test, write results.md/json and plots",
    )
    p.add_argument("bench", metavar="BENCH.yaml", help="benchmark file (see benchmarks/)")
    p.add_argument(
        "overrides", nargs="*", help="extra dotted overrides for every run (e.g. train.device=cuda)"
    )
    p.add_argument(
        "--output-dir", help="benchmark folder (default: the file's output_dir or runs/bench/NAME)"
    )
    p.add_argument("--jobs", type=int, default=1, help="pairs run at once in worker processes (default 1)")
    p.add_argument("--only", metavar="LABEL:SEED", help="run one pair and write no results (what workers do)")
    p.add_argument(
        "--report", action="store_true", help="run nothing; write results of the pairs finished so far"
    )
    p.set_defaults(func=cmd_bench, trailing="overrides")


def build_parser() -> argparse.ArgumentParser:
    from rl4text.commands.eval import add_eval_parser
    from rl4text.rm.cli import add_rm_parser

    parser = argparse.ArgumentParser(
        prog="rl4text", description="Reinforcement learning for text generators."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    add_train_parser(sub)
    add_sft_parser(sub)
    add_small_parsers(sub)
    add_rm_parser(sub)  # rl4text rm train | score | calibrate
    from rl4text.label.cli import add_label_parser

    add_label_parser(sub)  # rl4text label new | serve | stats | export
    from rl4text.dpo.cli import add_dpo_parser

    add_dpo_parser(sub)  # rl4text dpo
    add_eval_parser(sub)
    add_bench_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from rl4text.errors import debug, one_paragraph, user_errors

    parser = build_parser()
    # overrides may follow options (`train C --output-dir D key=value`), which argparse leaves unparsed
    args, extra = parser.parse_known_args(argv)
    if extra:
        dest = getattr(args, "trailing", None)  # the subcommand's list positional (overrides, run folders)
        needs_eq = dest == "overrides"
        stray = [a for a in extra if a.startswith("-") or (needs_eq and "=" not in a)]
        if dest is None or stray:
            parser.error(f"unrecognized arguments: {' '.join(stray or extra)}")
        setattr(args, dest, [*getattr(args, dest), *extra])
    try:
        return args.func(args)
    except KeyboardInterrupt:
        if debug():
            raise
        print(f"rl4text {args.command}: interrupted", file=sys.stderr)
        return 130
    except user_errors() as exc:
        if debug():
            raise
        print(f"rl4text {args.command}: error: {one_paragraph(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
