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
