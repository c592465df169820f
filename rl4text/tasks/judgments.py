"""Readers of the human-judgment datasets under ``$RL4TEXT_DATA`` (layout in ``../shared/data/DATA.md``).

They return plain records that both the tasks (which keep the human scores in each sample's ``meta``) and
the reward-model loaders (``rl4text.rm``) build on. Every malformed row is reported with its file and line.
"""

from __future__ import annotations

from pathlib import Path

from rl4text.tasks import TaskDataError, open_text, read_jsonl_rows

WMT22_SRC = "generaltest2022.de-en.src.de"
WMT22_REF = "generaltest2022.de-en.ref.A.en"
WMT22_SCORES = "ad-seg-scores-de-en.csv"
WMT22_HYP_PREFIX = "generaltest2022.de-en.hyp."


def _lines(path: Path) -> list[str]:
    if not path.is_file():
        raise TaskDataError(f"missing file {path}")
    with open_text(path) as f:
        return [line.rstrip("\n") for line in f]


def read_wmt22(folder: str | Path) -> list[dict]:
    """WMT22 de->en general test set with 9 systems' outputs and segment-level DA scores.

    One record per segment (``sid`` is the 1-based line number)::

        {"sid": 1, "source": "...", "reference": "...",
         "systems": {"Online-A": {"text": "...", "da_raw": 71.0, "da_z": 0.12, "n": 1}, ...}}

    A system appears in ``systems`` with its text always; ``da_raw``/``da_z``/``n`` are present only for the
    segments that humans scored (WMT scored a subset). Score file system names such as ``Online-A.8`` are
    matched to output files by the part before the last dot; ``HUMAN-B`` (no output file) is skipped.
    """
    folder = Path(folder)
    src, ref = _lines(folder / WMT22_SRC), _lines(folder / WMT22_REF)
    if len(src) != len(ref):
        raise TaskDataError(f"{folder}: {len(src)} source lines but {len(ref)} reference lines")
    hyp_dir = folder / "system_outputs"
    if not hyp_dir.is_dir():
        raise TaskDataError(f"missing folder {hyp_dir} (one file {WMT22_HYP_PREFIX}SYSTEM.en per system)")
    outputs: dict[str, list[str]] = {}
    for path in sorted(hyp_dir.glob(f"{WMT22_HYP_PREFIX}*.en")):
        name = path.name[len(WMT22_HYP_PREFIX) : -len(".en")]
        lines = _lines(path)
        if len(lines) != len(src):
            raise TaskDataError(f"{path}: {len(lines)} lines but the source has {len(src)}")
        outputs[name] = lines
    records = [
        {
            "sid": i + 1,
            "source": s,
            "reference": r,
            "systems": {name: {"text": lines[i]} for name, lines in outputs.items()},
        }
        for i, (s, r) in enumerate(zip(src, ref))
    ]
    scores = folder / WMT22_SCORES
    for n, line in enumerate(_lines(scores), start=1):
        parts = line.split()
        if n == 1 and parts and parts[0] == "SYS":
            continue
        if not parts:
            continue
        where = f"{scores} line {n}"
        if len(parts) != 5:
            raise TaskDataError(f"{where}: expected 5 fields 'SYS SID RAW.SCR Z.SCR N', got {line!r}")
        system, sid, raw, z, count = parts
        try:
            sid_i, raw_f, z_f, n_i = int(sid), float(raw), float(z), int(count)
        except ValueError as exc:
            raise TaskDataError(
                f"{where}: SID and N must be integers, RAW.SCR and Z.SCR numbers: {line!r}"
            ) from exc
        if not 1 <= sid_i <= len(records):
            raise TaskDataError(f"{where}: SID {sid_i} is outside 1..{len(records)}")
        name = system.rsplit(".", 1)[0] if system not in outputs else system
        entry = records[sid_i - 1]["systems"].get(name)
        if entry is None:
            continue  # a human reference (HUMAN-B) or a system without an output file
        entry.update({"da_raw": raw_f, "da_z": z_f, "n": n_i})
    return records


def read_summeval(path: str | Path) -> list[dict]:
    """SummEval (100 CNN/DM test articles): one record per document::

    {"doc_id": "...", "source": "article", "references": ["...", ...],
     "systems": {"M11": {"text": "...", "scores": {"coherence": 1.3, "consistency": 1.0, ...}}, ...}}
    """
    records = []
    for row, where in read_jsonl_rows(path):
        for key in ("doc_id", "src", "ref_summs", "systems"):
            if key not in row:
                raise TaskDataError(f"{where}: missing field {key!r}; fields present: {sorted(row)}")
        if not isinstance(row["src"], str) or not row["src"].strip():
            raise TaskDataError(f"{where}: field 'src' is empty")
        refs = row["ref_summs"]
        if not isinstance(refs, list) or not refs or not all(isinstance(r, str) for r in refs):
            raise TaskDataError(f"{where}: field 'ref_summs' must be a non-empty list of strings")
        systems = {}
        for name, entry in row["systems"].items():
            text = entry.get("summary", entry.get("sys_summ"))
            if not isinstance(text, str) or not isinstance(entry.get("scores"), dict):
                raise TaskDataError(
                    f"{where}: systems[{name!r}] needs a 'summary' (or 'sys_summ') string and a 'scores' dict"
                )
            systems[name] = {"text": text, "scores": dict(entry["scores"])}
        records.append(
            {"doc_id": row["doc_id"], "source": row["src"], "references": refs, "systems": systems}
        )
    return records


def read_hh_rlhf(path: str | Path) -> list[dict]:
    """Anthropic HH-RLHF pairs ``{"chosen": dialogue, "rejected": dialogue}`` (JSON lines, optionally gzipped)."""
    rows = []
    for row, where in read_jsonl_rows(path):
        for key in ("chosen", "rejected"):
            if not isinstance(row.get(key), str) or not row[key].strip():
                raise TaskDataError(f"{where}: field {key!r} is missing or empty")
        rows.append(
            {"chosen": row["chosen"], "rejected": row["rejected"], "line": int(where.rsplit(" ", 1)[1])}
        )
    return rows


MQM_ERRORS = "mqm_ted_ende.tsv"
MQM_SCORES = "mqm_ted_ende.avg_seg_scores.tsv"
MQM_COLUMNS = ("system", "doc", "doc_id", "seg_id", "rater", "source", "target", "category", "severity")


def _find(folder: Path, name: str) -> Path:
    """``folder/name.gz`` or ``folder/name``."""
    for candidate in (folder / f"{name}.gz", folder / name):
        if candidate.is_file():
            return candidate
    raise TaskDataError(f"missing file {folder / name}.gz (or {name}) in the MQM layout (see DATA.md)")


def _strip_span(text: str) -> str:
    """The text without MQM's ``<v>…</v>`` error-span marks."""
    return text.replace("<v>", "").replace("</v>", "")


def _read_mqm_errors(path: Path) -> dict[str, dict]:
    """Per segment: source, document and each system's text (one error row or more per system)."""
    segments: dict[str, dict] = {}
    with open_text(path, newline="") as f:
        header = f.readline().rstrip("\r\n").split("\t")
        missing = [c for c in MQM_COLUMNS if c not in header]
        if missing:
            raise TaskDataError(
                f"{path} line 1: header lacks {missing}; expected tab-separated columns {' '.join(MQM_COLUMNS)}"
            )
        col = {c: header.index(c) for c in MQM_COLUMNS}
        for n, line in enumerate(f, start=2):
            if not line.strip():
                continue
            parts = line.rstrip("\r\n").split("\t")
            if len(parts) < len(header):
                raise TaskDataError(
                    f"{path} line {n}: {len(parts)} tab-separated fields, the header has {len(header)}"
                )
            get = {c: parts[i] for c, i in col.items()}
            seg = segments.setdefault(
                get["seg_id"],
                {
                    "seg_id": get["seg_id"],
                    "doc": get["doc"],
                    "source": _strip_span(get["source"]),
                    "systems": {},
                },
            )
            if seg["doc"] != get["doc"]:
                raise TaskDataError(
                    f"{path} line {n}: segment {get['seg_id']} is in document {get['doc']!r} here but "
                    f"{seg['doc']!r} on an earlier line"
                )
            text = _strip_span(get["target"])
            entry = seg["systems"].setdefault(get["system"], {"text": text, "raters": set()})
            if entry["text"] != text:
                raise TaskDataError(
                    f"{path} line {n}: system {get['system']!r}, segment {get['seg_id']}: the target "
                    "differs from an earlier row's (after removing <v>…</v>)"
                )
            entry["raters"].add(get["rater"])
    return segments


def read_mqm(folder: str | Path) -> list[dict]:
    """Expert MQM judgments (WMT21 TED talks en->de, ``mqm_ted_ende/``): one record per segment::

        {"seg_id": "12", "doc": "talk.1", "source": "...",
         "systems": {"Nemo": {"text": "...", "score": -1.0, "raters": ["rater4"]}, ..., "ref": {...}}}

    Texts come from ``mqm_ted_ende.tsv[.gz]`` (one row per error, ``<v>…</v>`` marks removed), scores (minus
    the weighted error count, higher is better) from ``mqm_ted_ende.avg_seg_scores.tsv[.gz]``. A system appears
    in ``systems`` only when it has both a text and a score (``None`` = not rated is skipped); records are
    sorted by document, then by segment number. The score file's ``ref-A`` is the text file's ``ref`` (the
    human reference translation, also rated).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise TaskDataError(f"missing folder {folder} (expected {MQM_ERRORS}.gz and {MQM_SCORES}.gz)")
    segments = _read_mqm_errors(_find(folder, MQM_ERRORS))
    scores_path = _find(folder, MQM_SCORES)
    with open_text(scores_path) as f:
        for n, line in enumerate(f, start=1):
            parts = line.split()
            if not parts or (n == 1 and parts[0] == "system"):
                continue
            where = f"{scores_path} line {n}"
            if len(parts) != 3:
                raise TaskDataError(f"{where}: expected 3 fields 'system mqm_avg_score seg_id', got {line!r}")
            system, raw, seg_id = parts
            if raw == "None":
                continue
            try:
                score = float(raw)
            except ValueError as exc:
                raise TaskDataError(f"{where}: mqm_avg_score must be a number or None, got {raw!r}") from exc
            systems = segments.get(seg_id, {}).get("systems", {})
            entry = systems.get(system)
            if entry is None and system.startswith("ref-"):
                entry = systems.get("ref")  # the score file calls the text file's "ref" "ref-A"
            if entry is not None:
                entry["score"] = score + 0.0  # -0.0 -> 0.0
    records = []
    for seg in segments.values():
        systems = {
            name: {"text": e["text"], "score": e["score"], "raters": sorted(e["raters"])}
            for name, e in sorted(seg["systems"].items())
            if "score" in e
        }
        records.append({**seg, "systems": systems})

    def order(rec: dict):
        return (rec["doc"], int(rec["seg_id"]) if rec["seg_id"].isdigit() else 0, rec["seg_id"])

    return sorted(records, key=order)
