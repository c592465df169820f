"""Summarization tasks: SciTLDR, CNN/DailyMail (with the SummEval articles offline) and XSum.

Prompt convention as in :mod:`rl4text.tasks.translation`: ``instruction`` is a template with ``{text}`` (the
document) for instruction-tuned causal models; ``instruction: null`` gives ``prefix + document`` for seq2seq
models (``prefix`` e.g. T5's ``"summarize: "``). ``max_source_chars`` cuts long documents (at a word boundary)
before they are formatted; ``max_samples`` keeps the first rows of each split.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from rl4text.registry import register_task
from rl4text.tasks import Task, TaskDataError, check_sample, data_root, read_jsonl_rows
from rl4text.tasks.hub import first, hub_rows
from rl4text.tasks.translation import HUB_SPLITS, prompt_formatter

SCITLDR_HUB = "allenai/scitldr"
SCITLDR_FILES = {"train": "train.jsonl", "val": "dev.jsonl", "test": "test.jsonl"}
CNN_DM_HUB = "abisee/cnn_dailymail"
XSUM_HUB = "EdinburghNLP/xsum"
SUMMEVAL_FILE = "summeval/summeval_100docs.jsonl"

SCITLDR_INSTRUCTION = "Summarize this scientific abstract in one sentence.\n\n{text}"
CNN_DM_INSTRUCTION = "Summarize this news article in three or four sentences.\n\n{text}"
XSUM_INSTRUCTION = "Summarize this article in one sentence.\n\n{text}"


def truncate(text: str, max_chars: int | None) -> str:
    """``text`` cut to at most ``max_chars`` characters, at the last word boundary when there is one."""
    if max_chars is None or len(text) <= max_chars:
        return text
    if max_chars < 1:
        raise TaskDataError(f"max_source_chars must be a positive integer, got {max_chars}")
    cut = text[:max_chars]
    space = cut.rfind(" ")
    return (cut[:space] if space > max_chars // 2 else cut).rstrip()


def _summary_sample(
    source: str, refs: list[str], meta: dict, prompt: Callable[[str], str], where: str, max_chars: int | None
) -> dict:
    if not source.strip():
        raise TaskDataError(f"{where}: the document is empty")
    refs = [r.strip() for r in refs if isinstance(r, str) and r.strip()]
    if not refs:
        raise TaskDataError(f"{where}: no non-empty reference summary")
    return check_sample(
        {"prompt": prompt(truncate(source, max_chars)), "references": refs, "meta": meta}, where
    )


def _field(row: dict, key: str, where: str):
    if key not in row:
        raise TaskDataError(f"{where}: missing field {key!r}; fields present: {sorted(row)}")
    return row[key]


def _string_field(row: dict, key: str, where: str) -> str:
    value = _field(row, key, where)
    if not isinstance(value, str) or not value.strip():
        raise TaskDataError(f"{where}: field {key!r} must be a non-empty string, got {value!r:.80}")
    return value


# ---------------------------------------------------------------------------------------------- SciTLDR


def _scitldr_sample(row: dict, where: str, prompt, max_chars) -> dict:
    source, target = _field(row, "source", where), _field(row, "target", where)
    if isinstance(source, str):
        source = [source]
    if not isinstance(source, list) or not all(isinstance(s, str) for s in source):
        raise TaskDataError(f"{where}: field 'source' must be a list of sentences")
    if isinstance(target, str):
        target = [target]
    if not isinstance(target, list) or not all(isinstance(t, str) for t in target):
        raise TaskDataError(f"{where}: field 'target' must be a list of reference strings")
    if not any(t.strip() for t in target):
        raise TaskDataError(f"{where}: field 'target' holds no non-empty reference")
    abstract = " ".join(s.strip() for s in source if s.strip())
    if not abstract:
        raise TaskDataError(f"{where}: field 'source' is empty")
    meta = {"paper_id": row.get("paper_id"), "source": abstract}
    return _summary_sample(abstract, target, meta, prompt, where, max_chars)


@register_task("scitldr")
def scitldr_task(
    instruction: str | None = SCITLDR_INSTRUCTION,
    prefix: str = "",
    max_samples: int | None = None,
    max_source_chars: int | None = None,
    path: str | None = None,
    revision: str | None = None,
) -> Task:
    """SciTLDR-A (Cachola et al. 2020): a paper abstract -> a one-sentence TLDR; all the references kept
    (test ≈ 3.2 per abstract). Splits train (1,992), val (= dev, 619), test (618).

    Reads ``$RL4TEXT_DATA/scitldr/{train,dev,test}.jsonl`` (``source``: list of sentences, joined with spaces;
    ``target``: list of TLDRs); without them the Hub dataset ``allenai/scitldr`` (config ``Abstract``, same
    fields; ``path``: a local mirror in its layout). Meta: ``paper_id``, ``source`` (the abstract).
    """
    prompt = prompt_formatter(instruction, prefix)

    def load(split: str):
        def read() -> list[dict]:
            root = data_root()
            if path is None and root is not None and (root / "scitldr").is_dir():
                file = root / "scitldr" / SCITLDR_FILES[split]
                rows = []
                for row, where in read_jsonl_rows(file):
                    rows.append(_scitldr_sample(row, where, prompt, max_source_chars))
                    if max_samples is not None and len(rows) >= max_samples:
                        break
                return first(rows, max_samples)
            rows, where = hub_rows(
                "scitldr",
                SCITLDR_HUB,
                HUB_SPLITS[split],
                config="Abstract",
                path=path,
                revision=revision,
                max_samples=max_samples,
                offline_hint="offline, set RL4TEXT_DATA to a folder holding scitldr/{train,dev,test}.jsonl "
                f"(see DATA.md) or pass path= a local mirror of {SCITLDR_HUB}",
            )
            return [
                _scitldr_sample(row, f"{where} row {i}", prompt, max_source_chars)
                for i, row in enumerate(rows)
            ]

        return read

    return Task("scitldr", {s: load(s) for s in SCITLDR_FILES}, metrics=["rouge", "bleu"])


# ------------------------------------------------------------------------------------- CNN/DM and XSum


def _hub_summaries(
    rows: Iterable[dict], where: str, doc_key: str, sum_key: str, prompt, max_chars
) -> list[dict]:
    out = []
    for i, row in enumerate(rows):
        at = f"{where} row {i}"
        doc, summary = _string_field(row, doc_key, at), _string_field(row, sum_key, at)
        meta = {"id": row["id"]} if "id" in row else {}
        out.append(_summary_sample(doc, [summary], meta, prompt, at, max_chars))
    return out


def _hub_summary_loader(
    name: str, hub_id: str, config: str | None, doc_key: str, sum_key: str, prompt, opts: dict
) -> Callable[[str], Callable[[], list[dict]]]:
    def load(split: str):
        def read() -> list[dict]:
            rows, where = hub_rows(
                name,
                hub_id,
                HUB_SPLITS[split],
                config=config,
                path=opts["path"],
                revision=opts["revision"],
                max_samples=opts["max_samples"],
                streaming=opts["streaming"],
                offline_hint=opts.get("offline_hint"),
            )
            return _hub_summaries(rows, where, doc_key, sum_key, prompt, opts["max_source_chars"])

        return read

    return load


@register_task("cnn_dailymail")
def cnn_dailymail_task(
    instruction: str | None = CNN_DM_INSTRUCTION,
    prefix: str = "",
    max_samples: int | None = None,
    max_source_chars: int | None = None,
    config: str = "3.0.0",
    path: str | None = None,
    revision: str | None = None,
    streaming: bool = False,
    summeval_file: str | None = None,
) -> Task:
    """CNN/DailyMail 3.0.0 (non-anonymized): a news article -> its highlights (sentences joined by newlines).

    Splits train (287k), val (= validation, 13k), test (11k) from the Hub (``abisee/cnn_dailymail``, fields
    ``article``, ``highlights``, ``id``; ``path``: a local mirror in its layout), and ``summeval``: the 100
    SummEval test articles, read offline from ``$RL4TEXT_DATA/summeval/summeval_100docs.jsonl`` (or
    ``summeval_file``) with their 11 references each; its meta keeps ``doc_id``, ``source`` and the 16 systems'
    summaries with expert scores (``systems: {name: {"text", "scores": {coherence, consistency, fluency,
    relevance}}}``). SummEval articles are tokenized (spaces around punctuation), as its authors published them.
    """
    prompt = prompt_formatter(instruction, prefix)
    opts = {
        "path": path,
        "revision": revision,
        "max_samples": max_samples,
        "streaming": streaming,
        "max_source_chars": max_source_chars,
        "offline_hint": f"train/val/test come from the Hub only: offline, pass path= a local mirror of {CNN_DM_HUB} "
        f"(folder {config}/ with train-*, validation-*, test-* parquet files); the split 'summeval' (its 100 test "
        "articles, from $RL4TEXT_DATA/summeval) works offline",
    }
    load = _hub_summary_loader("cnn_dailymail", CNN_DM_HUB, config, "article", "highlights", prompt, opts)

    def summeval() -> list[dict]:
        from rl4text.tasks.judgments import read_summeval

        if summeval_file is not None:
            file = Path(summeval_file).expanduser()
        else:
            root = data_root()
            if root is None:
                raise TaskDataError(
                    f"cnn_dailymail: split 'summeval' needs RL4TEXT_DATA set to a folder holding {SUMMEVAL_FILE} "
                    "(see DATA.md), or summeval_file=PATH"
                )
            file = root / SUMMEVAL_FILE
        samples = []
        for n, rec in enumerate(first(read_summeval(file), max_samples), start=1):
            meta = {"doc_id": rec["doc_id"], "source": rec["source"], "systems": rec["systems"]}
            where = f"{file} document {n} ({rec['doc_id']})"
            samples.append(
                _summary_sample(rec["source"], rec["references"], meta, prompt, where, max_source_chars)
            )
        return samples

    splits: dict = {s: load(s) for s in HUB_SPLITS}
    splits["summeval"] = summeval
    return Task("cnn_dailymail", splits, metrics=["rouge"])


@register_task("xsum")
def xsum_task(
    instruction: str | None = XSUM_INSTRUCTION,
    prefix: str = "",
    max_samples: int | None = None,
    max_source_chars: int | None = None,
    path: str | None = None,
    revision: str | None = None,
    streaming: bool = False,
) -> Task:
    """XSum (Narayan et al. 2018): a BBC article -> its one-sentence summary. Hub ``EdinburghNLP/xsum`` (fields
    ``document``, ``summary``, ``id``; ``path``: a local mirror in its layout); splits train (204k),
    val (= validation, 11k), test (11k)."""
    prompt = prompt_formatter(instruction, prefix)
    opts = {
        "path": path,
        "revision": revision,
        "max_samples": max_samples,
        "streaming": streaming,
        "max_source_chars": max_source_chars,
    }
    load = _hub_summary_loader("xsum", XSUM_HUB, None, "document", "summary", prompt, opts)
    return Task("xsum", {s: load(s) for s in HUB_SPLITS}, metrics=["rouge"])
