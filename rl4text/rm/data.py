"""Human judgments as groups of completions, read from generic JSON lines or the real datasets.

Everything becomes a list of :class:`Group`: completions that humans compared *with each other* (one
prompt's candidates: a document's summaries, a segment's translations, a dialogue's two answers). A group
carries either ``scores`` (ratings, or rankings turned into ``-rank``; higher is better) or explicit
``pairs`` (``(better, worse)`` indices). Groups are the unit of the train/held-out split, so no document,
segment or prompt is ever on both sides (:func:`split_groups`).

Generic JSON-lines formats (one object a line; every malformed line fails naming file, line and field):

- ``pairs``:    ``{"prompt": str, "chosen": str, "rejected": str}``
- ``rankings``: ``{"prompt": str, "completions": [str, ...]}`` best first, or with ``"ranks": [int, ...]``
  (1 = best, ties allowed)
- ``ratings``:  ``{"prompt": str, "completion": str, "score": number}``

``prompt`` may be ``""``; rows with the same prompt form one group. Any line may carry ``"references"``
(a list of strings), used only by the lexical baselines of the evaluation.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from pathlib import Path

from rl4text.tasks import TaskDataError, open_text, read_jsonl_rows

FORMATS = ("pairs", "rankings", "ratings", "summeval", "wmt22", "mqm", "hh_rlhf")


@dataclass
class Group:
    """Completions judged against each other; ``n`` = ``len(completions)``."""

    key: str
    """The split unit: document id, segment id or prompt."""
    prompt: str
    """Context shown to the reward model with each completion (article, source sentence, dialogue)."""
    completions: list[str]
    """``[n]`` the judged texts."""
    scores: list[float] | None = None
    """``[n]`` human scores, higher is better (ratings; a ranking's ``-rank``), or None for pair data."""
    pairs: list[tuple[int, int]] = field(default_factory=list)
    """Explicit ``(better, worse)`` completion indices (pair data); empty when ``scores`` are given."""
    references: list[str] = field(default_factory=list)
    """Reference texts for the lexical baselines (SummEval's reference summaries, WMT's reference)."""
    names: list[str] = field(default_factory=list)
    """``[n]`` optional item names (system names), for the record."""

    def preference_pairs(self) -> list[tuple[int, int]]:
        """``(better, worse)`` pairs: the explicit ones, or every pair whose scores differ."""
        if self.scores is None:
            return list(self.pairs)
        s = self.scores
        n = len(s)
        return [(i, j) if s[i] > s[j] else (j, i) for i in range(n) for j in range(i + 1, n) if s[i] != s[j]]


# ------------------------------------------------------------------------------------------- generic formats


def _text(row: dict, key: str, where: str, *, empty_ok: bool = False) -> str:
    value = row.get(key)
    if not isinstance(value, str):
        raise TaskDataError(f"{where}: field {key!r} must be a string; fields present: {sorted(row)}")
    if not empty_ok and not value.strip():
        raise TaskDataError(f"{where}: field {key!r} is empty")
    return value


def _references(row: dict, where: str) -> list[str]:
    refs = row.get("references", [])
    if isinstance(refs, str):  # one reference
        return [refs]
    if not isinstance(refs, list) or not all(isinstance(r, str) for r in refs):
        raise TaskDataError(f"{where}: field 'references' must be a list of strings, got {refs!r}")
    return refs


def _number(row: dict, key: str, where: str) -> float:
    value = row.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TaskDataError(f"{where}: field {key!r} must be a finite number, got {value!r}")
    return float(value)


def read_pairs(path: str | Path) -> list[Group]:
    """``{"prompt", "chosen", "rejected"}`` lines; one group per prompt, one explicit pair per line."""
    groups: dict[str, Group] = {}
    for row, where in read_jsonl_rows(path):
        prompt = _text(row, "prompt", where, empty_ok=True)
        chosen, rejected = _text(row, "chosen", where), _text(row, "rejected", where)
        if chosen == rejected:
            raise TaskDataError(f"{where}: 'chosen' and 'rejected' are the same text")
        g = groups.setdefault(prompt, Group(key=prompt, prompt=prompt, completions=[]))
        g.references = g.references or _references(row, where)
        idx = []
        for text in (chosen, rejected):
            if text not in g.completions:
                g.completions.append(text)
            idx.append(g.completions.index(text))
        g.pairs.append((idx[0], idx[1]))
    return list(groups.values())


def read_rankings(path: str | Path) -> list[Group]:
    """``{"prompt", "completions": [...]}`` best first, or with ``"ranks"`` (1 best, ties allowed)."""
    groups = []
    seen: dict[str, str] = {}
    for row, where in read_jsonl_rows(path):
        prompt = _text(row, "prompt", where, empty_ok=True)
        comps = row.get("completions")
        if not isinstance(comps, list) or len(comps) < 2 or not all(isinstance(c, str) for c in comps):
            raise TaskDataError(f"{where}: field 'completions' must be a list of at least 2 strings")
        if "ranks" in row:
            ranks = row["ranks"]
            if (
                not isinstance(ranks, list)
                or len(ranks) != len(comps)
                or not all(isinstance(r, int) and not isinstance(r, bool) and r >= 1 for r in ranks)
            ):
                raise TaskDataError(
                    f"{where}: field 'ranks' must be {len(comps)} integers >= 1 (1 = best), got {ranks!r}"
                )
        else:
            ranks = list(range(1, len(comps) + 1))
        if prompt in seen:  # a prompt's ranking is one judgment: a second one would split a group in two
            raise TaskDataError(f"{where}: prompt already ranked at {seen[prompt]}; merge the two rankings")
        seen[prompt] = where
        groups.append(
            Group(
                key=prompt,
                prompt=prompt,
                completions=list(comps),
                scores=[-float(r) for r in ranks],
                references=_references(row, where),
            )
        )
    return groups


def read_ratings(path: str | Path) -> list[Group]:
    """``{"prompt", "completion", "score"}`` lines; rows sharing a prompt form one group."""
    groups: dict[str, Group] = {}
    for row, where in read_jsonl_rows(path):
        prompt = _text(row, "prompt", where, empty_ok=True)
        completion = _text(row, "completion", where, empty_ok=True)
        score = _number(row, "score", where)
        g = groups.setdefault(prompt, Group(key=prompt, prompt=prompt, completions=[], scores=[]))
        g.references = g.references or _references(row, where)
        g.completions.append(completion)
        g.scores.append(score)  # type: ignore[union-attr]
    return list(groups.values())


# ------------------------------------------------------------------------------------------- real datasets


def load_summeval(path: str | Path, aspect: str = "relevance") -> list[Group]:
    """SummEval: one group per document; completions = the systems' summaries; scores = expert ``aspect``."""
    from rl4text.tasks.judgments import read_summeval

    groups = []
    for rec in read_summeval(path):
        names = sorted(rec["systems"])
        missing = [n for n in names if aspect not in rec["systems"][n]["scores"]]
        if missing:
            have = sorted(rec["systems"][missing[0]]["scores"])
            raise TaskDataError(f"{path}: document {rec['doc_id']}: no {aspect!r} score; aspects: {have}")
        groups.append(
            Group(
                key=str(rec["doc_id"]),
                prompt=rec["source"],
                completions=[rec["systems"][n]["text"] for n in names],
                scores=[float(rec["systems"][n]["scores"][aspect]) for n in names],
                references=list(rec["references"]),
                names=names,
            )
        )
    return groups


def load_wmt22(folder: str | Path, score: str = "da_z", context: str = "source") -> list[Group]:
    """WMT22 de->en: one group per segment with at least 2 human-scored translations; scores = ``score``
    (``da_z`` or ``da_raw``); the prompt is the ``source`` (German), the ``reference`` or both
    (``source+reference``)."""
    import warnings

    from rl4text.tasks.judgments import read_wmt22

    warnings.warn(
        "WMT22 de->en DA scores do not line up with the segments (../shared/data/DATA.md, 'Known problem': "
        "sentence chrF vs DA z, r = 0.015); do not use them as segment-level human judgments. For translation, "
        "use data.format: mqm (expert MQM, WMT21 TED en->de).",
        UserWarning,
        stacklevel=2,
    )
    if score not in ("da_z", "da_raw"):
        raise ValueError(f"WMT22 score must be 'da_z' or 'da_raw', got {score!r}")
    contexts = {"source": "{s}", "reference": "{r}", "source+reference": "{s}\n{r}"}
    if context not in contexts:
        raise ValueError(f"WMT22 context must be one of {sorted(contexts)}, got {context!r}")
    groups = []
    for rec in read_wmt22(folder):
        scored = {n: e for n, e in sorted(rec["systems"].items()) if score in e}
        if len(scored) < 2:
            continue
        groups.append(
            Group(
                key=f"segment-{rec['sid']}",
                prompt=contexts[context].format(s=rec["source"], r=rec["reference"]),
                completions=[e["text"] for e in scored.values()],
                scores=[float(e[score]) for e in scored.values()],
                references=[rec["reference"]],
                names=list(scored),
            )
        )
    return groups


def load_mqm(folder: str | Path, reference: str | None = "ref", min_systems: int = 2) -> list[Group]:
    """Expert MQM (WMT21 TED en->de): one group per *segment* (the split unit, so a held-out segment's
    translations are never trained on); prompt = the English source; completions = the systems' German
    translations; scores = MQM (minus the weighted error count, higher is better). ``reference`` names the
    system whose text is the lexical baselines' reference (the human ``ref``) and is left out of the
    completions; ``None`` keeps every system as a completion and gives no references."""
    from rl4text.tasks.judgments import read_mqm

    groups = []
    for rec in read_mqm(folder):
        systems = dict(rec["systems"])
        refs = []
        if reference is not None:
            if reference not in systems:
                continue  # no reference text for this segment: lexical baselines could not score it
            refs = [systems.pop(reference)["text"]]
        if len(systems) < min_systems:
            continue
        groups.append(
            Group(
                key=f"segment-{rec['seg_id']}",
                prompt=rec["source"],
                completions=[e["text"] for e in systems.values()],
                scores=[e["score"] for e in systems.values()],
                references=refs,
                names=list(systems),
            )
        )
    return groups


ASSISTANT = "\n\nAssistant:"


def load_hh_rlhf(path: str | Path) -> list[Group]:
    """HH-RLHF: the dialogue up to the last ``Assistant:`` turn is the prompt; the two final answers are
    compared. Pairs sharing a dialogue form one group (so a dialogue never sits on both sides of a split)."""
    from rl4text.tasks.judgments import read_hh_rlhf

    groups: dict[str, Group] = {}
    for n, row in enumerate(read_hh_rlhf(path), start=1):
        cut = row["chosen"].rfind(ASSISTANT)
        prompt = row["chosen"][: cut + len(ASSISTANT)] if cut >= 0 else ""
        chosen = row["chosen"][len(prompt) :].strip()
        rejected = row["rejected"][len(prompt) :].strip() if row["rejected"].startswith(prompt) else ""
        if not prompt or not rejected or chosen == rejected:  # different dialogues: compare whole texts
            prompt, chosen, rejected = "", row["chosen"], row["rejected"]
            if chosen == rejected:
                continue  # a tie carries no preference
        key = prompt or f"pair-{n}"  # whole dialogues compared: each pair is its own group
        g = groups.setdefault(key, Group(key=key, prompt=prompt, completions=[]))
        idx = []
        for text in (chosen, rejected):
            if text not in g.completions:
                g.completions.append(text)
            idx.append(g.completions.index(text))
        g.pairs.append((idx[0], idx[1]))
    return list(groups.values())


def load_groups(fmt: str, path: str | Path | None = None, **options) -> list[Group]:
    """Groups of a ``fmt`` (:data:`FORMATS`); ``path`` defaults to the dataset under ``$RL4TEXT_DATA``."""
    from rl4text.tasks import data_root

    if fmt not in FORMATS:
        raise ValueError(f"unknown judgment format {fmt!r}; formats: {', '.join(FORMATS)}")
    defaults = {
        "summeval": "summeval/summeval_100docs.jsonl",
        "wmt22": "wmt22_de_en",
        "mqm": "mqm_ted_ende",
        "hh_rlhf": "hh-rlhf/harmless-base-test.jsonl.gz",
    }
    if path is None:
        root = data_root()
        if fmt not in defaults or root is None:
            raise TaskDataError(
                f"judgment format {fmt!r} needs data.path"
                + (" (or RL4TEXT_DATA set to the shared data folder)" if fmt in defaults else "")
            )
        path = root / defaults[fmt]
    readers = {
        "pairs": read_pairs,
        "rankings": read_rankings,
        "ratings": read_ratings,
        "summeval": load_summeval,
        "wmt22": load_wmt22,
        "mqm": load_mqm,
        "hh_rlhf": load_hh_rlhf,
    }
    groups = readers[fmt](path, **options)
    if not groups:
        raise TaskDataError(f"{path}: no judgments found")
    return groups


def split_groups(groups: list[Group], held_out: float, seed: int = 0) -> tuple[list[Group], list[Group]]:
    """``(train, held_out)`` by whole groups, shuffled with ``seed``: no document / segment / prompt is on
    both sides, so the held-out score measures generalisation to unseen items, not to unseen pairs."""
    if not 0.0 <= held_out < 1.0:
        raise ValueError(f"held_out must be in [0, 1), got {held_out}")
    keys = sorted({g.key for g in groups})
    random.Random(seed).shuffle(keys)
    n_out = round(len(keys) * held_out)
    if held_out > 0 and n_out == 0 and len(keys) > 1:
        n_out = 1
    out = set(keys[:n_out])
    return [g for g in groups if g.key not in out], [g for g in groups if g.key in out]


def read_texts(path: str | Path) -> tuple[list[str], list[str]]:
    """``(prompts, completions)`` to score: JSON lines (``.jsonl``/``.json``, optionally ``.gz``) with a
    ``completion`` and an optional ``prompt`` (default ``""``), or plain text, one completion a line."""
    path = Path(path)
    if not path.is_file():
        raise TaskDataError(f"missing file {path}")
    if ".jsonl" in path.suffixes or ".json" in path.suffixes:
        prompts, completions = [], []
        for row, where in read_jsonl_rows(path):
            prompts.append(_text(row, "prompt", where, empty_ok=True) if "prompt" in row else "")
            completions.append(_text(row, "completion", where, empty_ok=True))
        return prompts, completions
    with open_text(path) as f:
        completions = [line.rstrip("\n") for line in f]
    return [""] * len(completions), completions
