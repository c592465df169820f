"""``rl4text eval``: decode a split with a config's model or a finished run's ``model/``, write ``eval.json`` and
``predictions.jsonl``. Also what ``rl4text bench`` uses to score each run on the test split."""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

from rl4text.evaluate import Decoding, evaluate
from rl4text.runtime import pick_device, seed_everything, write_text_atomic


def run_model_config(cfg, run_dir):
    """The model section that loads a finished run's ``model/`` folder (weights and tokenizer saved there)."""
    folder = Path(run_dir) / "model"
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"{run_dir}: no trained model in {folder} (the run is unfinished or ran with "
            "train.save_final_model=false); evaluate its config instead to score the starting model"
        )
    return dataclasses.replace(
        cfg.model, name_or_path=str(folder), gguf_file=None, random_init=None, tokenizer=None
    )


def evaluate_model(
    cfg, split: str, max_samples: int | None = None, model_cfg=None
) -> tuple[dict, list[dict]]:
    """Decode ``split`` of ``cfg``'s task with ``cfg.eval``'s decoding and score the reward and the metric suite.

    ``model_cfg`` replaces ``cfg.model`` (e.g. a run's trained ``model/`` folder). Returns ``(scores, rows)``.
    """
    from rl4text.models import load_model, load_tokenizer
    from rl4text.registry import TASKS
    from rl4text.rewards import build_reward
    from rl4text.text import uses_chat_template

    model_cfg = model_cfg or cfg.model
    seed_everything(cfg.train.seed)
    device = pick_device(cfg.train.device)
    tokenizer = load_tokenizer(model_cfg)
    model, seq2seq = load_model(model_cfg, tokenizer)
    model.to(device)
    task = TASKS.build(cfg.task.name, **cfg.task.args)
    samples = task.split(split)[:max_samples]
    use_chat = uses_chat_template(model_cfg.use_chat_template, tokenizer, seq2seq)
    return evaluate(
        model,
        seq2seq,
        tokenizer,
        samples,
        build_reward(cfg.reward),
        cfg.eval.metrics or task.metrics,
        decoding=Decoding.from_config(cfg),
        use_chat_template=use_chat,
    )


def write_evaluation(out, scores: dict, rows: list[dict], info: dict) -> None:
    """``out/eval.json`` (``info`` + metrics) and ``out/predictions.jsonl`` (one row per sample), atomically."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "predictions.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    write_text_atomic(out / "eval.json", json.dumps({**info, "metrics": scores}, indent=2) + "\n")


def _target(args: argparse.Namespace):
    """``(cfg, config_path, model_cfg, out)`` for a run folder or a YAML config."""
    from rl4text.config import load_config

    target = Path(args.target)
    if target.is_dir():  # a run folder: its saved config and its trained model/
        config_path = target / "config.yaml"
        if not config_path.is_file():
            raise SystemExit(
                f"rl4text eval: {target} is not a run folder (no config.yaml) and not a YAML config"
            )
        cfg = load_config(config_path, args.overrides)
        try:
            model_cfg = run_model_config(cfg, target)
        except FileNotFoundError as exc:
            raise SystemExit(f"rl4text eval: error: {exc}") from exc
        return (
            cfg,
            config_path,
            model_cfg,
            Path(args.output_dir) if args.output_dir else target / f"eval-{args.split}",
        )
    cfg = load_config(target, args.overrides)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return (
        cfg,
        target,
        None,
        Path(args.output_dir or Path("runs") / f"eval-{target.stem}-{args.split}-{stamp}"),
    )


def cmd_eval(args: argparse.Namespace) -> int:
    from rl4text.train import check_config_runs

    cfg, config_path, model_cfg, out = _target(args)
    check_config_runs(cfg, str(config_path))
    if (out / "eval.json").exists() and not args.overwrite:
        raise SystemExit(f"rl4text eval: {out / 'eval.json'} exists; pass --overwrite or choose --output-dir")
    scores, rows = evaluate_model(cfg, args.split, args.max_samples, model_cfg)
    info = {
        "model": (model_cfg or cfg.model).name_or_path or "random_init",
        "task": cfg.task.name,
        "split": args.split,
        "n": len(rows),
        "decoding": Decoding.from_config(cfg).describe(),
    }
    write_evaluation(out, scores, rows, info)
    print(json.dumps(scores, indent=2))
    print(f"wrote {out / 'eval.json'} and {out / 'predictions.jsonl'}")
    return 0


def add_eval_parser(sub) -> None:
    p = sub.add_parser(
        "eval",
        help="decode a split with a config's model or a run's trained model; write eval.json + predictions",
    )
    p.add_argument(
        "target", metavar="CONFIG_OR_RUN_DIR", help="a YAML config, or a run folder (uses its model/)"
    )
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. eval.num_beams=4 eval.do_sample=true")
    p.add_argument("--split", default="test", help="task split to decode (default: test)")
    p.add_argument("--max-samples", type=int, help="decode at most N samples (default: the whole split)")
    p.add_argument(
        "--output-dir", help="where eval.json and predictions.jsonl go (default: RUN_DIR/eval-SPLIT)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing eval.json there")
    p.set_defaults(func=cmd_eval, trailing="overrides")
