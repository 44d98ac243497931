"""The one verdict rule for fio cells: every front end (the suite's matrix, a nightly run,
`kharness results compare`, a bisect or `kharness check` step) decides through this module, so
the same records give the same verdicts wherever they are read.

* :data:`METRICS` (from :mod:`.metrics`): what is compared, with its unit and which way is better. The *gating* metrics
  (IOPS, p99 latency) decide a verdict; the others only explain one (asked for by name).
* :func:`compare_cell`: one cell's comparisons, one per metric both sides measured
  (:func:`harness.results.stats.compare`: at least the minimum effect, Welch's t on the logs,
  beyond either side's interquartile range).
* :func:`adjust_cells`: Benjamini-Hochberg across every comparison decided together (the
  gating metrics' comparisons form one family, the explaining metrics' another, so asking for
  more explanation never moves a verdict).
* :func:`decide_cells`: the entry point: per-cell values in, adjusted comparisons out; the
  timed metrics first normalised by the host's load where that explains them
  (:mod:`.calibration`).
* :func:`cell_settled`: when adaptive repeats stop measuring a cell.
* :func:`paired_rule`: a kernel measured alternately with its reference (`kharness check`, a
  bisect's endpoints); :func:`levels`: the two levels a performance bisect tells apart (its
  rounds are judged by :mod:`harness.drivers.bayes_perf`).
* :func:`night_vs_baseline`, :func:`night_vs_history`: a night's decisions.

``docs/statistics.md`` describes the rule and its measured false alarms.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from scipy.stats import t as student_t

from ..errors import HarnessError
from .calibration import COVARIATE, FLOOR, TIMED, Fit, calibrate
from .history import Decision, PastNight, vs_history
from .metrics import GATING, METRICS, Metric, MetricError, gates, metric, selected  # noqa: F401  (part of this module's face)
from .stats import Comparison, adjust, compare

K = TypeVar("K", bound=Hashable)
FLAGS = ("regression", "improvement")


@dataclass(frozen=True)
class CellValues:
    """One cell's per-run values on both sides, by metric key (base: the reference kernel), and
    for the timed metrics how much of the host each of those runs had (``*_host_free``, the
    calibration of :mod:`.calibration`), aligned with the values; absent when the runs did not
    record it."""

    base: Mapping[str, Sequence[float]]
    new: Mapping[str, Sequence[float]]
    base_host_free: Mapping[str, Sequence[float]] = dataclasses.field(default_factory=dict)
    new_host_free: Mapping[str, Sequence[float]] = dataclasses.field(default_factory=dict)


def _number(v: object) -> float | None:
    """A finite number as a float, else None."""
    return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None


def measured(measurements: Iterable[object], metrics: Sequence[Metric] = METRICS,
             boots: Sequence[Hashable] | None = None) -> dict[str, list[float]]:
    """Metric key -> the finite values of measurements with status ``ok`` (records of
    :class:`harness.run.records.MeasurementRecord` or the store's measurement rows), one a boot
    (:func:`measured_with_calibration`)."""
    return measured_with_calibration(measurements, metrics, boots)[0]


def _boot_keys(ms: Sequence[object], boots: Sequence[Hashable] | None) -> list[Hashable]:
    """Each measurement's boot: ``boots`` when given (aligned), else the store row's ``run_id``
    when every measurement has one, else its own position (each run a boot of its own)."""
    if boots is not None:
        return list(boots)
    ids = [getattr(m, "run_id", None) for m in ms]
    return ids if all(i is not None for i in ids) else list(range(len(ms)))


def _mean(vs: Sequence[float]) -> float:
    """A boot's runs as one value: the geometric mean (the rule compares logs), the arithmetic
    mean where a value is not positive (a count of 0)."""
    if len(vs) == 1:
        return vs[0]
    return math.exp(statistics.fmean(math.log(v) for v in vs)) if min(vs) > 0 else statistics.fmean(vs)


def _ok_with_boots(measurements: Iterable[object], boots: Sequence[Hashable] | None
                   ) -> list[tuple[Hashable, object]]:
    """The ``ok`` measurements, each with its boot (:func:`_boot_keys`)."""
    all_ms = list(measurements)
    keys = _boot_keys(all_ms, boots)
    if len(keys) != len(all_ms):
        raise HarnessError(f"{len(all_ms)} measurements but {len(keys)} boots named for them")
    return [(k, m) for k, m in zip(keys, all_ms) if getattr(m, "status", None) == "ok"]


def _runs_by_boot(pairs: Sequence[tuple[Hashable, object]], key: str) -> list[list[tuple[float, float | None]]]:
    """One metric's finite values grouped by boot, in first-seen order, each with its
    calibration (None where the run had none)."""
    groups: dict[Hashable, list[tuple[float, float | None]]] = {}
    for k, m in pairs:
        if (v := _number(getattr(m, key, None))) is not None:
            groups.setdefault(k, []).append((v, _number(getattr(m, COVARIATE, None))))
    return list(groups.values())


def measured_with_calibration(measurements: Iterable[object], metrics: Sequence[Metric] = METRICS,
                              boots: Sequence[Hashable] | None = None
                              ) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """:func:`measured`, and for each timed metric whose every value has a calibration
    (:data:`harness.results.calibration.COVARIATE`) the calibrations in the same order. A boot
    that measured a cell more than once gives one value, the mean of its runs (and of their
    calibrations): the runs share the boot's effect, so the boot is the unit of the comparison
    (:mod:`.noise`). ``boots`` names each measurement's boot, aligned with ``measurements``
    (default: the store's ``run_id``; records without one are a boot each)."""
    pairs = _ok_with_boots(measurements, boots)
    out: dict[str, list[float]] = {}
    calib: dict[str, list[float]] = {}
    for mt in metrics:
        groups = _runs_by_boot(pairs, mt.key)
        if not groups:
            continue
        out[mt.key] = [_mean([v for v, _ in runs]) for runs in groups]
        cs = [[max(FLOOR, c) for _, c in runs if c is not None] for runs in groups]
        if mt.key in TIMED and all(len(c) == len(runs) for c, runs in zip(cs, groups)):
            calib[mt.key] = [statistics.fmean(c) for c in cs]
    return out, calib


def by_boot(measurements: Iterable[object], key: str, boots: Sequence[Hashable] | None = None) -> list[list[float]]:
    """One metric's finite values of the ``ok`` measurements grouped by boot (see
    :func:`measured_with_calibration` for ``boots``), for :func:`harness.results.noise.components`."""
    return [[v for v, _ in runs] for runs in _runs_by_boot(_ok_with_boots(measurements, boots), key)]


def cell_values(base: Iterable[object], new: Iterable[object], metrics: Sequence[Metric] = METRICS, *,
                base_boots: Sequence[Hashable] | None = None, new_boots: Sequence[Hashable] | None = None
                ) -> CellValues:
    """A cell's values from the measurements of each side, one a boot (see :func:`measured`),
    with their calibrations."""
    (b, bc), (n, nc) = (measured_with_calibration(base, metrics, base_boots),
                        measured_with_calibration(new, metrics, new_boots))
    return CellValues(b, n, bc, nc)


def compare_cell(values: CellValues, metrics: Sequence[Metric] = GATING, *, min_effect_pct: float = 5.0,
                 alpha: float = 0.05) -> list[Comparison]:
    """One cell's unadjusted comparisons, one per metric of ``metrics`` that both sides measured
    (each labelled with the metric's label). The values are sorted first: the order in which a
    front end read its records cannot change a single bit of the result."""
    out = []
    for m in metrics:
        b, n = values.base.get(m.key), values.new.get(m.key)
        if b and n:
            out.append(compare(sorted(b), sorted(n), metric=m.label, higher_is_better=m.higher_is_better,
                               min_effect_pct=min_effect_pct, alpha=alpha))
    return out


def adjust_cells(per_cell: Mapping[K, list[Comparison]]) -> dict[K, list[Comparison]]:
    """Every cell's comparisons decided together: Benjamini-Hochberg q-values across all the
    gating comparisons at once, and across the explaining ones apart from them. Cells and the
    order of their comparisons are kept."""
    flat = [(k, i, c) for k, comps in per_cell.items() for i, c in enumerate(comps)]
    decided: dict[tuple, Comparison] = {}
    for family in (True, False):
        members = [(k, i, c) for k, i, c in flat if gates(c.metric) == family]
        for (k, i, _), c in zip(members, adjust([c for _, _, c in members])):
            decided[(k, i)] = c
    out: dict[K, list[Comparison]] = {k: [] for k in per_cell}
    for k, i, _ in flat:
        out[k].append(decided[(k, i)])
    return out


def calibrated(per_cell_values: Mapping[K, CellValues], metrics: Sequence[Metric]
               ) -> tuple[dict[K, CellValues], dict[str, tuple[Fit, Fit]]]:
    """The cells' values with each timed metric normalised by the host's load where the
    calibration explains it (:func:`harness.results.calibration.calibrate`), and the fits."""
    if not any(v.base_host_free or v.new_host_free for v in per_cell_values.values()):
        return dict(per_cell_values), {}

    def points(vals: Sequence[float], free: Sequence[float] | None) -> list:
        return list(zip(vals, free)) if free is not None and len(free) == len(vals) else list(vals)

    timed = {m.key: m.higher_is_better for m in metrics if m.key in TIMED}
    raw = {k: ({key: points(vs, v.base_host_free.get(key)) for key, vs in v.base.items() if key in timed},
               {key: points(vs, v.new_host_free.get(key)) for key, vs in v.new.items() if key in timed})
           for k, v in per_cell_values.items()}
    norm, fits = calibrate(raw, timed)
    out = {k: CellValues({**v.base, **norm[k][0]}, {**v.new, **norm[k][1]}) for k, v in per_cell_values.items()}
    return out, fits


def decide_cells(per_cell_values: Mapping[K, CellValues], metrics: Iterable[str] = (), *,
                 min_effect_pct: float = 5.0, alpha: float = 0.05, calibrate: bool = True) -> dict[K, list[Comparison]]:
    """The verdicts of cells decided together: every gating metric, plus the explaining metrics
    ``metrics`` names, compared per cell (:func:`compare_cell`) after the timed metrics are
    normalised by the host's load where that explains them (:func:`calibrated`; each
    comparison carries its metric's fit, ``calibrate=False`` compares the raw values), and
    adjusted across all cells (:func:`adjust_cells`). A cell whose sides share no metric maps
    to an empty list."""
    chosen = selected(metrics)
    values, fits = calibrated(per_cell_values, chosen) if calibrate else (dict(per_cell_values), {})
    by_label = {metric(key).label: f for key, f in fits.items()}
    return adjust_cells({k: [dataclasses.replace(c, calibration=by_label.get(c.metric))
                             for c in compare_cell(v, chosen, min_effect_pct=min_effect_pct, alpha=alpha)]
                         for k, v in values.items()})


def cell_settled(comparisons: Sequence[Comparison]) -> bool:
    """A cell's verdict is settled once a metric's change is (a regression or improvement at
    q < SETTLE_ALPHA), or every metric is settled (``Comparison.settled``)."""
    if not comparisons:
        return False
    if any(c.settled and c.verdict in FLAGS for c in comparisons):
        return True
    return all(c.settled for c in comparisons)


# -- a kernel against its reference in alternating boots (a check, a bisect's endpoints) --------------
@dataclass(frozen=True)
class PairedStep:
    """A kernel against a reference measured in alternating boots: ``ratios`` are the per-round
    ratios of the kernel's median to the reference's median (one pair of adjacent boots each),
    ``pct`` their geometric mean as a change, ``p`` the paired t-test on their logarithms."""

    outcome: str            # bad | good | open
    pct: float
    p_value: float | None
    ratios: tuple[float, ...]
    min_effect_pct: float

    @property
    def line(self) -> str:
        p = "n/a" if self.p_value is None else f"{self.p_value:.2g}"
        return (f"{self.pct:+.0f}% against the reference in {len(self.ratios)} alternating pairs of boots "
                f"(ratios {', '.join(f'{r:.2f}' for r in self.ratios)}; paired p={p}) -> {self.outcome}")


def round_logs(rounds: Sequence[tuple[Sequence[float], Sequence[float]]]) -> list[float]:
    """Each round's log ratio of the kernel's median to the reference's (rounds with a side
    unmeasured or not positive are left out)."""
    return [math.log(statistics.median(new) / statistics.median(ref)) for ref, new in rounds
            if ref and new and statistics.median(ref) > 0 and statistics.median(new) > 0]


def _paired_p(logs: Sequence[float]) -> float | None:
    """The paired t-test's two-sided p on log ratios (None below two rounds)."""
    if len(logs) < 2:
        return None
    mean, sd = statistics.fmean(logs), statistics.stdev(logs)
    if sd == 0:
        return 0.0 if mean != 0 else 1.0
    return float(2 * student_t.sf(abs(mean / (sd / math.sqrt(len(logs)))), len(logs) - 1))


def paired_rule(rounds: Sequence[tuple[Sequence[float], Sequence[float]]], *, min_effect_pct: float,
                alpha: float = 0.05, key: str = "iops") -> PairedStep:
    """The rule for a kernel measured alternately with its reference (a bisect's confirmation:
    the culprit against its parent), each round one boot of each, adjacent in time. A host
    whose speed swings from minute to minute moves both boots of a round together, so the
    round's ratio cancels it (the duet design of Bulej et al., 2020) where an unpaired
    comparison of the two sides would not. Bad: the geometric-mean change is a regression of at
    least ``min_effect_pct`` and the paired t-test on the log ratios gives p < alpha; good: the
    change is smaller than the minimum effect, or an improvement; open otherwise (a change that
    large but not yet certain: measure another round). Needs two rounds or more. ``key`` names
    the metric: for one where lower is better (journal commits per 1000 writes) a regression is
    a rise, judged on the inverse ratio."""
    worse = -1.0 if metric(key).higher_is_better else 1.0   # sign of a log ratio that is worse
    logs = round_logs(rounds)
    ratios = tuple(math.exp(x) for x in logs)
    p = _paired_p(logs)
    if p is None:
        return PairedStep("open", (ratios[0] - 1) * 100 if ratios else 0.0, None, ratios, min_effect_pct)
    mean = statistics.fmean(logs)
    pct = (math.exp(mean) - 1) * 100
    loss_pct = (1 - math.exp(-worse * mean)) * 100    # the change as a loss on the ratio scale
    outcome = "good" if loss_pct < min_effect_pct else "bad" if p < alpha else "open"
    return PairedStep(outcome, pct, p, ratios, min_effect_pct)


# -- a bisect step between two known levels -----------------------------------------------------------
ROUND_SD_PRIOR = 0.25     # one round's log-ratio noise before the endpoints speak (docs/statistics.md)
ROUND_SD_PRIOR_ROUNDS = 4  # ... worth this many rounds when pooled with theirs
TAIL_DF = 4               # Student-t tails of a round's log ratio: a host that jumps between its two boots


@dataclass(frozen=True)
class Levels:
    """The two levels a bisect tells apart, from its endpoints measured in alternating rounds:
    ``gap`` the mean log ratio bad/good, ``sd`` the noise of one round's log ratio (the rounds'
    spread pooled with :data:`ROUND_SD_PRIOR` worth :data:`ROUND_SD_PRIOR_ROUNDS` rounds, so two
    lucky rounds cannot make it small), ``rounds`` how many rounds they come from."""

    gap: float
    sd: float
    rounds: int

    @property
    def pct(self) -> float:
        return (math.exp(self.gap) - 1) * 100


def levels(rounds: Sequence[tuple[Sequence[float], Sequence[float]]]) -> Levels:
    """The endpoints' :class:`Levels` from their rounds (good, bad), adjacent boots each."""
    logs = round_logs(rounds)
    if not logs:
        raise HarnessError("the endpoints have no round with both sides measured")
    gap = statistics.fmean(logs)
    ss = sum((x - gap) ** 2 for x in logs)
    sd = math.sqrt((ROUND_SD_PRIOR_ROUNDS * ROUND_SD_PRIOR ** 2 + ss) / (ROUND_SD_PRIOR_ROUNDS + len(logs) - 1))
    return Levels(gap, sd, len(logs))


# -- a night's decisions -----------------------------------------------------------------------------
def as_decision(c: Comparison | None, *, n_then: int = 0, n_now: int = 0) -> Decision:
    """A same-night comparison as a nightly :class:`Decision` (``inconclusive`` when a side has
    no measurements)."""
    if c is None:
        return Decision("baseline", "inconclusive", n_then=n_then, n_now=n_now, detail="no measurements")
    return Decision("baseline", c.verdict, c.base.median, c.new.median, c.pct_change, c.p_value, c.base.n, c.new.n,
                    reference="baseline", q_value=c.q_value,
                    detail="calibrated by the host's load" if c.calibrated else "")


def night_vs_baseline(per_cell_values: Mapping[K, CellValues], *, min_effect_pct: float = 5.0,
                      alpha: float = 0.05) -> dict[K, dict[str, Decision]]:
    """Every same-night comparison of a night (each tested kernel's cells against the baseline
    and the control cells), decided together like the suite's matrix: key -> metric key ->
    decision, for every gating metric."""
    decided = decide_cells(per_cell_values, min_effect_pct=min_effect_pct, alpha=alpha)
    out: dict[K, dict[str, Decision]] = {}
    for k, v in per_cell_values.items():
        by_label = {c.metric: c for c in decided[k]}
        out[k] = {m.key: as_decision(by_label.get(m.label), n_then=len(v.base.get(m.key, ())),
                                     n_now=len(v.new.get(m.key, ()))) for m in GATING}
    return out


def night_vs_history(history: Sequence[PastNight], tonight: Sequence[float], m: Metric, *, min_nights: int = 5,
                     window: int = 3, alpha: float = 0.05, min_effect_pct: float = 5.0) -> Decision:
    """Tonight's values of one kernel, cell and metric against that series' earlier nights
    (:func:`harness.results.history.vs_history`: the last good night, then change points)."""
    return vs_history(history, tonight, higher_is_better=m.higher_is_better, min_nights=min_nights,
                      window=window, alpha=alpha, min_effect_pct=min_effect_pct, metric=m.label)
