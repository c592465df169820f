"""Sentence-level lexical rewards from sacrebleu (scaled to [0, 1])."""

from __future__ import annotations

from rl4text.registry import register_reward


def _refs(references: list[str]) -> list[str]:
    return list(references) if references else [""]


@register_reward("chrf")
def chrf_reward(char_order: int = 6, word_order: int = 0, beta: int = 2):
    """Sentence chrF (Popović 2015) / 100; ``word_order=2`` gives chrF++."""
    from sacrebleu.metrics import CHRF

    metric = CHRF(char_order=char_order, word_order=word_order, beta=beta)

    def chrf(prompts, completions, references, **_):
        return [metric.sentence_score(c, _refs(r)).score / 100.0 for c, r in zip(completions, references)]

    return chrf


@register_reward("bleu")
def bleu_reward(smooth_method: str = "exp", tokenize: str = "13a"):
    """Sentence BLEU (sacrebleu, effective order, exponential smoothing by default) / 100."""
    from sacrebleu.metrics import BLEU

    metric = BLEU(smooth_method=smooth_method, tokenize=tokenize, effective_order=True)

    def bleu(prompts, completions, references, **_):
        return [metric.sentence_score(c, _refs(r)).score / 100.0 for c, r in zip(completions, references)]

    return bleu
