"""Calibrated boots: runs normalised by how much of the host their guest had, when that explains
them.

Under TCG a whole boot can run at half speed when the host is busy with other work
(docs/statistics.md, "Calibrated boots"): every emulated CPU and every handoff between QEMU's
threads waits for the host's CPU. Each fio run records the share of the host's CPU time that
other processes left to its QEMU while it ran (``host_free``, :mod:`harness.vm.hostload`: 1.0 on
a quiet host, 0.5 while other work takes half of it); that is the run's *calibration*. (A
calibration job in the guest, one second of buffered writes into tmpfs before the measured job,
``FioJob.calibrate``, was measured too: it moved 3-25% where the cells moved 50%, so the
verdicts do not use it.)

The fit, per metric and per side (the reference kernel's runs, the new kernel's runs), over
every cell decided together: the log of the metric against the log of the calibration, each
centred on its cell's mean, one slope for the side (an analysis of covariance within the side).
A side of its own because the kernels can depend on the host differently: the shipped dio-sync
patch makes ext4's conversions wait on journal commits in turn, which the host's flush latency
paces as much as its CPU. A side's calibration is used only when it explains the metric:

* every measurement of the family has a calibration, and the side has at least ``MIN_POINTS`` of
  them with ``MIN_DF`` residual degrees of freedom (and the calibration varies: on a quiet host
  it is 1.0 everywhere and there is nothing to correct);
* the slope has the direction of speed (a freer host: more IOPS, lower latency), is at most
  ``MAX_SLOPE`` in size, and is significant at p < ``FIT_ALPHA``;
* it explains at least ``MIN_R2`` of the side's variance within its cells.

Then each of the side's values ``v`` becomes ``v * (c_ref / c) ** b``, ``c_ref`` the median
calibration of all the family's runs, both sides: a run measured while the host was half taken
counts as if measured as the runs usually were (the median, so one slow boot does not move the
reference; common to both sides, so a side that happened to meet a busier host is brought to the
same conditions as the other). The kernel under test cannot change its calibration: only other
processes' CPU time counts, never its own QEMU's. The
comparison rule itself (:func:`harness.results.stats.compare`) is unchanged; it sees the
normalised values (the slope's degree of freedom is not charged to the cells;
``benchmarks/calibration.py`` measures what the rule then does on real boots).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from scipy.stats import t as student_t

FIT_ALPHA = 0.05
MIN_R2 = 0.5
MIN_POINTS = 6
MIN_DF = 3
MAX_SLOPE = 2.5
SIDES = ("base", "new")
COVARIATE = "host_free"     # the measurement field that is each run's calibration
FLOOR = 0.05                # a calibration below this counts as this (a host taken wholly)
# fio numbers that follow the host's load; counted metrics (per 1000 writes) do not
TIMED = ("iops", "bw_kib_s", "clat_p50_us", "clat_p99_us", "clat_p999_us")

K = TypeVar("K", bound=Hashable)
Point = tuple[float, float]     # (value, calibration)
Side = Mapping[str, Sequence[Point | float]]


@dataclass(frozen=True)
class Fit:
    """How one metric of one side (``base`` or ``new``) follows the host's load: ``slope``
    on the log scale, ``r2`` of the within-cell variance it explains, its ``p``, ``n`` runs in
    ``cells`` cells; ``applied``: the side's values were normalised; ``why``: the reason."""

    metric: str
    side: str
    slope: float
    r2: float
    p_value: float
    n: int
    cells: int
    applied: bool
    why: str

    @property
    def line(self) -> str:
        """One line for a report."""
        used = "normalised" if self.applied else f"not used: {self.why}"
        return (f"calibration of {self.metric}, {self.side} side: slope {self.slope:.2f}, explains "
                f"{self.r2:.0%} of the within-cell variance (p={self.p_value:.2g}, {self.n} runs) -> {used}")


def fit(metric_key: str, side: str, groups: Sequence[Sequence[Point]], *, higher_is_better: bool) -> Fit:
    """The pooled within-cell fit of log value on log calibration of one side (module docstring)."""
    usable = [[(math.log(v), math.log(c)) for v, c in g] for g in groups if len(g) >= 2]
    xs: list[float] = []
    ys: list[float] = []
    for g in usable:
        my, mx = sum(y for y, _ in g) / len(g), sum(x for _, x in g) / len(g)
        ys += [y - my for y, _ in g]
        xs += [x - mx for _, x in g]
    n, k = len(xs), len(usable)
    sxx, syy = sum(x * x for x in xs), sum(y * y for y in ys)
    df = n - k - 1
    if n < MIN_POINTS or df < MIN_DF:
        return Fit(metric_key, side, 0.0, 0.0, 1.0, n, k, False, f"too few runs to fit ({n} in {k} cells)")
    if sxx == 0 or syy == 0:
        what = "the host's load" if sxx == 0 else "the metric"
        return Fit(metric_key, side, 0.0, 0.0, 1.0, n, k, False, f"{what} did not vary within the cells")
    slope = sum(x * y for x, y in zip(xs, ys)) / sxx
    rss = max(0.0, syy - slope * slope * sxx)
    r2 = 1 - rss / syy
    se = math.sqrt(rss / df / sxx)
    p = 0.0 if se == 0 else float(2 * student_t.sf(abs(slope / se), df))
    if (slope > 0) != higher_is_better or abs(slope) > MAX_SLOPE:
        return Fit(metric_key, side, slope, r2, p, n, k, False, "it does not follow the host's load")
    if p >= FIT_ALPHA or r2 < MIN_R2:
        return Fit(metric_key, side, slope, r2, p, n, k, False, "the host's load explains too little")
    return Fit(metric_key, side, slope, r2, p, n, k, True, "the host's load explains it")


def normalise(points: Sequence[Point], slope: float, c_ref: float) -> list[float]:
    """Each value as if measured at the calibration ``c_ref``."""
    return [v * (c_ref / c) ** slope for v, c in points]


def _median(xs: Sequence[float]) -> float:
    s = sorted(xs)
    return (s[len(s) // 2] + s[(len(s) - 1) // 2]) / 2 if s else 0.0


def _family(per_cell: Mapping[K, tuple[Side, Side]], key: str, higher_is_better: bool
            ) -> tuple[tuple[Fit, Fit] | None, float]:
    """Both sides' fits of one metric (None when no run of it has a calibration) and the
    reference calibration (the median of all its runs')."""
    sides: list[list[Sequence[Point | float]]] = [[vals for vals in (pair[i].get(key) for pair in per_cell.values())
                                                   if vals] for i in (0, 1)]
    every = [v for side in sides for g in side for v in g]
    pts = [v for v in every if isinstance(v, tuple)]
    if not pts:
        return None, 0.0
    c_ref = _median([c for _, c in pts])
    if len(pts) < len(every):
        why = f"{len(every) - len(pts)} of {len(every)} runs have no calibration"
        base, new = (Fit(key, s, 0.0, 0.0, 1.0, 0, 0, False, why) for s in SIDES)
        return (base, new), c_ref
    fits = [fit(key, s, [[v for v in g if isinstance(v, tuple)] for g in side], higher_is_better=higher_is_better)
            for s, side in zip(SIDES, sides)]
    return (fits[0], fits[1]), c_ref


def calibrate(per_cell: Mapping[K, tuple[Side, Side]], metrics: Mapping[str, bool]
              ) -> tuple[dict[K, tuple[dict[str, list[float]], dict[str, list[float]]]], dict[str, tuple[Fit, Fit]]]:
    """Every cell's (base, new) values by metric key, each value a (value, calibration) point or
    a bare value (no calibration), normalised where a side's fit says so; ``metrics`` maps the
    keys to fit (the timed ones) to whether higher is better. Returns the values, bare, and
    each fitted metric's (base, new) fits."""
    fits: dict[str, tuple[Fit, Fit]] = {}
    refs: dict[str, float] = {}
    for key, hib in metrics.items():
        pair, c_ref = _family(per_cell, key, hib)
        if pair is not None:
            fits[key], refs[key] = pair, c_ref
    out: dict[K, tuple[dict[str, list[float]], dict[str, list[float]]]] = {}
    for cell, sides in per_cell.items():
        new_sides: list[dict[str, list[float]]] = []
        for i, side in enumerate(sides):
            d: dict[str, list[float]] = {}
            for key, vals in side.items():
                f = fits[key][i] if key in fits else None
                if f is not None and f.applied:
                    d[key] = normalise([v for v in vals if isinstance(v, tuple)], f.slope, refs[key])
                else:
                    d[key] = [v[0] if isinstance(v, tuple) else float(v) for v in vals]
            new_sides.append(d)
        out[cell] = (new_sides[0], new_sides[1])
    return out, fits
