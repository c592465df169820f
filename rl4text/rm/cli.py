"""``rl4text rm train | score | calibrate``: the reward-model subcommands (wired into ``rl4text.cli``)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def _fail(args: argparse.Namespace, exc: Exception) -> int:
    print(f"rl4text rm {args.rm_command}: error: {exc}", file=sys.stderr)
    return 2


def _errors():
    from rl4text.config import ConfigError
    from rl4text.registry import RegistryError
    from rl4text.runtime import RunError
    from rl4text.tasks import TaskDataError

    return (ConfigError, RegistryError, TaskDataError, RunError, FileNotFoundError, ValueError)


def cmd_rm_train(args: argparse.Namespace) -> int:
    try:
        from rl4text.rm.config import load_rm_config
        from rl4text.rm.evaluate import agreement_table
        from rl4text.rm.train import train_rm

        cfg = load_rm_config(args.config, list(args.overrides))
        out = Path(
            args.output_dir or Path("runs") / f"{Path(args.config).stem}-{time.strftime('%Y%m%d-%H%M%S')}"
        )
        if args.resume and not args.output_dir:
            raise ValueError("--resume needs --output-dir (the reward-model folder to continue)")
        result = train_rm(cfg, out, resume=args.resume, overwrite=args.overwrite)
    except _errors() as exc:
        return _fail(args, exc)
    if "held_out" in result:
        print(agreement_table(result["held_out"]))
    print(f"reward model folder: {out}")
    return 0


def _score_file(args: argparse.Namespace):
    from rl4text.rm.data import read_texts
    from rl4text.rm.model import RewardModel

    rm = RewardModel(args.rm_dir, device=args.device)
    prompts, completions = read_texts(args.file)
    return rm, prompts, completions, rm.raw(prompts, completions, batch_size=args.batch_size)


def cmd_rm_score(args: argparse.Namespace) -> int:
    try:
        rm, prompts, completions, raw = _score_file(args)
    except _errors() as exc:
        return _fail(args, exc)
    norm = rm.normalization
    std = norm["std"] if norm["std"] > 0 else 1.0
    lines = [
        json.dumps({"prompt": p, "completion": c, "score": (r - norm["mean"]) / std, "raw": r})
        for p, c, r in zip(prompts, completions, raw)
    ]
    text = "\n".join(lines) + ("\n" if lines else "")
    if args.output:
        Path(args.output).write_text(text)
        print(f"wrote {len(lines)} scores to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def cmd_rm_calibrate(args: argparse.Namespace) -> int:
    from rl4text.rm.model import normalization_stats, write_meta

    try:
        rm, _, _, raw = _score_file(args)
    except _errors() as exc:
        return _fail(args, exc)
    if len(raw) < 2:
        return _fail(args, ValueError(f"{args.file}: calibration needs at least 2 texts, got {len(raw)}"))
    rm.meta["normalization"] = normalization_stats(raw, f"file:{args.file}")
    write_meta(rm.folder, rm.meta)
    print(json.dumps(rm.meta["normalization"]))
    return 0


def add_rm_parser(sub) -> None:
    """Add ``rm`` with its subcommands to the ``rl4text`` subparsers."""
    p = sub.add_parser("rm", help="reward models from human judgments: train, score, calibrate")
    rm_sub = p.add_subparsers(dest="rm_command", required=True)

    t = rm_sub.add_parser("train", help="train a reward model from a YAML config (see configs/rm_*.yaml)")
    t.add_argument("config", help="YAML preset")
    t.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.epochs=2 data.held_out=0.3")
    t.add_argument("--output-dir", help="reward-model folder (default: runs/<config>-<time>)")
    t.add_argument("--overwrite", action="store_true", help="replace an existing folder")
    t.add_argument("--resume", action="store_true", help="continue from the folder's last checkpoint")
    t.set_defaults(func=cmd_rm_train, trailing="overrides")

    file_help = (
        "JSON lines (.jsonl/.json[.gz]) with 'completion' and optional 'prompt', "
        "or a plain text file with one completion a line"
    )
    for name, func, help_text in (
        (
            "score",
            cmd_rm_score,
            "score texts; prints JSON lines with the normalised 'score' and the 'raw' one",
        ),
        (
            "calibrate",
            cmd_rm_calibrate,
            "store the mean/std of the RM's scores of these texts "
            "(e.g. initial-policy samples) as the normalisation of the learned_rm reward",
        ),
    ):
        s = rm_sub.add_parser(name, help=help_text)
        s.add_argument("rm_dir", metavar="RM_DIR", help="a folder written by `rl4text rm train`")
        s.add_argument("file", metavar="FILE", help=file_help)
        if name == "score":
            s.add_argument("--output", help="write the JSON lines here instead of stdout")
        s.add_argument("--batch-size", type=int, default=32)
        s.add_argument("--device", default="auto")
        s.set_defaults(func=func)
