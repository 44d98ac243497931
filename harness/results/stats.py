"""Summaries of repeated measurements and a noise-aware base-versus-new comparison.

The decision rule of :func:`compare` (each side is one value per run, e.g. the IOPS of each boot):

1. Fewer than ``MIN_RUNS`` (3) runs on either side: ``inconclusive``, whatever the numbers; the
   noise cannot be estimated from 1-2 runs (the numbers are still reported).
2. ``|pct_change| < min_effect_pct`` (change of medians): ``no change``.
3. Otherwise the change is flagged (``regression``/``improvement`` by direction and
   ``higher_is_better``) only if it also stands out from the noise, both
   a. *evidence*: Welch's t-test on the logarithms of the values, two-sided ``p < alpha``
      (performance numbers are ratios: a log-normal model, unequal variances). At 3 runs a side
      it still separates a -70% change from 5-20% noise (p ~ 1e-4), where the smallest exact
      Mann-Whitney p is 0.1, AND
   b. *size beyond the spread*: ``|median(new) - median(base)|`` exceeds the larger of the two
      sides' interquartile ranges (robust like the median; a shift smaller than the typical
      run-to-run spread is not trusted even when the means differ);
   else ``inconclusive`` (a large but noisy change: rerun with more runs).

Every comparison also carries the Hodges-Lehmann change with its exact, distribution-free
confidence interval and the minimum detectable effect of its runs (``effects``). Over everything
decided together, :func:`adjust` replaces each p-value in rule 3a by its Benjamini-Hochberg
q-value; :mod:`harness.results.verdict` says what is decided together, and front ends call it.

Adaptive repeats (``Comparison.settled``) stop measuring a flagged cell only at ``q <
SETTLE_ALPHA`` (0.01): a flag between 0.01 and alpha is looked at again with more runs, which keeps
the false alarms of the repeated looks near alpha over the whole matrix
(``benchmarks/decision_rule.py`` simulates the matrix in A/A, settling at 0.01 and at alpha itself;
its figures are in docs/benchmarks.md, "How sure the rule is", and docs/statistics.md).

Earlier versions used Mann-Whitney U and let non-overlapping ranges at 3 runs a side flag a
change on their own (docs/statistics.md: why not).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import ttest_ind

from ..errors import HarnessError
from .calibration import Fit
from .effects import Shift, bh_adjust, mde_pct, shift

MIN_RUNS = 3
SETTLE_ALPHA = 0.01   # a flag ends a cell's adaptive repeats only below this q (module docstring)
VERDICTS = ("regression", "improvement", "no change", "inconclusive")


@dataclass(frozen=True)
class Summary:
    """Descriptive statistics of one side; ``stdev`` is the sample one (0 for n=1), ``cv`` = stdev/mean."""

    n: int
    median: float
    mean: float
    stdev: float
    min: float
    max: float
    cv: float
    iqr: float


@dataclass(frozen=True)
class Comparison:
    """A metric compared between base and new runs; ``pct_change`` is of the medians, new vs base."""

    metric: str
    base: Summary
    new: Summary
    pct_change: float
    p_value: float | None
    ranges_overlap: bool
    significant: bool
    verdict: str
    higher_is_better: bool
    shift: Shift | None = None        # Hodges-Lehmann change, exact interval
    mde_pct: float | None = None      # smallest change these runs can detect (80% power)
    q_value: float | None = None      # Benjamini-Hochberg, when adjusted over a matrix (adjust)
    min_effect_pct: float = 5.0
    alpha: float = 0.05
    # how each side's values followed the host's load (harness.results.calibration: the base
    # side's fit, the new side's), None when the runs had no calibration
    calibration: tuple[Fit, Fit] | None = None

    @property
    def calibrated(self) -> bool:
        """Whether a side's values were normalised by the host's load before comparing."""
        return self.calibration is not None and any(f.applied for f in self.calibration)

    @property
    def settled(self) -> bool:
        """Whether more runs could not change the answer much: a change flagged at q (or p) below
        ``SETTLE_ALPHA``, or no change whose interval excludes changes larger than twice the
        minimum effect. Otherwise the cell is still open (adaptive repeats measure it again)."""
        if self.verdict in ("regression", "improvement"):
            evidence = self.q_value if self.q_value is not None else self.p_value
            return evidence is not None and evidence < SETTLE_ALPHA
        return (self.verdict == "no change" and self.shift is not None
                and self.shift.bound() <= 2 * self.min_effect_pct)


def summarize(values: Sequence[float]) -> Summary:
    """Summary of a non-empty list of finite numbers; HarnessError otherwise."""
    data = np.asarray([float(v) for v in values], dtype=float)
    if data.size == 0:
        raise HarnessError("cannot summarize an empty list of measurements")
    if not np.all(np.isfinite(data)):
        raise HarnessError(f"non-finite measurement in {list(values)!r}")
    mean = float(data.mean())
    stdev = float(data.std(ddof=1)) if data.size > 1 else 0.0
    cv = stdev / abs(mean) if mean else (0.0 if stdev == 0 else math.inf)
    q1, q3 = np.percentile(data, [25, 75])
    return Summary(n=int(data.size), median=float(np.median(data)), mean=mean, stdev=stdev,
                   min=float(data.min()), max=float(data.max()), cv=cv, iqr=float(q3 - q1))


def percent_change(base: float, new: float) -> float:
    """(new - base) / |base| in percent; +-inf when base is 0 and new is not, 0 when both are."""
    if base == 0:
        return 0.0 if new == 0 else math.copysign(math.inf, new)
    return (new - base) / abs(base) * 100.0


def welch_log_p(base: Sequence[float], new: Sequence[float]) -> float | None:
    """Two-sided Welch t-test p of log(new) against log(base) (raw values if any is <= 0); None if
    a side has < 2 runs. Both sides constant: 1.0 if equal, else 0.0."""
    if len(base) < 2 or len(new) < 2:
        return None
    b, n = np.asarray(base, float), np.asarray(new, float)
    if min(b.min(), n.min()) > 0:
        b, n = np.log(b), np.log(n)
    if b.std() == 0 and n.std() == 0:
        return 1.0 if b.mean() == n.mean() else 0.0
    with warnings.catch_warnings():
        # one constant side (fio's p99 falls in the same histogram bucket every run) has an exact
        # variance of 0, which scipy reports as "precision loss"; Welch's p is still right
        warnings.filterwarnings("ignore", "Precision loss occurred", RuntimeWarning)
        return float(ttest_ind(n, b, equal_var=False).pvalue)


def _verdict(b: Summary, n: Summary, pct: float, p: float | None, *,
             higher_is_better: bool, min_effect_pct: float, alpha: float) -> str:
    if b.n < MIN_RUNS or n.n < MIN_RUNS:
        return "inconclusive"
    if abs(pct) < min_effect_pct:
        return "no change"
    evidence = p is not None and p < alpha
    beyond_spread = abs(n.median - b.median) > max(b.iqr, n.iqr)
    if evidence and beyond_spread:
        better = (n.median > b.median) == higher_is_better
        return "improvement" if better else "regression"
    return "inconclusive"


def compare(base: list[float], new: list[float], *, metric: str, higher_is_better: bool,
            min_effect_pct: float = 5.0, alpha: float = 0.05) -> Comparison:
    """Compare new runs against base runs of one metric; see the module docstring for the rule."""
    b, n = summarize(base), summarize(new)
    pct = percent_change(b.median, n.median)
    p = welch_log_p(base, new)
    overlap = not (n.max < b.min or n.min > b.max)
    verdict = _verdict(b, n, pct, p, higher_is_better=higher_is_better,
                       min_effect_pct=min_effect_pct, alpha=alpha)
    return Comparison(metric=metric, base=b, new=n, pct_change=pct, p_value=p,
                      ranges_overlap=overlap, significant=verdict in ("regression", "improvement"),
                      verdict=verdict, higher_is_better=higher_is_better,
                      shift=shift(base, new), mde_pct=mde_pct(base, new),
                      min_effect_pct=min_effect_pct, alpha=alpha)


def adjust(comparisons: list[Comparison]) -> list[Comparison]:
    """The same comparisons decided with Benjamini-Hochberg q-values across all of them."""
    qs = bh_adjust([c.p_value for c in comparisons])
    out = []
    for c, q in zip(comparisons, qs):
        v = _verdict(c.base, c.new, c.pct_change, q, higher_is_better=c.higher_is_better,
                     min_effect_pct=c.min_effect_pct, alpha=c.alpha)
        out.append(dataclasses.replace(c, q_value=q, verdict=v, significant=v in ("regression", "improvement")))
    return out


def _num(x: float) -> str:
    if not math.isfinite(x):
        return str(x)
    return f"{x:.0f}" if abs(x) >= 100 else f"{x:.3g}"


def _pct(x: float) -> str:
    if not math.isfinite(x):
        return "n/a"
    return f"{x:+.0f}%" if abs(x) >= 10 else f"{x:+.1f}%"


def format_comparison(label: str, c: Comparison) -> str:
    """One line, new vs base, e.g. ``ext4/nvme randwrite-overwrite libaio: IOPS -94% (498 vs 8979
    median, 5 runs each, p=0.008) regression``."""
    runs = f"{c.new.n} runs each" if c.new.n == c.base.n else f"{c.new.n} vs {c.base.n} runs"
    if c.p_value is None:
        p = "p=n/a"
    elif c.p_value < 0.001:
        p = "p<0.001"
    else:
        p = f"p={c.p_value:.3f}" if c.p_value < 0.1 else f"p={c.p_value:.2f}"
    if c.q_value is not None:
        p += f", q={c.q_value:.3f}" if c.q_value >= 0.001 else ", q<0.001"
    if c.shift is not None:
        p += f"; HL {_pct(c.shift.pct)}, {c.shift.confidence:.0%} CI {_pct(c.shift.low)}..{_pct(c.shift.high)}"
    if c.mde_pct is not None:
        p += f"; MDE {_bound(c.mde_pct)}"
    if c.calibrated:
        p += "; calibrated"
    verdict = c.verdict
    if c.verdict == "no change" and c.shift is not None:
        verdict += f" larger than {_bound(c.shift.bound())}"
    return (f"{label}: {c.metric} {_pct(c.pct_change)} ({_num(c.new.median)} vs {_num(c.base.median)} "
            f"median, {runs}, {p}) {verdict}")


def _bound(x: float) -> str:
    return f"{math.ceil(x)}%" if math.isfinite(x) else "n/a"
