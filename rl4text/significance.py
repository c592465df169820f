"""Paired significance over test items: a system against a baseline on the same items, and over training seeds.

A system's score on a test set is a function of which items are in it (:class:`ItemScores`): the mean of
per-item values (ROUGE, METEOR, BERTScore, reward, length, EOS), or a corpus score recomputed from summed
per-item sufficient statistics (sacrebleu's BLEU, chrF, TER: not means of sentence scores). A bootstrap
resample of the test set is given by how many times each item is drawn (``counts`` ``[B, N]``), so the same
resamples serve every system and metric: that is what makes the test *paired* (Koehn 2004, sacrebleu's
``--paired-bs``).

* :func:`paired_bootstrap`: observed Δ = score(system) − score(baseline), the 95% percentile interval of the
  resampled Δ, and a two-sided p-value (see there).
* :func:`combined_interval`: the mean Δ over training seeds with an interval that holds both the between-seed
  variance and the test-set sampling variance (all seeds are scored on the same test set, so the spread of the
  seeds alone misses the latter; identical seeds no longer give a zero-width interval).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from rl4text.compare import t_critical

RESAMPLES = 1000
"""Bootstrap resamples (sacrebleu's default for ``--paired-bs``)."""
SEED = 12345
"""Seed of the resampled index sets (sacrebleu's ``SACREBLEU_SEED`` default)."""


@dataclass
class ItemScores:
    """A score over any multiset of test items: ``stats`` ``[N, K]`` holds item i's statistics in row i.

    ``combine`` maps the statistics summed over the chosen items (``K`` numbers, Python ints for an integer
    array) and the number of items chosen to the score; ``None``: the mean of column 0 (a per-item value).
    Sums run item by item in test order, as sacrebleu's ``sum_of_lists`` and Python's ``sum`` do, so every
    item drawn once reproduces the corpus score bit for bit.
    """

    stats: np.ndarray
    combine: Callable[[list, int], float] | None = None

    @classmethod
    def of_values(cls, values: Sequence[float]) -> ItemScores:
        return cls(np.asarray(values, dtype=np.float64).reshape(-1, 1))

    @classmethod
    def of_statistics(cls, stats: Sequence[Sequence[float]], combine: Callable[[list], float]) -> ItemScores:
        """Per-item sufficient statistics (kept as integers when they all are) and ``combine(summed)``."""
        arr = np.asarray(stats)
        if not np.issubdtype(arr.dtype, np.integer):
            arr = arr.astype(np.float64)
        return cls(arr.reshape(len(stats), -1), lambda summed, _n: combine(summed))

    def __len__(self) -> int:
        return self.stats.shape[0]

    def scores(self, counts: np.ndarray) -> np.ndarray:
        """The score of each resample; ``counts`` ``[B, N]``: how often each item is drawn. Returns ``[B]``."""
        if counts.shape[1] != len(self):
            raise ValueError(f"counts cover {counts.shape[1]} items, the scores {len(self)}")
        sums = np.zeros((counts.shape[0], self.stats.shape[1]), dtype=self.stats.dtype)
        for i in range(len(self)):  # item by item: the order the corpus score sums in
            sums += counts[:, i : i + 1].astype(self.stats.dtype) * self.stats[i]
        n = counts.sum(1)
        if self.combine is None:
            return sums[:, 0] / n
        return np.array([self.combine(row.tolist(), int(k)) for row, k in zip(sums, n)], dtype=np.float64)

    def corpus(self) -> float:
        """The score of the whole test set (every item once)."""
        return float(self.scores(np.ones((1, len(self)), dtype=np.int64))[0])


def resample_counts(n_items: int, resamples: int = RESAMPLES, seed: int = SEED) -> np.ndarray:
    """``[resamples, n_items]`` draw counts of ``resamples`` bootstrap samples of ``n_items`` items (with
    replacement, ``n_items`` each; numpy ``default_rng(seed).choice``, as sacrebleu draws them)."""
    if n_items < 1:
        raise ValueError("a bootstrap needs at least one test item")
    idx = np.random.default_rng(seed).choice(n_items, size=(resamples, n_items), replace=True)
    return counts_of(idx, n_items)


def counts_of(indices: np.ndarray, n_items: int) -> np.ndarray:
    """Index sets ``[B, n]`` (each row one resample's drawn items) as draw counts ``[B, n_items]``."""
    indices = np.asarray(indices)
    counts = np.zeros((indices.shape[0], n_items), dtype=np.int64)
    np.add.at(counts, (np.arange(indices.shape[0])[:, None], indices), 1)
    return counts


def percentile_interval(values: np.ndarray) -> tuple[float, float]:
    """The 2.5th and 97.5th percentiles (numpy's linear interpolation between order statistics)."""
    lo, hi = np.quantile(np.asarray(values, dtype=np.float64), [0.025, 0.975])
    return float(lo), float(hi)


def bootstrap_p_value(deltas: np.ndarray, observed: float) -> float:
    """Two-sided p of H0 "no difference": the resampled Δ shifted to mean 0 stand for the null distribution;
    p = (1 + #{b : |Δ_b − mean Δ| ≥ |observed|}) / (B + 1).

    The +1 counts the observed sample itself (Davison & Hinkley 1997, eq. 4.11; the correction sacrebleu
    applies), so p ≥ 1/(B+1) and the test never rejects more often than its level. sacrebleu's own
    ``_compute_p_value`` shifts |Δ_b| instead of Δ_b and counts ``>`` (a one-sided-looking variant); here the
    shift is of the signed Δ and ties count, the textbook two-sided bootstrap test (Efron & Tibshirani 1993,
    §16.4). With observed = 0 (identical outputs) p = 1.
    """
    deltas = np.asarray(deltas, dtype=np.float64)
    extreme = np.abs(deltas - deltas.mean()) >= abs(observed) - 1e-12 * max(1.0, abs(observed))
    return float((1 + int(extreme.sum())) / (len(deltas) + 1))


@dataclass
class Paired:
    """One system against the baseline on the same items."""

    delta: float
    """Observed score(system) − score(baseline) on the whole test set."""
    lo: float
    hi: float
    """95% percentile interval of the resampled Δ."""
    p: float
    """Two-sided bootstrap p-value (:func:`bootstrap_p_value`)."""
    deltas: np.ndarray
    """``[B]``: Δ on each resample (what :func:`combined_interval` averages over seeds)."""

    def as_dict(self) -> dict:
        return {"delta": self.delta, "lo": self.lo, "hi": self.hi, "p": self.p}


def paired_bootstrap(system: ItemScores, baseline: ItemScores, counts: np.ndarray) -> Paired:
    """Paired bootstrap of Δ = system − baseline: both scored on the SAME resamples ``counts`` ``[B, N]``."""
    if len(system) != len(baseline):
        raise ValueError(f"paired scores need the same items: {len(system)} vs {len(baseline)}")
    deltas = system.scores(counts) - baseline.scores(counts)
    observed = system.corpus() - baseline.corpus()
    lo, hi = percentile_interval(deltas)
    return Paired(observed, lo, hi, bootstrap_p_value(deltas, observed), deltas)


@dataclass
class Combined:
    """The mean change over seeds with its 95% interval (between-seed and test-set variance)."""

    mean_delta: float
    lo: float
    hi: float
    n: int
    s2_between: float | None
    """Sample variance of the seeds' observed Δ (``None`` for one seed)."""
    var_boot: float
    """Bootstrap variance of the seed-mean Δ."""

    def as_dict(self) -> dict:
        return {
            "mean_delta": self.mean_delta,
            "lo": self.lo,
            "hi": self.hi,
            "n": self.n,
            "s2_between": self.s2_between,
            "var_boot": self.var_boot,
        }


def combined_interval(paired: Sequence[Paired]) -> Combined:
    """Mean Δ over n seeds ± t_{df, 0.975} · sqrt(s²_between / n + Var_boot(mean over seeds of Δ_b)).

    s²_between: the sample variance (n − 1) of the seeds' observed Δ, the training noise; Var_boot: the sample
    variance (B − 1) over the shared resamples b of the seeds' average Δ_b, the test-set noise of the mean
    (seeds scored on the same resample move together, so it is computed on the average, not summed per seed).
    df: Welch–Satterthwaite's for a sum of two variance estimates, s²_between / n on n − 1 degrees of freedom and
    Var_boot on B − 1: ``(a + v)² / (a² / (n − 1) + v² / (B − 1))`` with ``a = s²_between / n``. It is n − 1 when
    the seeds' spread dominates and tends to B − 1 (the normal quantile for B = 1000) when the test set's does, so
    seeds that agree exactly get the test-set interval, not one widened by t_{n−1}.
    One seed: the bootstrap percentile interval of its Δ (no seed variance to estimate).
    """
    if not paired:
        raise ValueError("no seeds to combine")
    n = len(paired)
    observed = np.array([p.delta for p in paired], dtype=np.float64)
    mean_boot = np.mean([p.deltas for p in paired], axis=0)  # [B]: the seed-mean Δ on each resample
    var_boot = float(np.var(mean_boot, ddof=1)) if len(mean_boot) > 1 else 0.0
    mean = float(observed.mean())
    if n == 1:
        lo, hi = paired[0].lo, paired[0].hi
        return Combined(mean, lo, hi, 1, None, var_boot)
    s2 = float(np.var(observed, ddof=1))
    a, b = s2 / n, len(mean_boot)
    denom = a * a / (n - 1) + (var_boot * var_boot / (b - 1) if b > 1 else 0.0)
    df = (a + var_boot) ** 2 / denom if denom > 0 else float(n - 1)
    half = t_critical(max(df, float(n - 1))) * math.sqrt(a + var_boot)
    return Combined(mean, mean - half, mean + half, n, s2, var_boot)
