"""``rl4text dpo CONFIG [key=value ...]``: the DPO subcommand (wired into ``rl4text.cli`` by :func:`add_dpo_parser`)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def cmd_dpo(args: argparse.Namespace) -> int:
    from rl4text.config import ConfigError
    from rl4text.dpo.config import load_dpo_config
    from rl4text.dpo.train import train_dpo
    from rl4text.registry import RegistryError
    from rl4text.runtime import RunError
    from rl4text.tasks import TaskDataError

    try:
        overrides = list(args.overrides) + ([f"train.seed={args.seed}"] if args.seed is not None else [])
        cfg = load_dpo_config(args.config, overrides)
        if args.resume and not args.output_dir:
            raise ConfigError("--resume needs --output-dir (the run folder to continue)")
        out = Path(
            args.output_dir or Path("runs") / f"{Path(args.config).stem}-{time.strftime('%Y%m%d-%H%M%S')}"
        )
        final = train_dpo(cfg, out, resume=args.resume, overwrite=args.overwrite)
    except (ConfigError, RegistryError, TaskDataError, RunError, FileNotFoundError, ValueError) as exc:
        print(f"rl4text dpo: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(final, indent=2))
    print(f"run folder: {out} (model: {out / 'model'})")
    return 0


def add_dpo_parser(sub) -> None:
    """Add ``dpo`` to the ``rl4text`` subparsers."""
    p = sub.add_parser(
        "dpo", help="direct preference optimisation from preference pairs (see configs/dpo_*.yaml)"
    )
    p.add_argument("config", help="YAML preset")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. dpo.beta=0.2 train.max_steps=100")
    p.add_argument(
        "--output-dir", help="run folder (default: runs/<config>-<time>); the model goes to DIR/model"
    )
    p.add_argument("--seed", type=int, help="shorthand for train.seed=N")
    p.add_argument(
        "--resume", action="store_true", help="continue the run in --output-dir from its last checkpoint"
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    p.set_defaults(func=cmd_dpo, trailing="overrides")
