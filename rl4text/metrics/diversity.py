"""Diversity metrics over a set of predictions: distinct-n, MSTTR, self-BLEU. Words are whitespace tokens."""

from __future__ import annotations

from rl4text.metrics import MetricResult
from rl4text.registry import register_metric
from rl4text.rewards.task import distinct_ratio, ngrams


@register_metric("distinct")
class Distinct:
    """Distinct-n (Li et al. 2016): unique n-grams / all n-grams across all predictions, for each n in ``ns``."""

    def __init__(self, ns: tuple[int, ...] = (1, 2)):
        self.ns = tuple(ns)

    def compute(self, predictions: list[str], references: list[list[str]]) -> MetricResult:
        words = [p.split() for p in predictions]
        corpus = {}
        for n in self.ns:
            grams = [g for w in words for g in ngrams(w, n)]
            corpus[f"distinct-{n}"] = len(set(grams)) / len(grams) if grams else 0.0
        return MetricResult(corpus, [distinct_ratio(w, self.ns[-1]) for w in words])


@register_metric("msttr")
class MSTTR:
    """Mean segmental type-token ratio (Johnson 1944): the predictions' words concatenated, cut into segments of
    ``segment`` words (a shorter tail is dropped), the mean of each segment's types/tokens. With fewer words than
    one segment, the TTR of all words."""

    def __init__(self, segment: int = 100):
        self.segment = segment

    def compute(self, predictions: list[str], references: list[list[str]]) -> MetricResult:
        words = [w for p in predictions for w in p.split()]
        segments = [
            words[i : i + self.segment] for i in range(0, len(words) - self.segment + 1, self.segment)
        ]
        segments = segments or ([words] if words else [])
        value = sum(len(set(s)) / len(s) for s in segments) / len(segments) if segments else 0.0
        per = [len(set(p.split())) / len(p.split()) if p.split() else 0.0 for p in predictions]
        return MetricResult({"msttr": value}, per)


@register_metric("self_bleu")
class SelfBleu:
    """Self-BLEU (Zhu et al. 2018): each prediction's sentence BLEU against all other predictions as references,
    averaged (sacrebleu, effective order). Lower means more diverse."""

    def compute(self, predictions: list[str], references: list[list[str]]) -> MetricResult:
        from sacrebleu.metrics import BLEU

        bleu = BLEU(effective_order=True)
        per = []
        for i, pred in enumerate(predictions):
            others = predictions[:i] + predictions[i + 1 :]
            per.append(bleu.sentence_score(pred, others).score if others else 0.0)
        return MetricResult({"self_bleu": sum(per) / len(per) if per else 0.0}, per)
