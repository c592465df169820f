"""The paired bootstrap and the combined seed + test-set interval (rl4text.significance), and the per-item values
the metrics give for them, on numbers worked out by hand in the comments."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rl4text.metrics import build_metrics
from rl4text.significance import (
    ItemScores,
    Paired,
    bootstrap_p_value,
    combined_interval,
    counts_of,
    paired_bootstrap,
    resample_counts,
)

T1 = 12.706  # t_{0.975, 1}, from the table
HYPS = ["a man rides a bike .", "two dogs play in the snow", "the cat sat on the mat", "hello there"]
REFS = [
    ["a man is riding a bicycle ."],
    ["two dogs are playing in snow", "dogs play"],
    ["the cat sat on a mat"],
    ["general kenobi", "hi there", "hello"],
]


def test_counts_and_mean_scores_by_hand():
    counts = counts_of(np.array([[0, 0, 2, 3], [1, 1, 1, 1]]), 4)
    assert counts.tolist() == [[2, 0, 1, 1], [0, 4, 0, 0]]
    scores = ItemScores.of_values([1.0, 2.0, 3.0, 10.0])
    # (2·1 + 3 + 10) / 4 = 3.75; 4·2 / 4 = 2; all once: 16 / 4 = 4
    assert scores.scores(counts).tolist() == [3.75, 2.0]
    assert scores.corpus() == 4.0
    # the default resamples: B rows of N draws each, reproducible from the seed
    c = resample_counts(5, resamples=7, seed=1)
    assert c.shape == (7, 5) and (c.sum(1) == 5).all()
    assert (c == resample_counts(5, resamples=7, seed=1)).all() and not (
        c == resample_counts(5, 7, seed=2)
    ).all()


def test_paired_bootstrap_interval_and_p_value_by_hand():
    # per-item Δ (system − baseline) = [3, 0, 0]: observed Δ = 1
    baseline = ItemScores.of_values([0.0, 5.0, 1.0])
    system = ItemScores.of_values([3.0, 5.0, 1.0])
    counts = counts_of(np.array([[0, 0, 0], [1, 1, 2], [0, 1, 2], [0, 0, 1]]), 3)
    r = paired_bootstrap(system, baseline, counts)
    # resampled Δ: 3, 0, 1, 2 (mean 1.5)
    assert r.delta == pytest.approx(1.0) and r.deltas.tolist() == pytest.approx([3.0, 0.0, 1.0, 2.0])
    # percentiles, linear between order statistics [0, 1, 2, 3]: 0.025·3 = 0.075 -> 0.075; 0.975·3 = 2.925 -> 2.925
    assert (r.lo, r.hi) == pytest.approx((0.075, 2.925))
    # p: |Δ_b − 1.5| = 1.5, 1.5, .5, .5; two are >= |1| -> (1 + 2) / (4 + 1) = .6
    # (sacrebleu's variant, |Δ_b| − mean|Δ_b| = 1.5, −1.5, −.5, .5 counted > 1: (1 + 1) / 5 = .4; no +1: 2/4 = .5)
    assert r.p == pytest.approx(0.6)
    assert bootstrap_p_value(np.zeros(9), 0.0) == 1.0  # identical outputs: no evidence at all


def test_pairing_removes_the_item_variance():
    # items of very different difficulty, the system exactly 1 better on each: every resample's Δ is 1, so the
    # paired interval is [1, 1] and p the smallest possible, 1/(B+1); resampling the two systems independently
    # (unpaired) would mix hard and easy items and give an interval tens wide around 1
    base = [0.0, 100.0, 0.0, 100.0, 50.0, 0.0]
    counts = resample_counts(len(base), resamples=200, seed=0)
    r = paired_bootstrap(ItemScores.of_values([b + 1 for b in base]), ItemScores.of_values(base), counts)
    assert (r.lo, r.hi, r.delta) == pytest.approx((1.0, 1.0, 1.0)) and r.p == pytest.approx(1 / 201)
    other = resample_counts(len(base), resamples=200, seed=1)
    unpaired = ItemScores.of_values([b + 1 for b in base]).scores(counts) - ItemScores.of_values(base).scores(
        other
    )
    assert np.quantile(unpaired, 0.975) - np.quantile(unpaired, 0.025) > 30


def _paired(delta: float, deltas: list[float]) -> Paired:
    lo, hi = np.quantile(deltas, [0.025, 0.975])
    return Paired(delta, float(lo), float(hi), 1.0, np.array(deltas))


def test_combined_interval_by_hand():
    # two seeds, observed Δ 1 and 3, on 4 shared resamples Δ_b = [0, 2, 1, 1] and [2, 4, 3, 3]
    # mean Δ 2; s²_between = ((1-2)² + (3-2)²) / 1 = 2; seed-mean Δ_b = [1, 3, 2, 2]: Var_boot = (1+1+0+0)/3 = 2/3
    # a = s²/n = 1, v = 2/3 on B - 1 = 3 df: Welch–Satterthwaite df = (5/3)² / (1/1 + (4/9)/3) = 2.41935;
    # t by the table's 1/df interpolation between df 2 (4.303) and 3 (3.182): 3.182 + 1.121 · (0.413333 - 1/3) · 6
    # = 3.72008; half = 3.72008 · sqrt(1 + 2/3) = 3.72008 · 1.290994 = 4.80260
    c = combined_interval([_paired(1.0, [0, 2, 1, 1]), _paired(3.0, [2, 4, 3, 3])])
    assert c.mean_delta == 2.0 and c.s2_between == pytest.approx(2.0) and c.var_boot == pytest.approx(2 / 3)
    assert (c.lo, c.hi) == pytest.approx((2 - 4.8026, 2 + 4.8026), abs=1e-3)
    # t_{n-1} = 12.706 instead: ±16.403; dropping Var_boot: ±12.706 (df 1); dropping s²: ±2.598 (df 3): all fail


def test_identical_seeds_give_a_test_set_interval_not_zero_width():
    # both seeds Δ 1 with Δ_b [0, 2, 1, 1]: s²_between = 0, Var_boot of the seed mean = 2/3 (the seeds move together
    # on a resample, so averaging them does not shrink it: the mean of per-seed variances / n, 1/3, would)
    # a = 0, so df = v² / (v² / 3) = B - 1 = 3: half = t_3 · sqrt(2/3) = 3.182 · 0.816497 = 2.59809 (not t_1's 10.3745)
    c = combined_interval([_paired(1.0, [0, 2, 1, 1]), _paired(1.0, [0, 2, 1, 1])])
    assert c.s2_between == 0.0 and c.var_boot == pytest.approx(2 / 3)
    assert c.hi - c.mean_delta == pytest.approx(3.182 * math.sqrt(2 / 3), abs=1e-3)
    # one seed: the bootstrap percentile interval itself
    one = combined_interval([_paired(1.0, [0, 2, 1, 1])])
    assert (one.lo, one.hi, one.n, one.s2_between) == (pytest.approx(0.075), pytest.approx(1.925), 1, None)


@pytest.mark.parametrize("name", ["bleu", "chrf", "chrf++", "ter"])
def test_sacrebleu_statistics_give_the_corpus_score(name):
    """Every item once gives exactly compute()'s corpus score; a resample gives sacrebleu's corpus score of the
    resampled corpus (statistics summed, not sentence scores averaged)."""
    metric = build_metrics([name])[name]
    result = metric.compute(HYPS, REFS)
    scores = ItemScores.of_statistics(metric.statistics(HYPS, REFS), metric.score_from_statistics)
    assert scores.corpus() == result.corpus[name]  # bit for bit
    pick = [0, 0, 2, 3]  # item 0 twice, item 1 left out
    resampled = metric.compute([HYPS[i] for i in pick], [REFS[i] for i in pick]).corpus[name]
    assert scores.scores(counts_of(np.array([pick]), 4))[0] == pytest.approx(resampled, abs=1e-9)
    mean_of_sentences = sum(result.per_sample[i] for i in pick) / 4
    assert abs(mean_of_sentences - resampled) > 0.1  # what a mean-based bootstrap would have used
    assert result.per_item == {}  # no per-item values: the corpus score is not their mean


def test_rouge_and_meteor_per_item_values_average_to_the_corpus_score():
    for name in ("rouge", "meteor"):
        result = build_metrics([name])[name].compute(HYPS, REFS)
        assert set(result.per_item) == set(result.corpus)
        for key, values in result.per_item.items():
            assert len(values) == len(HYPS)
            assert ItemScores.of_values(values).corpus() == result.corpus[key]  # bit for bit


def test_resamples_are_sacrebleus(monkeypatch):
    """The default resamples are the ones sacrebleu draws (same generator, seed and call), and rescoring them gives
    sacrebleu's own bootstrap scores (``sacrebleu.significance._bootstrap_resample``)."""
    from sacrebleu.significance import _bootstrap_resample

    monkeypatch.setenv("SACREBLEU_SEED", "12345")
    metric = build_metrics(["chrf"])["chrf"]
    stats = metric.statistics(HYPS, REFS)
    _, theirs = _bootstrap_resample(stats, metric.metric, n_samples=50)
    ours = ItemScores.of_statistics(stats, metric.score_from_statistics).scores(resample_counts(4, 50))
    # sacrebleu sums float32 statistics, so its scores are float32-rounded: equal to 1e-6 relative, not bit for bit
    assert ours.tolist() == pytest.approx([s.score for s in theirs], rel=1e-6)
    assert len({round(x, 6) for x in ours}) > 10  # really different resamples
