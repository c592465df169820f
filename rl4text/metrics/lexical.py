"""Corpus BLEU and chrF through sacrebleu (scores on sacrebleu's 0-100 scale)."""

from __future__ import annotations

from rl4text.metrics import MetricResult
from rl4text.registry import register_metric


def _transpose(references: list[list[str]]) -> list[list[str]]:
    """sacrebleu wants one stream per reference position; pad ragged reference lists by repeating the first."""
    n = max(len(r) for r in references)
    return [[r[i] if i < len(r) else r[0] for r in references] for i in range(n)]


@register_metric("chrf")
class ChrF:
    """Corpus chrF (``word_order=2``: chrF++), sacrebleu's defaults otherwise."""

    def __init__(self, word_order: int = 0):
        from sacrebleu.metrics import CHRF

        self.name = "chrf" if word_order == 0 else "chrf++"
        self.metric = CHRF(word_order=word_order)

    def compute(self, predictions: list[str], references: list[list[str]]) -> MetricResult:
        corpus = self.metric.corpus_score(predictions, _transpose(references)).score
        per = [self.metric.sentence_score(p, r).score for p, r in zip(predictions, references)]
        return MetricResult({self.name: corpus}, per)


@register_metric("bleu")
class Bleu:
    """Corpus BLEU (sacrebleu defaults: 13a tokenisation, exponential smoothing)."""

    def __init__(self):
        from sacrebleu.metrics import BLEU

        self.metric = BLEU()
        self.sentence = BLEU(effective_order=True)

    def compute(self, predictions: list[str], references: list[list[str]]) -> MetricResult:
        corpus = self.metric.corpus_score(predictions, _transpose(references)).score
        per = [self.sentence.sentence_score(p, r).score for p, r in zip(predictions, references)]
        return MetricResult({"bleu": corpus}, per)
