"""Task rewards, diversity metrics, reward scaling and token-level composition, by hand; composed rewards in training."""

import json
import math

import pytest

import rl4text
from rl4text.config import load_config
from rl4text.metrics import build_metrics
from rl4text.rewards import RewardError, RewardScaler, build_reward, token_level
from rl4text.train import train

SMOKE = "configs/smoke.yaml"


def test_length_ratio_hand_worked():
    reward = build_reward({"name": "length_ratio", "args": {"low": 0.8, "high": 1.2}})
    refs = [["one two three four five"]] * 3
    # 5/5 = 1 (inside the band) -> 0; 7/5 = 1.4 -> -(1.4 - 1.2) = -0.2; 2/5 = 0.4 -> -(0.8 - 0.4) = -0.4
    got = reward(["p"] * 3, ["a b c d e", "a b c d e f g", "a b"], refs)
    assert got == pytest.approx([0.0, -0.2, -0.4])
    # the closest reference length counts: 3 words vs refs of 3 and 10 words -> ratio 1
    assert reward(["p"], ["a b c"], [["x y z", "1 2 3 4 5 6 7 8 9 10"]]) == [0.0]


def test_missing_eos_needs_and_uses_the_field():
    reward = build_reward({"name": "missing_eos", "args": {"penalty": 2.0}})
    assert reward(["p", "p"], ["a", "b"], [[""], [""]], ended_with_eos=[True, False]) == [0.0, -2.0]
    with pytest.raises(RewardError, match="ended_with_eos"):
        reward(["p"], ["a"], [[""]])


def test_repetition_hand_worked():
    reward = build_reward({"name": "repetition", "args": {"n": 1}})
    # "a a a b": 2 distinct of 4 unigrams -> -(1 - .5) = -.5 ; "a b c" -> 0
    assert reward(["p", "p"], ["a a a b", "a b c"], [[""], [""]]) == pytest.approx([-0.5, 0.0])


def test_diversity_metrics_hand_worked():
    preds = ["a b a", "a c"]
    m = build_metrics(["distinct", "msttr", "self_bleu"])
    d = m["distinct"].compute(preds, [[""]] * 2)
    # unigrams a b a a c: 3 distinct / 5 ; bigrams (a b)(b a)(a c): 3 / 3
    assert d.corpus == {"distinct-1": pytest.approx(0.6), "distinct-2": pytest.approx(1.0)}
    # 5 words, segment 2: [a b] [a a] (tail [c] dropped) -> (1 + .5)/2 = .75
    from rl4text.metrics.diversity import MSTTR

    assert MSTTR(segment=2).compute(preds, [[""]] * 2).corpus["msttr"] == pytest.approx(0.75)
    assert m["msttr"].compute(preds, [[""]] * 2).corpus["msttr"] == pytest.approx(
        0.6
    )  # one short segment: 3/5
    same = m["self_bleu"].compute(["the cat sat on the mat"] * 3, [[""]] * 3).corpus["self_bleu"]
    varied = m["self_bleu"].compute(["the cat sat", "dogs run fast today", "a bird sings"], [[""]] * 3)
    assert same == pytest.approx(100.0) and varied.corpus["self_bleu"] < 10


def test_reward_scaler_welford_and_clip():
    scaler = RewardScaler(normalize=True)
    # [1, 2, 3]: mean 2, sample std 1 -> [-1, 0, 1]
    assert scaler([1.0, 2.0, 3.0]) == pytest.approx([-1.0, 0.0, 1.0])
    # then [4]: mean 2.5, M2 = 5, std sqrt(5/3)
    assert scaler([4.0]) == pytest.approx([1.5 / math.sqrt(5 / 3)])
    clip = RewardScaler(clip=0.5)
    assert clip([-2.0, 0.1, 3.0]) == [-0.5, 0.1, 0.5]
    restored = RewardScaler(normalize=True)
    restored.load_state_dict(scaler.state_dict())
    assert restored([7.0]) == scaler([7.0])


def test_token_level_component_composes():
    @token_level
    def per_token(prompts, completions, references, response_token_ids, **_):
        return [[0.5] * len(ids) for ids in response_token_ids]

    reward = build_reward([{"name": "char_fraction", "weight": 2.0, "args": {"chars": "a"}}, per_token])
    out = reward.evaluate(["p", "p"], ["aa", "ab"], [[""], [""]], response_token_ids=[[1, 2, 3], [4]])
    assert out.sequence == pytest.approx([2.0, 1.0])
    assert out.token == [[0.5, 0.5, 0.5], [0.5]]
    assert out.total == pytest.approx([3.5, 1.5])
    assert out.parts["per_token"] == [1.5, 0.5]

    @token_level
    def wrong_length(prompts, completions, references, response_token_ids, **_):
        return [[1.0] for _ in response_token_ids]

    with pytest.raises(RewardError, match="1 values for the 3 tokens of sample 0"):
        build_reward([wrong_length]).evaluate(["p"], ["x"], [[""]], response_token_ids=[[1, 2, 3]])


def read_rows(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_training_with_a_composed_reward_logs_each_component(tmp_path):
    components = (
        "reward.components=[{name: char_fraction, weight: 1.0, args: {chars: aeiou}},"
        " {name: length, weight: 0.5, args: {target: 8}}]"
    )
    cfg = load_config(
        SMOKE, [components, "train.iterations=12", "eval.every=0", "train.save_final_model=false"]
    )
    train(cfg, tmp_path / "run")
    rows = [r for r in read_rows(tmp_path / "run") if "rollout/reward_mean" in r]
    for r in rows:
        assert r["rollout/reward_mean"] == pytest.approx(
            r["reward/char_fraction"] + 0.5 * r["reward/length"], abs=1e-5
        )
    final = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert {"reward/char_fraction", "reward/length"} <= set(final)
    assert (
        sum(r["rollout/reward_mean"] for r in rows[-3:])
        > sum(r["rollout/reward_mean"] for r in rows[:3]) + 0.3
    )


@rl4text.register_reward("test_vowel_tokens")
def vowel_tokens():
    """Token-level: +1/len per token that is a vowel of the char tokenizer (ids of a e i o u)."""
    from rl4text.char_tokenizer import CHARS, SPECIALS

    vowels = {len(SPECIALS) + CHARS.index(c) for c in "aeiou"}

    @token_level
    def score(prompts, completions, references, response_token_ids, **_):
        return [[float(t in vowels) / len(ids) for t in ids] for ids in response_token_ids]

    return score


def test_training_with_token_level_reward_and_normalisation(tmp_path):
    overrides = [
        "reward.components=[{name: test_vowel_tokens}]",
        "reward.normalize=true",
        "reward.clip=5.0",
        "train.iterations=14",
        "eval.every=0",
        "train.save_final_model=false",
    ]
    train(load_config(SMOKE, overrides), tmp_path / "run")
    rows = [r for r in read_rows(tmp_path / "run") if "rollout/reward_mean" in r]
    rewards = [r["rollout/reward_mean"] for r in rows]
    assert sum(rewards[-3:]) / 3 > sum(rewards[:3]) / 3 + 0.3, rewards
    # token-level rewards are not normalised; the (empty) sequence part is
    assert all(r["rollout/reward_train_mean"] == pytest.approx(0.0, abs=1e-6) for r in rows)
