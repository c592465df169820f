"""Translation tasks: Multi30k, WMT22 de->en (with human scores), WMT16 and IWSLT2017.

Prompt convention (all tasks in ``rl4text.tasks``): ``instruction`` is a template with ``{text}`` (the source
sentence), ``{src_name}`` and ``{tgt_name}`` (language names); its default suits instruction-tuned causal models
(``format_prompt`` wraps it in the chat template). ``instruction: null`` gives ``prefix + source`` instead, the
raw source for seq2seq models (``prefix`` e.g. T5's ``"translate German to English: "``).

Local files come from ``$RL4TEXT_DATA`` (layout of ``../shared/data``, see ``DATA.md``); without them the Hub
dataset is read with ``datasets.load_dataset`` (``path=`` points that at a local mirror in the Hub's layout).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from pathlib import Path

from rl4text.registry import register_task
from rl4text.tasks import Task, TaskDataError, check_sample, data_root, open_text
from rl4text.tasks.hub import first, hub_reachable, hub_rows

LANGUAGES = {
    "en": "English",
    "de": "German",
    "fr": "French",
    "cs": "Czech",
    "ro": "Romanian",
    "ru": "Russian",
    "fi": "Finnish",
    "tr": "Turkish",
    "it": "Italian",
    "nl": "Dutch",
    "ar": "Arabic",
    "ja": "Japanese",
    "ko": "Korean",
    "zh": "Chinese",
}
MULTI30K_SPLITS = {"train": "train", "val": "val", "test": "test_2016_flickr"}
MULTI30K_HUB = "bentrevett/multi30k"
# a real sample of Multi30k inside the package, read when neither RL4TEXT_DATA nor the Hub has the data
EMBEDDED_MULTI30K = Path(__file__).parent / "data" / "multi30k"
EMBEDDED_TRAIN_PAIRS = 3000
WMT16_HUB = "wmt/wmt16"
IWSLT2017_HUB = "IWSLT/iwslt2017"
HUB_SPLITS = {"train": "train", "val": "validation", "test": "test"}
WMT22_FOLDER = "wmt22_de_en"
DEFAULT_INSTRUCTION = (
    "Translate this {src_name} sentence into {tgt_name}. Reply with the translation only.\n\n{text}"
)


def _read_lines(path) -> list[str]:
    with open_text(Path(path)) as f:  # names the file and line of bytes that are not UTF-8
        return [line.rstrip("\n") for line in f]


def prompt_formatter(instruction: str | None, prefix: str = "", **names: str) -> Callable[[str], str]:
    """``text -> prompt``: ``instruction`` formatted with ``text`` and ``names``, or ``prefix + text`` when None."""
    if instruction is None:
        return lambda text: prefix + text
    try:
        instruction.format(text="", **names)
    except (KeyError, IndexError) as exc:
        allowed = ", ".join("{" + k + "}" for k in ("text", *names))
        raise TaskDataError(
            f"instruction {instruction!r} uses an unknown placeholder {exc}; use {allowed}"
        ) from exc
    return lambda text: instruction.format(text=text, **names)


def _language_names(source_lang: str, target_lang: str) -> dict[str, str]:
    return {
        "src_name": LANGUAGES.get(source_lang, source_lang),
        "tgt_name": LANGUAGES.get(target_lang, target_lang),
    }


def _pairs_to_samples(
    src: list[str], tgt: list[str], where: str, prompt: Callable[[str], str], max_samples: int | None = None
) -> list[dict]:
    if len(src) != len(tgt):
        raise TaskDataError(
            f"{where}: {len(src)} source lines but {len(tgt)} target lines; files must be aligned"
        )
    src, tgt = first(src, max_samples), first(tgt, max_samples)
    rows = []
    for i, (s, t) in enumerate(zip(src, tgt), start=1):
        if not s.strip() or not t.strip():
            side = "source" if not s.strip() else "target"
            raise TaskDataError(f"{where} line {i}: empty {side} sentence")
        sample = {"prompt": prompt(s), "references": [t], "meta": {"source": s}}
        rows.append(check_sample(sample, f"{where} line {i}"))
    return rows


def _translation_rows(
    rows: Iterable[dict], where: str, source_lang: str, target_lang: str, prompt: Callable[[str], str]
) -> list[dict]:
    """Samples from Hub rows ``{"translation": {lang: text, ...}}`` (WMT16, IWSLT2017)."""
    out = []
    for i, row in enumerate(rows):
        at = f"{where} row {i}"
        pair = row.get("translation")
        if not isinstance(pair, dict):
            raise TaskDataError(
                f"{at}: missing field 'translation' (a dict language -> text); fields: {sorted(row)}"
            )
        for lang in (source_lang, target_lang):
            if not isinstance(pair.get(lang), str) or not pair[lang].strip():
                raise TaskDataError(
                    f"{at}: field 'translation.{lang}' is missing or empty; languages present: {sorted(pair)}"
                )
        s, t = pair[source_lang], pair[target_lang]
        out.append(check_sample({"prompt": prompt(s), "references": [t], "meta": {"source": s}}, at))
    return out


def _multi30k_folder(
    folder: Path, split: str, langs: tuple[str, str], prompt: Callable[[str], str], max_samples, origin: str
) -> list[dict]:
    """Samples of ``split`` from a folder of ``{split}.{lang}.gz`` files (the layout of ``DATA.md``)."""
    paths = [folder / f"{MULTI30K_SPLITS[split]}.{lang}.gz" for lang in langs]
    for p in paths:
        if not p.is_file():
            raise TaskDataError(f"multi30k: missing file {p} ({origin})")
    src, tgt = (_read_lines(p) for p in paths)
    return _pairs_to_samples(src, tgt, str(paths[0]), prompt, max_samples)


_notified: set[str] = set()


def _multi30k_embedded(
    split: str, langs: tuple[str, str], prompt: Callable[[str], str], max_samples, why: str
) -> list[dict]:
    """The sample shipped in the package (``rl4text/tasks/data/multi30k``), with a one-line notice."""
    if "multi30k" not in _notified:
        _notified.add("multi30k")
        root = data_root()
        local = "RL4TEXT_DATA is not set" if root is None else f"RL4TEXT_DATA={root} has no multi30k/"
        print(
            f"multi30k: {local} and {why.rstrip('.')}; using the embedded sample shipped with "
            f"rl4text (train: first {EMBEDDED_TRAIN_PAIRS:,} of 29,000 pairs; val and test_2016_flickr whole; "
            f"see {EMBEDDED_MULTI30K / 'README.md'})",
            file=sys.stderr,
        )
    return _multi30k_folder(EMBEDDED_MULTI30K, split, langs, prompt, max_samples, "the embedded sample")


@register_task("multi30k")
def multi30k_task(
    source_lang: str = "de",
    target_lang: str = "en",
    instruction: str | None = DEFAULT_INSTRUCTION,
    prefix: str = "",
    max_samples: int | None = None,
    path: str | None = None,
    revision: str | None = None,
) -> Task:
    """Multi30k task 1 (Elliott et al. 2016), de->en or en->de; splits train, val, test (= test_2016_flickr).

    Reads ``$RL4TEXT_DATA/multi30k/{split}.{lang}.gz``; without it the Hub dataset ``bentrevett/multi30k``
    (``path``: a local mirror of it, ``revision``: a Hub revision); when the Hub cannot be reached either, the
    sample embedded in the package (``rl4text/tasks/data/multi30k``: 3,000 train pairs, val and test whole), with
    a notice. ``max_samples`` keeps the first rows of each split.
    """
    if {source_lang, target_lang} != {"de", "en"}:
        raise TaskDataError(f"multi30k: languages must be de and en, got {source_lang}->{target_lang}")
    prompt = prompt_formatter(instruction, prefix, **_language_names(source_lang, target_lang))
    root = data_root()
    langs = (source_lang, target_lang)

    def load(split: str):
        def read() -> list[dict]:
            if path is None and root is not None and (root / "multi30k").is_dir():
                return _multi30k_folder(
                    root / "multi30k", split, langs, prompt, max_samples, f"RL4TEXT_DATA={root}"
                )
            if path is None and not hub_reachable(MULTI30K_HUB):
                return _multi30k_embedded(split, langs, prompt, max_samples, "the Hub cannot be reached")
            try:
                rows, where = hub_rows(
                    "multi30k",
                    MULTI30K_HUB,
                    HUB_SPLITS[split],
                    path=path,
                    revision=revision,
                    max_samples=max_samples,
                    offline_hint="offline, set RL4TEXT_DATA to a folder holding multi30k/ (see DATA.md) or pass "
                    f"path= a local mirror of {MULTI30K_HUB}",
                )
            except TaskDataError as exc:
                if path is not None:
                    raise
                reason = str(exc).split("; ")[0].removeprefix("multi30k: ")
                return _multi30k_embedded(split, langs, prompt, max_samples, f"the Hub gave none ({reason})")
            src, tgt = [], []
            for i, row in enumerate(rows):
                for lang in langs:
                    if not isinstance(row.get(lang), str):
                        raise TaskDataError(f"{where} row {i}: missing field {lang!r}; fields: {sorted(row)}")
                src.append(row[source_lang])
                tgt.append(row[target_lang])
            return _pairs_to_samples(src, tgt, where, prompt)

        return read

    return Task("multi30k", {s: load(s) for s in MULTI30K_SPLITS}, metrics=["chrf", "bleu"])


@register_task("wmt22")
def wmt22_task(
    instruction: str | None = DEFAULT_INSTRUCTION,
    prefix: str = "",
    val_size: int = 0,
    max_samples: int | None = None,
    path: str | None = None,
) -> Task:
    """WMT22 general test set, German->English (1,984 news segments), with 9 systems' outputs and their
    segment-level human direct-assessment scores in each sample's ``meta``::

        {"sid": 1, "source": "...", "systems": {"Online-A": {"text": "...", "da_raw": 71.0, "da_z": 0.12, "n": 1}}}

    (``da_*``/``n`` only for the segments humans scored). Split ``test``; ``val_size > 0`` moves the first
    ``val_size`` segments into a ``val`` split (and out of ``test``). Reads ``$RL4TEXT_DATA/wmt22_de_en`` or the
    folder ``path`` (``generaltest2022.de-en.src.de``, ``generaltest2022.de-en.ref.A.en``,
    ``system_outputs/generaltest2022.de-en.hyp.SYSTEM.en``, ``ad-seg-scores-de-en.csv``). There is no Hub
    fallback: the human scores exist only in the WMT22 repositories (github.com/wmt-conference/wmt22-news-systems).
    """
    from rl4text.tasks.judgments import read_wmt22

    if val_size < 0:
        raise TaskDataError(f"wmt22: val_size must be >= 0, got {val_size}")
    prompt = prompt_formatter(instruction, prefix, **_language_names("de", "en"))

    def folder() -> Path:
        if path is not None:
            found = Path(path).expanduser()
        else:
            root = data_root()
            if root is None:
                raise TaskDataError(
                    f"wmt22: needs local files: set RL4TEXT_DATA to a folder holding {WMT22_FOLDER}/ "
                    "(generaltest2022.de-en.src.de, generaltest2022.de-en.ref.A.en, system_outputs/, "
                    "ad-seg-scores-de-en.csv; see DATA.md) or pass path=FOLDER; it has no Hub fallback"
                )
            found = root / WMT22_FOLDER
        if not found.is_dir():
            raise TaskDataError(
                f"wmt22: missing folder {found} (generaltest2022.de-en.src.de, generaltest2022.de-en.ref.A.en, "
                "system_outputs/, ad-seg-scores-de-en.csv)"
            )
        return found

    cache: dict[str, list[dict]] = {}

    def all_samples() -> list[dict]:
        if "all" not in cache:
            where = folder()
            samples = []
            for rec in read_wmt22(where):
                meta = {"sid": rec["sid"], "source": rec["source"], "systems": rec["systems"]}
                sample = {"prompt": prompt(rec["source"]), "references": [rec["reference"]], "meta": meta}
                samples.append(check_sample(sample, f"{where} segment {rec['sid']}"))
            if val_size >= len(samples):
                raise TaskDataError(f"wmt22: val_size {val_size} leaves no test segments (of {len(samples)})")
            cache["all"] = samples
        return cache["all"]

    splits: dict = {"test": lambda: first(all_samples()[val_size:], max_samples)}
    if val_size:
        splits["val"] = lambda: first(all_samples()[:val_size], max_samples)
    return Task("wmt22", splits, metrics=["chrf", "bleu"])


def _hub_translation_task(
    name: str,
    hub_id: str,
    config: str,
    source_lang: str,
    target_lang: str,
    instruction: str | None,
    prefix: str,
    max_samples: int | None,
    path: str | None,
    revision: str | None,
    streaming: bool,
) -> Task:
    if source_lang == target_lang:
        raise TaskDataError(f"{name}: source_lang and target_lang are both {source_lang!r}")
    prompt = prompt_formatter(instruction, prefix, **_language_names(source_lang, target_lang))

    def load(split: str):
        def read() -> list[dict]:
            rows, where = hub_rows(
                name,
                hub_id,
                HUB_SPLITS[split],
                config=config,
                path=path,
                revision=revision,
                max_samples=max_samples,
                streaming=streaming,
            )
            return _translation_rows(rows, where, source_lang, target_lang, prompt)

        return read

    return Task(name, {s: load(s) for s in HUB_SPLITS}, metrics=["chrf", "bleu"])


@register_task("wmt16")
def wmt16_task(
    source_lang: str = "de",
    target_lang: str = "en",
    instruction: str | None = DEFAULT_INSTRUCTION,
    prefix: str = "",
    config: str | None = None,
    max_samples: int | None = None,
    path: str | None = None,
    revision: str | None = None,
    streaming: bool = False,
) -> Task:
    """WMT16 news translation from the Hub (``wmt/wmt16``, rows ``{"translation": {"de": ..., "en": ...}}``);
    splits train (4.5M pairs for de-en), val (= validation, newstest2015), test (newstest2016).

    ``config`` defaults to ``"{xx}-en"`` for the non-English language (``de-en``, ``ro-en``, ...); either direction
    by ``source_lang``/``target_lang``. ``path``: a local mirror in the Hub's layout (or one data file);
    ``max_samples``: the first rows of each split (a ``train[:N]`` slice; ``streaming: true`` downloads only those).
    """
    langs = {source_lang, target_lang}
    if config is None:
        other = sorted(langs - {"en"})
        if "en" not in langs or len(other) != 1:
            raise TaskDataError(
                f"wmt16: pass config= for languages {source_lang}->{target_lang} (configs are xx-en)"
            )
        config = f"{other[0]}-en"
    return _hub_translation_task(
        "wmt16",
        WMT16_HUB,
        config,
        source_lang,
        target_lang,
        instruction,
        prefix,
        max_samples,
        path,
        revision,
        streaming,
    )


@register_task("iwslt2017")
def iwslt2017_task(
    source_lang: str = "en",
    target_lang: str = "de",
    instruction: str | None = DEFAULT_INSTRUCTION,
    prefix: str = "",
    config: str = "iwslt2017-en-de",
    max_samples: int | None = None,
    path: str | None = None,
    revision: str | None = None,
    streaming: bool = False,
) -> Task:
    """IWSLT 2017 TED talks from the Hub (``IWSLT/iwslt2017``, config ``iwslt2017-en-de``, rows
    ``{"translation": {"en": ..., "de": ...}}``), either direction by ``source_lang``/``target_lang``;
    splits train (206k pairs), val (= validation), test. ``path``/``max_samples``/``streaming`` as for ``wmt16``.
    If the Hub copy is still a loading script (unsupported by ``datasets>=4``), use
    ``revision: refs/convert/parquet`` or a local mirror.
    """
    return _hub_translation_task(
        "iwslt2017",
        IWSLT2017_HUB,
        config,
        source_lang,
        target_lang,
        instruction,
        prefix,
        max_samples,
        path,
        revision,
        streaming,
    )
