"""Sentence-level lexical rewards, each in [0, 1]: chrF / chrF++, BLEU, TER (sacrebleu), ROUGE (rouge_score), METEOR.

Multiple references are handled as each library defines: sacrebleu scores a hypothesis against all its
references at once (BLEU: clipped counts over all, closest reference length; chrF: the best reference;
TER: the fewest edits to any reference over the average reference length); ROUGE takes the reference
with the highest F-measure (``rouge_score``'s ``score_multi``); METEOR (NLTK) the maximum over references.
A sample with no references is scored against one empty reference.
"""

from __future__ import annotations

import re

from rl4text.registry import register_reward

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")
_MEASURES = {"f": "fmeasure", "p": "precision", "r": "recall"}
# a sentence ends at . ! or ? (closing quotes/brackets may follow) before white space
_SENTENCE_END = re.compile(r"(?<=[.!?])([\"'”’)\]]*)\s+")


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


@register_reward("chrf++")
def chrf_plus_plus_reward(char_order: int = 6, word_order: int = 2, beta: int = 2):
    """Sentence chrF++ (Popović 2017: chrF plus word unigrams and bigrams) / 100."""
    return chrf_reward(char_order=char_order, word_order=word_order, beta=beta)


@register_reward("bleu")
def bleu_reward(smooth_method: str = "exp", tokenize: str = "13a"):
    """Sentence BLEU (sacrebleu, effective order, exponential smoothing by default) / 100."""
    from sacrebleu.metrics import BLEU

    metric = BLEU(smooth_method=smooth_method, tokenize=tokenize, effective_order=True)

    def bleu(prompts, completions, references, **_):
        return [metric.sentence_score(c, _refs(r)).score / 100.0 for c, r in zip(completions, references)]

    return bleu


@register_reward("ter")
def ter_reward(
    normalized: bool = False,
    no_punct: bool = False,
    asian_support: bool = False,
    case_sensitive: bool = False,
):
    """``max(0, 1 - TER/100)`` with sacrebleu's sentence TER (an error rate, 0 best, unbounded above).

    TER = edits (insertions, deletions, substitutions, shifts) / average reference length × 100, so a
    perfect hypothesis gets 1, an empty one (TER 100) or one needing more edits than the references have
    words gets 0. Arguments are sacrebleu's ``TER`` options.
    """
    from sacrebleu.metrics import TER

    metric = TER(
        normalized=normalized, no_punct=no_punct, asian_support=asian_support, case_sensitive=case_sensitive
    )

    def ter(prompts, completions, references, **_):
        scores = (metric.sentence_score(c, _refs(r)).score for c, r in zip(completions, references))
        return [max(0.0, 1.0 - s / 100.0) for s in scores]

    return ter


def split_sentences(text: str) -> str:
    """One sentence a line, for ROUGE-Lsum, with no NLTK data: a break after ``.``, ``!`` or ``?``
    (and any closing quotes or brackets) that white space follows; existing line breaks are kept.
    Deterministic and crude: "e.g. this" is split too (ROUGE-1/2/L are unaffected by line breaks)."""
    lines = (_SENTENCE_END.sub(lambda m: m.group(1) + "\n", line.strip()) for line in text.splitlines())
    return "\n".join(line for line in lines if line)


def rouge_scorer(rouge_types=ROUGE_TYPES, use_stemmer: bool = True):
    """A ``rouge_score`` scorer (Porter stemming on by default; sentences split by us, not by NLTK)."""
    from rouge_score.rouge_scorer import RougeScorer

    return RougeScorer(list(rouge_types), use_stemmer=use_stemmer, split_summaries=False)


def rouge_scores(scorer, prediction: str, references: list[str]) -> dict:
    """``{rouge type: Score(precision, recall, fmeasure)}`` against the best-F reference (``score_multi``)."""
    targets = [split_sentences(r) for r in _refs(references)]
    return scorer.score_multi(targets, split_sentences(prediction))


@register_reward("rouge")
def rouge_reward(rouge_type: str = "rougeL", measure: str = "f", use_stemmer: bool = True):
    """ROUGE (``rouge_score``, stemming on) in [0, 1]: ``rouge_type`` rouge1/rouge2/rougeL/rougeLsum,
    ``measure`` f/p/r. With several references the reference with the highest F-measure is used
    (``score_multi``: for ``f`` the max over references; ``p``/``r`` are that reference's). For
    rougeLsum, sentences are put on separate lines by :func:`split_sentences`."""
    if rouge_type not in ROUGE_TYPES:
        raise ValueError(f"rouge_type must be one of {ROUGE_TYPES}; got {rouge_type!r}")
    if measure not in _MEASURES:
        raise ValueError(f"measure must be one of {sorted(_MEASURES)}; got {measure!r}")
    scorer = rouge_scorer([rouge_type], use_stemmer=use_stemmer)
    attr = _MEASURES[measure]

    def rouge(prompts, completions, references, **_):
        return [
            float(getattr(rouge_scores(scorer, c, r)[rouge_type], attr))
            for c, r in zip(completions, references)
        ]

    return rouge


@register_reward("meteor")
def meteor_reward():
    """Sentence METEOR in [0, 1]: NLTK's ``meteor_score`` (exact, Porter-stem and WordNet 3.0 synonym
    matching, alpha=0.9, beta=3, gamma=0.5), max over references; see :mod:`rl4text.metrics.meteor` for the
    tokenisation and where WordNet comes from (never downloaded at run time)."""
    from rl4text.metrics.meteor import load_wordnet, meteor

    wordnet = load_wordnet()  # fail at build time, not in the middle of training

    def meteor_fn(prompts, completions, references, **_):
        return [meteor(c, list(r), wordnet=wordnet) for c, r in zip(completions, references)]

    return meteor_fn
