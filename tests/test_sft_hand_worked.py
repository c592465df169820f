"""SFT's batch order (length grouping, batch sizes) and learning-rate schedules, against numbers worked out by hand."""

import math

import numpy as np
import pytest

from rl4text.sft import batch_order, lr_factor

# 100 examples of lengths i % 7: 15 of length 0 and 1, 14 of each of 2..6
LENGTHS = [i % 7 for i in range(100)]


def spread(batch, lengths=LENGTHS):
    return max(lengths[i] for i in batch) - min(lengths[i] for i in batch)


def test_length_grouped_batches_hold_similar_lengths_in_shuffled_order():
    batches = batch_order(LENGTHS, 8, np.random.default_rng(0), group_by_length=True)
    # every example once; 100 = 12 * 8 + 4 -> twelve full batches and one of 4
    assert sorted(i for b in batches for i in b) == list(range(100))
    assert sorted(len(b) for b in batches) == [4] + [8] * 12
    # the window (8 * 64 = 512 examples) holds the whole epoch, so the order is sorted by length before it is cut:
    # every length occurs >= 14 >= 8 times, so a batch of 8 consecutive sorted examples spans at most two
    # adjacent lengths, and the short batch holds the 4 longest (length 6)
    assert all(spread(b) <= 1 for b in batches)
    short = next(b for b in batches if len(b) == 4)
    assert {LENGTHS[i] for i in short} == {6}
    # the batches themselves are shuffled (not fed shortest first)
    firsts = [min(LENGTHS[i] for i in b) for b in batches]
    assert firsts != sorted(firsts)
    # without grouping the same seed mixes lengths: some batch spans 0..6
    mixed = batch_order(LENGTHS, 8, np.random.default_rng(0), group_by_length=False)
    assert sorted(i for b in mixed for i in b) == list(range(100))
    assert [len(b) for b in mixed] == [8] * 12 + [4]  # in order, the remainder last
    assert max(spread(b) for b in mixed) == 6


def test_length_grouping_across_several_windows():
    # 1100 examples, windows of 512: [0, 512), [512, 1024), [1024, 1100); each sorted on its own, and every
    # window boundary falls on a batch boundary (512 = 64 * 8), so grouping holds in every batch
    lengths = [i % 7 for i in range(1100)]
    batches = batch_order(lengths, 8, np.random.default_rng(1), group_by_length=True)
    assert sorted(i for b in batches for i in b) == list(range(1100))
    assert sorted(len(b) for b in batches) == [4] + [8] * 137
    assert all(spread(b, lengths) <= 1 for b in batches)


def test_lr_schedules_by_hand():
    total, warmup = 100, 10
    # warmup: (step + 1) / warmup, so the first step already learns: .1, .5, 1.0 (whatever the schedule)
    for schedule in ("linear", "cosine", "constant"):
        assert [lr_factor(s, total, warmup, schedule) for s in (0, 4, 9)] == pytest.approx([0.1, 0.5, 1.0])
    # after warmup, progress p = (step - 10) / 90:
    #   step 10: p = 0 -> 1; step 40: p = 1/3; step 55: p = .5; step 70: p = 2/3; step 99: p = 89/90; step 100: 1
    #   linear 1 - p:              1, .666667, .5, .333333, .011111, 0 (and 0, not negative, past the end)
    #   cosine (1 + cos(pi p))/2:  1, .75,     .5, .25,     (1 + cos(89 pi / 90))/2 = .000305, 0
    steps = [10, 40, 55, 70, 99, 100, 150]
    linear = [1.0, 2 / 3, 0.5, 1 / 3, 1 / 90, 0.0, 0.0]
    cosine = [1.0, 0.75, 0.5, 0.25, (1 + math.cos(89 * math.pi / 90)) / 2, 0.0]
    assert [lr_factor(s, total, warmup, "linear") for s in steps] == pytest.approx(linear, abs=1e-12)
    assert [lr_factor(s, total, warmup, "cosine") for s in steps[:-1]] == pytest.approx(cosine, abs=1e-12)
    assert [lr_factor(s, total, warmup, "constant") for s in steps] == [1.0] * len(steps)
    # no warmup: step 0 is the peak, and the decay runs over all 100 steps: step 50 -> linear .5, cosine .5,
    # step 25 -> linear .75, cosine (1 + cos(pi/4))/2 = .853553
    assert lr_factor(0, 100, 0, "linear") == 1.0 and lr_factor(0, 100, 0, "cosine") == 1.0
    assert lr_factor(25, 100, 0, "linear") == pytest.approx(0.75)
    assert lr_factor(25, 100, 0, "cosine") == pytest.approx((1 + math.cos(math.pi / 4)) / 2)
