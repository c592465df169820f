"""Translation tasks. Multi30k reads the original files under ``$RL4TEXT_DATA/multi30k`` or the Hub dataset."""

from __future__ import annotations

import gzip

from rl4text.registry import register_task
from rl4text.tasks import Task, TaskDataError, check_sample, data_root

LANGUAGES = {"en": "English", "de": "German", "fr": "French", "cs": "Czech"}
MULTI30K_SPLITS = {"train": "train", "val": "val", "test": "test_2016_flickr"}
MULTI30K_HUB = "bentrevett/multi30k"
DEFAULT_INSTRUCTION = (
    "Translate this {src_name} sentence into {tgt_name}. Reply with the translation only.\n\n{text}"
)


def _read_lines(path) -> list[str]:
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f]


def _pairs_to_samples(
    src: list[str], tgt: list[str], where: str, src_lang: str, tgt_lang: str, template: str
):
    if len(src) != len(tgt):
        raise TaskDataError(
            f"{where}: {len(src)} source lines but {len(tgt)} target lines; files must be aligned"
        )
    names = {"src_name": LANGUAGES.get(src_lang, src_lang), "tgt_name": LANGUAGES.get(tgt_lang, tgt_lang)}
    rows = []
    for i, (s, t) in enumerate(zip(src, tgt), start=1):
        sample = {"prompt": template.format(text=s, **names), "references": [t], "meta": {"source": s}}
        rows.append(check_sample(sample, f"{where} line {i}"))
    return rows


@register_task("multi30k")
def multi30k_task(
    source_lang: str = "de", target_lang: str = "en", instruction: str | None = DEFAULT_INSTRUCTION
) -> Task:
    """Multi30k task 1 (Elliott et al. 2016); splits train, val, test (= test_2016_flickr).

    ``instruction`` formats each prompt from ``{text}``, ``{src_name}`` and ``{tgt_name}``; ``None`` gives the raw
    source sentence (for seq2seq models trained on this task).
    """
    if {source_lang, target_lang} != {"de", "en"}:
        raise TaskDataError(f"multi30k: languages must be de and en, got {source_lang}->{target_lang}")
    template = instruction or "{text}"
    root = data_root()

    def load(split: str):
        def read() -> list[dict]:
            if root is not None and (root / "multi30k").is_dir():
                folder = root / "multi30k"
                paths = [
                    folder / f"{MULTI30K_SPLITS[split]}.{lang}.gz" for lang in (source_lang, target_lang)
                ]
                for p in paths:
                    if not p.is_file():
                        raise TaskDataError(f"multi30k: missing file {p} (RL4TEXT_DATA={root})")
                src, tgt = (_read_lines(p) for p in paths)
                return _pairs_to_samples(src, tgt, str(paths[0]), source_lang, target_lang, template)
            return _from_hub(split)

        return read

    def _from_hub(split: str) -> list[dict]:
        try:
            from datasets import load_dataset
        except ImportError as exc:
            raise TaskDataError(
                "multi30k: no local copy (set RL4TEXT_DATA to a folder holding multi30k/) and the `datasets` "
                "package for the Hub is not installed (pip install datasets)"
            ) from exc
        hub_split = {"val": "validation"}.get(split, split)
        ds = load_dataset(MULTI30K_HUB, split=hub_split)
        return _pairs_to_samples(
            list(ds[source_lang]),
            list(ds[target_lang]),
            f"{MULTI30K_HUB}[{hub_split}]",
            source_lang,
            target_lang,
            template,
        )

    return Task("multi30k", {s: load(s) for s in MULTI30K_SPLITS}, metrics=["chrf", "bleu"])
