"""Corpus-level lexical metrics: BLEU, chrF, chrF++, TER (sacrebleu), ROUGE (rouge_score), METEOR (NLTK).

All scores are on a 0-100 scale (sacrebleu's; ROUGE and METEOR F-scores ×100). ``per_sample`` holds one
sentence-level score per prediction on the same scale. Multiple references: see :mod:`rl4text.rewards.lexical`.
"""

from __future__ import annotations

from rl4text.metrics import MetricResult
from rl4text.registry import register_metric
from rl4text.rewards import as_references
from rl4text.rewards.lexical import ROUGE_TYPES, rouge_scorer, rouge_scores


def _refs(references: list[str] | str) -> list[str]:
    return as_references(references)  # a plain string is one reference, not a list of characters


def _check(predictions: list[str], references: list[list[str]]) -> None:
    if not predictions or len(predictions) != len(references):
        raise ValueError(
            f"a metric needs one reference list per prediction and at least one prediction; "
            f"got {len(predictions)} predictions, {len(references)} reference lists"
        )


def _transpose(references: list[list[str]]) -> list[list[str | None]]:
    """sacrebleu wants one stream per reference position; a sample with fewer references gets ``None``
    there (sacrebleu's way to give samples different numbers of references; padding with a copy would
    change TER, which averages reference lengths)."""
    refs = [_refs(r) for r in references]
    n = max((len(r) for r in refs), default=1)
    return [[r[i] if i < len(r) else None for r in refs] for i in range(n)]


class _Sacre:
    """A sacrebleu corpus metric, with sentence scores (``sentence``) as ``per_sample``.

    The corpus score is not a mean of sentence scores: sacrebleu sums per-sentence sufficient statistics
    (n-gram matches and counts, edits and lengths) and computes the score from the sums. A paired bootstrap
    therefore resamples :meth:`statistics` and rescores with :meth:`score_from_statistics`, as
    ``sacrebleu.significance`` does; summed over all sentences they give exactly ``compute``'s corpus score.
    """

    name = ""

    def __init__(self, corpus, sentence=None):
        self.metric = corpus
        self.sentence = sentence or corpus

    def compute(self, predictions: list[str], references: list[list[str]]) -> MetricResult:
        _check(predictions, references)
        corpus = self.metric.corpus_score(list(predictions), _transpose(references)).score
        per = [self.sentence.sentence_score(p, _refs(r)).score for p, r in zip(predictions, references)]
        return MetricResult({self.name: corpus}, per)

    def statistics(self, predictions: list[str], references: list[list[str]]) -> list[list[float]]:
        """Each prediction's sufficient statistics, as ``compute``'s corpus score sums them."""
        _check(predictions, references)
        return self.metric._extract_corpus_statistics(list(predictions), _transpose(references))

    def score_from_statistics(self, summed: list[float]) -> float:
        """The corpus score of statistics summed over a multiset of predictions."""
        return self.metric._compute_score_from_stats(summed).score


@register_metric("chrf")
class ChrF(_Sacre):
    """Corpus chrF (``word_order=2``: chrF++), sacrebleu's defaults otherwise."""

    def __init__(self, word_order: int = 0):
        from sacrebleu.metrics import CHRF

        self.name = "chrf" if word_order == 0 else "chrf++"
        super().__init__(CHRF(word_order=word_order))


@register_metric("chrf++")
class ChrFPlusPlus(ChrF):
    """Corpus chrF++ (sacrebleu ``CHRF(word_order=2)``), reported as ``chrf++``."""

    def __init__(self):
        super().__init__(word_order=2)


@register_metric("bleu")
class Bleu(_Sacre):
    """Corpus BLEU (sacrebleu defaults: 13a tokenisation, exponential smoothing); per sample: sentence BLEU
    with effective order."""

    name = "bleu"

    def __init__(self):
        from sacrebleu.metrics import BLEU

        super().__init__(BLEU(), BLEU(effective_order=True))


@register_metric("ter")
class Ter(_Sacre):
    """Corpus TER (sacrebleu defaults; an error rate: lower is better, 0 for a perfect corpus): total edits
    over total average reference length, ×100. Per sample: sentence TER."""

    name = "ter"

    def __init__(self):
        from sacrebleu.metrics import TER

        super().__init__(TER())


@register_metric("rouge")
class Rouge:
    """ROUGE-1/2/L/Lsum F-measures ×100 (``rouge_score``, Porter stemming on), each the mean of the
    per-sample scores (as ``rouge_score``'s and HF ``evaluate``'s mean aggregation do; no bootstrap).
    Several references: the best-F reference (``score_multi``). ROUGE-Lsum: sentences put on separate
    lines by :func:`rl4text.rewards.lexical.split_sentences`. ``per_sample`` is ``per_sample_type``
    (default rougeL)."""

    def __init__(self, use_stemmer: bool = True, per_sample_type: str = "rougeL"):
        if per_sample_type not in ROUGE_TYPES:
            raise ValueError(f"per_sample_type must be one of {ROUGE_TYPES}; got {per_sample_type!r}")
        self.scorer = rouge_scorer(ROUGE_TYPES, use_stemmer=use_stemmer)
        self.per_sample_type = per_sample_type

    def compute(self, predictions: list[str], references: list[list[str]]) -> MetricResult:
        _check(predictions, references)
        per = {t: [] for t in ROUGE_TYPES}
        for p, r in zip(predictions, references):
            scores = rouge_scores(self.scorer, p, r)
            for t in ROUGE_TYPES:
                per[t].append(100.0 * scores[t].fmeasure)
        corpus = {t: sum(v) / len(v) for t, v in per.items()}
        return MetricResult(corpus, per[self.per_sample_type], per_item=per)


@register_metric("meteor")
class Meteor:
    """METEOR ×100: the mean of NLTK's sentence ``meteor_score`` (as HF ``evaluate`` does), exact +
    Porter-stem + WordNet 3.0 synonym matching, alpha=0.9, beta=3, gamma=0.5, max over references.
    Tokenisation and where WordNet comes from: :mod:`rl4text.metrics.meteor`."""

    def __init__(self):
        from rl4text.metrics.meteor import load_wordnet

        self.wordnet = load_wordnet()

    def compute(self, predictions: list[str], references: list[list[str]]) -> MetricResult:
        _check(predictions, references)
        from rl4text.metrics.meteor import meteor

        per = [100.0 * meteor(p, _refs(r), wordnet=self.wordnet) for p, r in zip(predictions, references)]
        return MetricResult({"meteor": sum(per) / len(per)}, per, per_item={"meteor": per})
