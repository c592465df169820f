"""Rewards and metrics equal the reference implementations; composition and errors."""

import pytest
from sacrebleu.metrics import BLEU, CHRF

from rl4text.metrics import build_metrics
from rl4text.rewards import RewardError, build_reward

HYPS = ["a man rides a bike .", "two dogs play in the snow", "", "the cat"]
REFS = [
    ["a man is riding a bicycle ."],
    ["two dogs are playing in snow", "dogs play"],
    ["nothing"],
    ["the cat"],
]
PROMPTS = ["p"] * 4


def test_chrf_reward_equals_sacrebleu_sentence_score():
    got = build_reward("chrf")(PROMPTS, HYPS, REFS)
    want = [CHRF().sentence_score(h, r).score / 100 for h, r in zip(HYPS, REFS)]
    assert got == pytest.approx(want)
    plus = build_reward({"name": "chrf", "args": {"word_order": 2}})(PROMPTS, HYPS, REFS)
    assert plus == pytest.approx(
        [CHRF(word_order=2).sentence_score(h, r).score / 100 for h, r in zip(HYPS, REFS)]
    )
    assert got[3] == pytest.approx(1.0)


def test_bleu_reward_equals_sacrebleu_sentence_score():
    got = build_reward("bleu")(PROMPTS, HYPS, REFS)
    metric = BLEU(effective_order=True)
    assert got == pytest.approx([metric.sentence_score(h, r).score / 100 for h, r in zip(HYPS, REFS)])


def test_corpus_metrics_equal_sacrebleu():
    refs = [["a man is riding a bicycle ."], ["two dogs are playing in snow"], ["the cat"]]
    hyps = ["a man rides a bike .", "two dogs play in the snow", "the cat"]
    streams = [[r[0] for r in refs]]
    metrics = build_metrics(["chrf", "bleu"])
    assert metrics["chrf"].compute(hyps, refs).corpus["chrf"] == pytest.approx(
        CHRF().corpus_score(hyps, streams).score
    )
    assert metrics["bleu"].compute(hyps, refs).corpus["bleu"] == pytest.approx(
        BLEU().corpus_score(hyps, streams).score
    )
    assert len(metrics["bleu"].compute(hyps, refs).per_sample) == 3


def test_toy_rewards_hand_worked():
    frac = build_reward({"name": "char_fraction", "args": {"chars": "aeiou"}})
    # "aab" -> 2/3; "a e" -> spaces ignored -> 1; "" -> 0
    assert frac(["p"] * 3, ["aab", "a e", ""], [[""]] * 3) == pytest.approx([2 / 3, 1.0, 0.0])
    length = build_reward({"name": "length", "args": {"target": 4}})
    assert length(["p"] * 2, ["abcd", "ab"], [[""]] * 2) == pytest.approx([0.0, -0.5])


def test_composition_weights_and_components():
    reward = build_reward(
        [
            {"name": "char_fraction", "weight": 2.0, "args": {"chars": "a"}},
            {"name": "length", "weight": 0.5, "args": {"target": 2}},
        ]
    )
    total, parts = reward.score(["p", "p"], ["aa", "ab"], [[""], [""]])
    # "aa": 2*1 + .5*0 = 2 ; "ab": 2*.5 + .5*0 = 1
    assert total == pytest.approx([2.0, 1.0])
    assert parts == {"char_fraction": [1.0, 0.5], "length": [0.0, 0.0]}


def test_failing_component_names_itself_and_the_sample():
    def fragile(prompts, completions, references):
        return [1.0 / len(c) for c in completions]  # breaks on an empty completion

    reward = build_reward([fragile])
    with pytest.raises(RewardError, match=r"'fragile' failed on sample 1 .*completion=''"):
        reward(["p", "q"], ["ok", ""], [[""], [""]])


def test_bad_spec():
    with pytest.raises(ValueError, match="unknown keys"):
        build_reward({"name": "chrf", "wieght": 1})
