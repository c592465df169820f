"""Reading task rows through ``datasets.load_dataset``: a Hub dataset, or a local mirror in the Hub's layout.

``datasets`` is imported here only, when a task first reads a Hub split (``pip install 'rl4text[hub]'``).
Every failure becomes a :class:`~rl4text.tasks.TaskDataError` that names the dataset, config and split.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from rl4text.tasks import TaskDataError

# the file types that a ``path`` naming one file is read as (``datasets``' packaged builders)
FILE_BUILDERS = {
    ".jsonl": "json",
    ".json": "json",
    ".parquet": "parquet",
    ".csv": "csv",
    ".tsv": "csv",
    ".arrow": "arrow",
}


def _import_load_dataset(task: str):
    try:
        from datasets import load_dataset
    except ImportError as exc:
        raise TaskDataError(
            f"{task}: reading a Hub dataset needs the `datasets` package (pip install 'rl4text[hub]' or "
            "pip install datasets); or give the task local files (RL4TEXT_DATA, see the task's docstring)"
        ) from exc
    return load_dataset


def hub_reachable(hub_id: str, timeout: float = 3.0) -> bool:
    """Can ``load_dataset(hub_id)`` be tried without stalling? One metadata request with a short timeout.

    A local folder, ``HF_HUB_OFFLINE=1`` (``datasets`` then reads its cache at once) and an installed
    ``datasets`` that the probe cannot judge count as reachable; a failed connection does not (``datasets``
    would retry it for about 30 s before giving up).
    """
    if Path(hub_id).expanduser().exists():
        return True
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return True
    try:
        from huggingface_hub import dataset_info
    except ImportError:
        return False
    try:
        dataset_info(hub_id, timeout=timeout)
    except (
        Exception
    ) as exc:  # httpx/requests connection errors, timeouts, or an HTTP error from a reachable Hub
        return getattr(exc, "response", None) is not None
    return True


def _split_spec(split: str, max_samples: int | None) -> str:
    if max_samples is None:
        return split
    if max_samples < 1:
        raise TaskDataError(f"max_samples must be a positive integer, got {max_samples}")
    return f"{split}[:{int(max_samples)}]"


def hub_rows(
    task: str,
    hub_id: str,
    split: str,
    config: str | None = None,
    path: str | Path | None = None,
    revision: str | None = None,
    max_samples: int | None = None,
    streaming: bool = False,
    offline_hint: str | None = None,
) -> tuple[Iterator[dict], str]:
    """Rows of ``split`` and a description of where they come from (for error messages).

    ``path``, when given, replaces ``hub_id``: a folder in the Hub dataset's layout (its ``README.md`` may
    declare configs; a sub-folder named ``config`` is used as ``data_dir`` otherwise) or one data file
    (JSON lines, parquet, CSV/TSV, arrow; optionally compressed), whose rows are the requested split.
    ``max_samples`` keeps the first rows (a ``split[:N]`` slice; with ``streaming`` only those rows are
    downloaded). ``offline_hint`` ends the error raised when the dataset cannot be reached.
    """
    load_dataset = _import_load_dataset(task)
    spec = split if streaming else _split_spec(split, max_samples)
    kwargs: dict = {"split": spec, "streaming": streaming}
    if revision:
        kwargs["revision"] = revision
    if path is not None:
        local = Path(path).expanduser()
        if not local.exists():
            raise TaskDataError(
                f"{task}: path {local} does not exist (a folder in the Hub layout, or a file)"
            )
        if local.is_file():
            suffix = Path(local.stem).suffix if local.suffix in (".gz", ".bz2", ".xz") else local.suffix
            builder = FILE_BUILDERS.get(suffix)
            if builder is None:
                raise TaskDataError(
                    f"{task}: cannot read {local} (suffix {suffix!r}); use one of {sorted(FILE_BUILDERS)}"
                )
            source, where = builder, f"{local}[{split}]"
            kwargs["data_files"] = {split: str(local)}
            if suffix == ".tsv":
                kwargs["delimiter"] = "\t"
            config = None
        else:
            source, where = str(local), f"{local}[{config + '/' if config else ''}{split}]"
            if config and (local / config).is_dir() and not (local / "README.md").is_file():
                kwargs["data_dir"], config = config, None
    else:
        source, where = hub_id, f"{hub_id}[{config + '/' if config else ''}{split}]"
    try:
        try:
            ds = load_dataset(source, config, **kwargs)
        except ValueError as exc:
            if path is None or config is None or "BuilderConfig" not in str(exc):
                raise
            ds = load_dataset(source, **kwargs)  # a local mirror with one (default) config
    except TaskDataError:
        raise
    except ValueError as exc:  # an unknown split or config
        raise TaskDataError(f"{task}: cannot read {where}: {exc}") from exc
    except RuntimeError as exc:
        hint = (
            " (a Hub dataset built by a loading script: try revision='refs/convert/parquet', or a local mirror "
            "via path=)"
            if "script" in str(exc).lower()
            else ""
        )
        raise TaskDataError(f"{task}: cannot read {where}: {exc}{hint}") from exc
    except (OSError, ConnectionError) as exc:  # offline, not found, no access (DatasetNotFoundError is one)
        hint = (
            offline_hint
            or f"without Hub access, pass path= a local mirror of {hub_id} (its folder layout, or a file)"
        )
        raise TaskDataError(f"{task}: cannot read {where}: {exc}; {hint}") from exc
    if streaming and max_samples is not None:
        if max_samples < 1:
            raise TaskDataError(f"max_samples must be a positive integer, got {max_samples}")
        ds = ds.take(int(max_samples))
    return iter(ds), where


def first(rows: list, max_samples: int | None) -> list:
    """The first ``max_samples`` rows (all when None); a non-positive value is an error."""
    if max_samples is None:
        return rows
    if max_samples < 1:
        raise TaskDataError(f"max_samples must be a positive integer, got {max_samples}")
    return rows[: int(max_samples)]
