"""``rl4text label new | serve | stats | export`` (wired into ``rl4text.cli`` by :func:`add_label_parser`)."""

from __future__ import annotations

import argparse
import json
import sys


def _errors():
    from rl4text.label.store import LabelError
    from rl4text.tasks import TaskDataError

    return (LabelError, TaskDataError, FileNotFoundError)


def _fail(args: argparse.Namespace, exc: Exception) -> int:
    print(f"rl4text label {args.label_command}: error: {exc}", file=sys.stderr)
    return 2


def cmd_new(args: argparse.Namespace) -> int:
    from rl4text.label.project import new_project

    try:
        summary = new_project(
            args.project,
            args.files,
            names=args.names,
            mode=args.mode,
            per_item=args.per_item,
            gold=args.gold,
            show_references=args.show_references,
        )
    except _errors() as exc:
        return _fail(args, exc)
    print(json.dumps(summary, indent=2))
    print(f"project: {args.project}; next: rl4text label serve {args.project}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from rl4text.label.app import serve

    try:
        serve(args.project, host=args.host, port=args.port, token=args.token)
    except _errors() as exc:
        return _fail(args, exc)
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    from rl4text.label.stats import write_stats

    try:
        _, markdown = write_stats(args.project)
    except _errors() as exc:
        return _fail(args, exc)
    print(markdown)
    print(f"wrote {args.project}/stats.md and stats.json")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from rl4text.label.export import export

    try:
        report = export(
            args.project,
            args.format,
            args.output,
            min_agreement=args.min_agreement,
            drop_failed_gold=args.drop_failed_gold,
            gold_threshold=args.gold_threshold,
        )
    except _errors() as exc:
        return _fail(args, exc)
    print(json.dumps(report, indent=2))
    return 0


def add_label_parser(sub) -> None:
    """Add ``label`` with its subcommands to the ``rl4text`` subparsers."""
    p = sub.add_parser(
        "label", help="people compare outputs: build a project, serve it, agreement stats, export"
    )
    lsub = p.add_subparsers(dest="label_command", required=True)

    n = lsub.add_parser("new", help="comparison items from predictions.jsonl / samples.jsonl files")
    n.add_argument("project", metavar="PROJECT_DIR")
    n.add_argument(
        "--from",
        dest="files",
        nargs="+",
        required=True,
        metavar="FILE",
        help="JSON lines with prompt + completion",
    )
    n.add_argument(
        "--names", nargs="+", metavar="NAME", help="a system name per --from file (default: the paths)"
    )
    n.add_argument("--mode", choices=("pairwise", "ranking"), default="pairwise")
    n.add_argument(
        "--per-item", type=int, default=3, metavar="N", help="annotators per item (overlap; default 3)"
    )
    n.add_argument(
        "--gold", metavar="FILE", help="gold items: pairs or rankings JSON lines with known answers"
    )
    n.add_argument("--show-references", action="store_true", help="show the references beside the prompt")
    n.set_defaults(func=cmd_new)

    s = lsub.add_parser("serve", help="the annotators' web app and JSON API")
    s.add_argument("project", metavar="PROJECT_DIR")
    s.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1; any other host needs --token")
    s.add_argument("--port", type=int, default=8765)
    s.add_argument("--token", help="a secret every request must carry (?token= / X-Label-Token)")
    s.set_defaults(func=cmd_serve)

    st = lsub.add_parser("stats", help="quality control, agreement and win rates; writes stats.md/json")
    st.add_argument("project", metavar="PROJECT_DIR")
    st.set_defaults(func=cmd_stats)

    e = lsub.add_parser("export", help="pairs / rankings JSON lines for `rl4text rm train` (and DPO)")
    e.add_argument("project", metavar="PROJECT_DIR")
    e.add_argument("--format", choices=("pairs", "rankings"), default="pairs")
    e.add_argument("--output", required=True, metavar="FILE")
    e.add_argument(
        "--min-agreement",
        type=float,
        default=0.0,
        metavar="X",
        help="share of annotators on the majority side",
    )
    e.add_argument(
        "--drop-failed-gold", action="store_true", help="leave out annotators below --gold-threshold"
    )
    e.add_argument(
        "--gold-threshold", type=float, default=0.75, metavar="X", help="gold accuracy needed (default 0.75)"
    )
    e.set_defaults(func=cmd_export)
