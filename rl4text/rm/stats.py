"""Agreement between a scorer and human judgments: pairwise accuracy, Kendall's tau-b, Spearman's rho.

Pure functions on plain lists (no scipy). Ties follow the usual conventions: tau-b (Kendall 1945) corrects
for ties in either list; Spearman's rho is Pearson's correlation of average ranks; in pairwise accuracy a
scorer that ties a pair humans did not tie gets half a point.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def average_ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks, ascending; tied values share the mean of the ranks they span."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def pearson(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson's r; NaN when either list is constant or shorter than 2."""
    n = len(x)
    if n != len(y):
        raise ValueError(f"lists of different lengths: {n} and {len(y)}")
    if n < 2:
        return math.nan
    mx, my = sum(x) / n, sum(y) / n
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y))
    sxx = sum((a - mx) ** 2 for a in x)
    syy = sum((b - my) ** 2 for b in y)
    return sxy / math.sqrt(sxx * syy) if sxx > 0 and syy > 0 else math.nan


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rho: Pearson's r of average ranks (ties handled); NaN for a constant list."""
    return pearson(average_ranks(x), average_ranks(y))


def kendall_tau_b(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b = (C - D) / sqrt((n0 - n1)(n0 - n2)), n0 = n(n-1)/2, n1 / n2 = pairs tied in x / y.
    O(n^2), fine for groups and held-out sets of a few thousand items. NaN when either list is constant."""
    n = len(x)
    if n != len(y):
        raise ValueError(f"lists of different lengths: {n} and {len(y)}")
    concordant = discordant = tied_x = tied_y = 0
    for i in range(n):
        for j in range(i + 1, n):
            dx, dy = x[i] - x[j], y[i] - y[j]
            if dx == 0:
                tied_x += 1
            if dy == 0:
                tied_y += 1
            if dx * dy > 0:
                concordant += 1
            elif dx * dy < 0:
                discordant += 1
    n0 = n * (n - 1) // 2
    denom = math.sqrt((n0 - tied_x) * (n0 - tied_y))
    return (concordant - discordant) / denom if denom > 0 else math.nan


def _mean(values: list[float]) -> float:
    values = [v for v in values if not math.isnan(v)]
    return sum(values) / len(values) if values else math.nan


def agreement(groups, scores: Sequence[Sequence[float]]) -> dict:
    """A scorer's agreement with the humans over held-out ``groups`` (``scores[g][i]`` for item i of group g).

    ``pairwise_accuracy`` over all within-group preference pairs; where groups have human scores,
    ``kendall_tau``/``spearman_rho`` within each group averaged over groups (groups whose human or metric
    scores are all equal are skipped), and ``*_pooled`` over all items together (this mixes between-group
    differences in, e.g. easy vs hard source segments).
    """
    pairs = [(g, p) for g, group in enumerate(groups) for p in group.preference_pairs()]
    correct = sum(
        1.0 if scores[g][b] > scores[g][w] else 0.5 if scores[g][b] == scores[g][w] else 0.0
        for g, (b, w) in pairs
    )
    out = {
        "pairwise_accuracy": correct / len(pairs) if pairs else math.nan,
        "n_pairs": len(pairs),
        "n_groups": len(groups),
        "n_items": sum(len(g.completions) for g in groups),
    }
    scored = [(group.scores, list(s)) for group, s in zip(groups, scores) if group.scores is not None]
    if scored:
        out["kendall_tau"] = _mean([kendall_tau_b(s, h) for h, s in scored])
        out["spearman_rho"] = _mean([spearman(s, h) for h, s in scored])
        human = [v for h, _ in scored for v in h]
        flat = [v for _, s in scored for v in s]
        out["kendall_tau_pooled"] = kendall_tau_b(flat, human)
        out["spearman_rho_pooled"] = spearman(flat, human)
    return out
