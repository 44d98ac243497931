"""Effect sizes with confidence intervals, the minimum detectable effect, and matrix-wide
false-discovery control: what a verdict says beyond "p < 0.05".

* :func:`shift` is the Hodges-Lehmann estimate of the change new vs base, computed on the log
  scale so it is a ratio (``-81%`` means new = 0.19 x base), with the exact distribution-free
  interval that inverts the Mann-Whitney test (Hollander & Wolfe, *Nonparametric Statistical
  Methods*, 3rd ed., 4.3; R's ``wilcox.test(conf.int=TRUE)`` computes the same): the order
  statistics ``C`` and ``mn + 1 - C`` of the ``m x n`` pairwise differences, where ``C`` comes from
  the exact null distribution of U. Small samples cannot reach every confidence: at 3 runs a side
  the widest interval (smallest to largest difference) has 90%; the interval says which it has.
* :func:`mde_pct`: the smallest change a cell's measured noise lets this many runs detect
  (normal approximation with the Mann-Whitney test's efficiency against the t-test, 3/pi).
* :func:`bh_adjust`: Benjamini-Hochberg q-values over all the cells x metrics of one matrix
  (``scipy.stats.false_discovery_control``), so 72 tests at once do not produce false alarms at
  5% each.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import false_discovery_control, norm


@dataclass(frozen=True)
class Shift:
    """Hodges-Lehmann change new vs base in percent, with an interval of ``confidence``."""

    pct: float
    low: float
    high: float
    confidence: float

    def bound(self) -> float:
        """The largest change the interval allows, either way (for "no change larger than X%")."""
        return max(abs(self.low), abs(self.high))


@functools.lru_cache(maxsize=256)
def _u_null_counts(m: int, n: int) -> tuple[int, ...]:
    """How many of the C(m+n, m) rankings give each U = 0..mn (no ties): the recurrence
    f(m, n, u) = f(m-1, n, u-n) + f(m, n-1, u) of Mann & Whitney (1947)."""
    if m == 0 or n == 0:
        return (1,)
    a, b = _u_null_counts(m - 1, n), _u_null_counts(m, n - 1)
    return tuple((a[u - n] if 0 <= u - n < len(a) else 0) + (b[u] if u < len(b) else 0)
                 for u in range(m * n + 1))


def _critical(m: int, n: int, confidence: float) -> tuple[int, float]:
    """The largest C >= 1 with P(U < C) <= (1 - confidence) / 2, and the confidence the interval
    [D(C), D(mn+1-C)] then has; C = 1 (the widest interval) when no C reaches ``confidence``."""
    counts = _u_null_counts(m, n)
    total = math.comb(m + n, m)
    half = (1 - confidence) / 2
    c, below = 1, counts[0]  # P(U < 1) = P(U = 0)
    while c < len(counts) and (below + counts[c]) / total <= half:
        below += counts[c]
        c += 1
    return c, 1 - 2 * sum(counts[:c]) / total


def shift(base: Sequence[float], new: Sequence[float], confidence: float = 0.95) -> Shift | None:
    """Hodges-Lehmann change and its exact interval; None with fewer than 2 runs a side or a
    value <= 0 (the ratio scale needs positive measurements: IOPS, latencies)."""
    if len(base) < 2 or len(new) < 2 or min(min(base), min(new)) <= 0:
        return None
    diffs = np.sort((np.log(np.asarray(new, float))[:, None] - np.log(np.asarray(base, float))[None, :]).ravel())
    m, n = len(new), len(base)
    c, achieved = _critical(m, n, confidence)
    pct = lambda d: float(math.expm1(d) * 100.0)  # noqa: E731
    return Shift(pct(float(np.median(diffs))), pct(float(diffs[c - 1])), pct(float(diffs[m * n - c])),
                 round(achieved, 4))


def mde_from_cv(cv_base: float, cv_new: float, n_base: int, n_new: int, *, alpha: float = 0.05,
                power: float = 0.8) -> float:
    """The minimum detectable change (same unit as the coefficients of variation) for ``n_base``
    and ``n_new`` runs: (z(1-alpha/2) + z(power)) * sqrt(cv_b^2/n_b + cv_n^2/n_n) / sqrt(3/pi)."""
    z = float(norm.ppf(1 - alpha / 2) + norm.ppf(power))
    return z * math.sqrt(cv_base ** 2 / n_base + cv_new ** 2 / n_new) / math.sqrt(3 / math.pi)


def mde_pct(base: Sequence[float], new: Sequence[float], *, alpha: float = 0.05, power: float = 0.8) -> float | None:
    """The minimum detectable change in percent with these runs and this noise (two-sided
    ``alpha``, ``power``; :func:`mde_from_cv`)."""
    if len(base) < 2 or len(new) < 2:
        return None
    cvs = []
    for side in (base, new):
        a = np.asarray(side, float)
        mean = float(a.mean())
        if mean == 0:
            return None
        cvs.append(float(a.std(ddof=1)) / abs(mean) * 100.0)
    return mde_from_cv(cvs[0], cvs[1], len(base), len(new), alpha=alpha, power=power)


def bh_adjust(p_values: Sequence[float | None]) -> list[float | None]:
    """Benjamini-Hochberg q-values for the p-values given (None stays None)."""
    idx = [i for i, p in enumerate(p_values) if p is not None and math.isfinite(p)]
    out: list[float | None] = [None] * len(p_values)
    if idx:
        q = false_discovery_control([float(p_values[i]) for i in idx], method="bh")  # type: ignore[arg-type]
        for i, v in zip(idx, np.atleast_1d(q)):
            out[i] = float(v)
    return out
