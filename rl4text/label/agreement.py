"""Agreement and interval statistics of the labeling app (pure functions, hand-checked in tests/test_label.py).

Labels are hashable category values (the app uses ``"first"`` / ``"second"`` / ``"tie"`` for which candidate
of a pair was preferred, see :func:`pair_label`); ``None`` is a missing rating.
"""

from __future__ import annotations

import math

Z95 = 1.959963984540054


def cohen_kappa(a: list, b: list) -> float:
    """Cohen's κ of two raters over the units both rated (``None`` = not rated):
    ``(p_o - p_e) / (1 - p_e)`` with ``p_e = Σ_k p_a(k) p_b(k)`` from each rater's *own* marginals (Scott's π
    would pool them). NaN when fewer than 2 shared units or when chance agreement is 1 (one category only)."""
    if len(a) != len(b):
        raise ValueError(f"the two raters' label lists differ in length: {len(a)} vs {len(b)}")
    shared = [(x, y) for x, y in zip(a, b) if x is not None and y is not None]
    n = len(shared)
    if n < 2:
        return math.nan
    p_o = sum(x == y for x, y in shared) / n
    cats = {x for x, _ in shared} | {y for _, y in shared}
    p_e = sum((sum(x == k for x, _ in shared) / n) * (sum(y == k for _, y in shared) / n) for k in cats)
    return math.nan if p_e >= 1.0 else (p_o - p_e) / (1.0 - p_e)


def krippendorff_alpha(rows: list[list], level: str = "nominal") -> float:
    """Krippendorff's α over ``rows`` = raters × units (``None`` = missing), via the ``krippendorff``
    package. Units with fewer than two ratings carry no pairable value and are left out, as α defines.
    NaN when fewer than two pairable values or a single category (α undefined)."""
    import numpy as np

    try:
        import krippendorff
    except ImportError as exc:  # pragma: no cover - the label extra installs it
        raise ImportError("Krippendorff's alpha needs `pip install 'rl4text[label]'` (krippendorff)") from exc
    cats = sorted({v for r in rows for v in r if v is not None}, key=str)
    code = {c: float(i) for i, c in enumerate(cats)}
    data = np.array([[np.nan if v is None else code[v] for v in r] for r in rows], dtype=float)
    pairable = int(
        sum(np.sum(~np.isnan(data[:, u])) for u in range(data.shape[1]) if np.sum(~np.isnan(data[:, u])) >= 2)
    )
    if len(cats) < 2 or pairable < 2:
        return math.nan
    return float(krippendorff.alpha(reliability_data=data, level_of_measurement=level))


def wilson_interval(successes: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (95% by default); (NaN, NaN) when ``n == 0``."""
    if n <= 0:
        return (math.nan, math.nan)
    p = successes / n
    denom = 1.0 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, center - half), min(1.0, center + half))


def pair_label(ranking: list[int], tie: bool, a: int, b: int) -> str:
    """Which of candidates ``a`` and ``b`` (canonical indices, ``a`` listed first) a judgment preferred:
    ``"first"`` (a), ``"second"`` (b) or ``"tie"``."""
    if tie:
        return "tie"
    return "first" if ranking.index(a) < ranking.index(b) else "second"
