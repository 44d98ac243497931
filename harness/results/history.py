"""Decisions over nightly history: fio cells against the baseline and against earlier nights, and
xfstests results against the last good night and the baseline.

fio, per cell and metric (one value per boot, several boots a night):

* **against the baseline measured the same night**: the suite's rule, decided together with the
  night's other same-night comparisons (:func:`harness.results.verdict.night_vs_baseline`).
* **against history**, the same kernel reference and cell on earlier nights of the plan:

  - fewer than ``min_nights`` earlier nights: tonight's runs against the last good night's runs,
    again with :func:`stats.compare` (5% minimum effect, Welch's t on logs, beyond the
    spread);
  - with ``min_nights`` or more: change-point detection. PELT (``ruptures``, l2 cost, penalty
    ``PENALTY * sigma^2 * log(n)`` with sigma the night-to-night noise estimated robustly from the
    series itself) segments the series of nightly medians; the segment the newest nights belong
    to starts at the last change point older than ``window`` nights (an older change is the new
    normal). Each split of the last ``window`` nights is then tested: every run after the split
    against every run of that segment before it, one-sided Mann-Whitney, Bonferroni over the
    splits tried (``alpha / window``), and at least ``min_effect_pct`` between the medians; tonight
    must still be on the changed side. ``benchmarks/history_detector.py`` measures recall, false
    alarms and nights-to-flag on synthetic series with this machine's noise (the figures:
    docs/benchmarks.md, "Nightly history detector").

xfstests, per test: every failing test is retried; all attempts failing is ``fail``, some is
``flaky n/m``. A **new failure** fails every attempt tonight and passed on the last good night or
on the baseline tonight.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.stats import mannwhitneyu

from .stats import compare, percent_change

PENALTY = 8.0          # PELT penalty in units of sigma^2 * log(n) (benchmarks/history_detector.py)
SIGMA_FLOOR = 0.01     # relative noise assumed at least 1% (a perfectly flat series is not noise-free)
FLAGS = ("regression", "improvement")


@dataclass(frozen=True)
class PastNight:
    """One earlier night of one cell and metric: its id, the per-boot values, and whether it was good."""

    night: str
    values: tuple[float, ...]
    good: bool = True
    commit: str = ""


@dataclass(frozen=True)
class Decision:
    """A verdict with its numbers: ``then``/``now`` are medians (baseline or earlier, tonight or the
    segment since a change point), ``pct`` the change of ``now`` against ``then``."""

    method: str                 # baseline | last-good | change-point | none
    verdict: str                # regression | improvement | no change | inconclusive | no history
    then: float | None = None
    now: float | None = None
    pct: float | None = None
    p_value: float | None = None
    n_then: int = 0
    n_now: int = 0
    reference: str = ""         # the night (or segment start) compared against
    change_night: str | None = None
    detail: str = ""
    q_value: float | None = None   # Benjamini-Hochberg, for a same-night comparison (verdict.py)

    @property
    def flagged(self) -> bool:
        return self.verdict in FLAGS


def _direction(pct: float, higher_is_better: bool) -> str:
    return "improvement" if (pct > 0) == higher_is_better else "regression"


def noise_sigma(medians: Sequence[float] | np.ndarray) -> float:
    """Night-to-night noise of relative nightly medians: MAD of consecutive differences / sqrt 2
    (a step moves one difference only, so it barely moves this estimate)."""
    x = np.asarray(medians, dtype=float)
    if x.size < 3:
        return SIGMA_FLOOR
    d = np.diff(x)
    mad = 1.4826 * float(np.median(np.abs(d - np.median(d))))
    return max(mad / math.sqrt(2), SIGMA_FLOOR)


def change_points(medians: Sequence[float], penalty: float = PENALTY) -> list[int]:
    """Indices where a new segment starts (0 < i < n), by PELT over the relative series."""
    import ruptures as rpt  # heavy (its own numba-free C core): loaded only when a series is long enough
    x = np.asarray(medians, dtype=float)
    if x.size < 3:
        return []
    scale = float(np.median(np.abs(x))) or 1.0
    rel = x / scale
    sigma = noise_sigma(rel)
    algo = rpt.Pelt(model="l2", min_size=1, jump=1).fit(rel.reshape(-1, 1))
    return [int(b) for b in algo.predict(pen=penalty * sigma * sigma * math.log(x.size))[:-1]]


def _one_sided_p(before: Sequence[float], after: Sequence[float], up: bool) -> float:
    if len(before) < 2 or len(after) < 1:
        return 1.0
    p = float(mannwhitneyu(list(after), list(before), alternative="greater" if up else "less").pvalue)
    return 1.0 if math.isnan(p) else p


def detect_change(nights: Sequence[Sequence[float]], *, higher_is_better: bool, window: int = 3,
                  alpha: float = 0.05, min_effect_pct: float = 5.0, penalty: float = PENALTY,
                  ids: Sequence[str] | None = None) -> Decision:
    """Change-point decision over ``nights`` (oldest first, the last is tonight), each a list of
    per-boot values. See the module docstring."""
    ids = list(ids) if ids is not None else [str(i) for i in range(len(nights))]
    pairs = [(i, list(v)) for i, v in zip(ids, nights) if len(v)]
    ids, nights = [i for i, _ in pairs], [v for _, v in pairs]
    n = len(nights)
    now_vals = nights[-1] if nights else []
    if n < 3:
        return Decision("change-point", "no history", n_now=len(now_vals), detail=f"{n} night(s) with data")
    medians = [float(np.median(v)) for v in nights]
    cps = change_points(medians, penalty)
    # The newest segment of the history proper starts at the last change point before the window.
    old = [c for c in cps if c < n - window]
    prev = old[-1] if old else 0
    best: tuple[float, int, float, float, float] | None = None
    tried = 0
    for c in range(max(prev + 2, n - window), n):
        before = [x for v in nights[prev:c] for x in v]
        after = [x for v in nights[c:] for x in v]
        then, now = float(np.median(before)), float(np.median(after))
        pct = percent_change(then, now)
        tried += 1
        if abs(pct) < min_effect_pct:
            continue
        p = _one_sided_p(before, after, up=now > then)
        if best is None or p < best[0]:
            best = (p, c, then, now, pct)
    pelt = f"PELT change points: {', '.join(ids[c] for c in cps) or 'none'}"
    if best is None:
        earlier = [x for v in nights[prev:-1] for x in v]
        level_then = float(np.median(earlier)) if earlier else None
        return Decision("change-point", "no change" if tried else "inconclusive", level_then, medians[-1],
                        percent_change(level_then, medians[-1]) if level_then else None, None, len(earlier),
                        len(now_vals),
                        reference=ids[prev], detail=(f"no shift of {min_effect_pct:g}% or more in the last "
                                                     f"{window} nights; " if tried else "too little history; ") + pelt)
    p, c, then, now, pct = best
    level = alpha / tried  # Bonferroni over the candidate change points tried
    n_then = sum(len(v) for v in nights[prev:c])
    base: dict[str, Any] = dict(then=then, now=now, pct=pct, p_value=p, n_then=n_then,
                                n_now=sum(len(v) for v in nights[c:]), reference=ids[prev], change_night=ids[c])
    if p >= level:
        return Decision("change-point", "inconclusive", **base, detail=f"p={p:.3g} >= {level:.3g}; {pelt}")
    tonight_pct = percent_change(then, medians[-1])
    if (tonight_pct > 0) != (pct > 0) or abs(tonight_pct) < min_effect_pct / 2:
        return Decision("change-point", "no change", **base, detail=f"tonight is back at the earlier level; {pelt}")
    return Decision("change-point", _direction(pct, higher_is_better), **base,
                    detail=f"shift since night {ids[c]} (p={p:.2g} < {level:.2g}); {pelt}")


def vs_history(history: Sequence[PastNight], tonight: Sequence[float], *, higher_is_better: bool,
               min_nights: int = 5, window: int = 3, alpha: float = 0.05, min_effect_pct: float = 5.0,
               metric: str = "") -> Decision:
    """Tonight against earlier nights (oldest first): the last good night while history is short,
    change-point detection once it has ``min_nights`` nights with data."""
    with_data = [h for h in history if h.values]
    if not tonight:
        return Decision("none", "inconclusive", detail="nothing measured tonight")
    if len(with_data) >= min_nights:
        return detect_change([h.values for h in with_data] + [list(tonight)], higher_is_better=higher_is_better,
                             window=window, alpha=alpha, min_effect_pct=min_effect_pct,
                             ids=[h.night for h in with_data] + ["tonight"])
    good = [h for h in with_data if h.good]
    if not good:
        return Decision("last-good", "no history", now=float(np.median(tonight)), n_now=len(tonight),
                        detail="no earlier good night")
    ref = good[-1]
    c = compare(list(ref.values), list(tonight), metric=metric, higher_is_better=higher_is_better,
                min_effect_pct=min_effect_pct)
    return Decision("last-good", c.verdict, c.base.median, c.new.median, c.pct_change, c.p_value, c.base.n, c.new.n,
                    reference=ref.night)


# -- xfstests ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TestAttempts:
    """Every attempt of one test on one kernel tonight, first run first."""

    __test__ = False  # not a pytest class

    section: str
    test: str
    statuses: tuple[str, ...]
    messages: tuple[str, ...] = ()

    @property
    def failures(self) -> int:
        return sum(1 for s in self.statuses if s in ("fail", "error"))

    @property
    def ran(self) -> int:
        return sum(1 for s in self.statuses if s in ("pass", "fail", "error"))

    @property
    def outcome(self) -> str:
        """pass | fail (every attempt) | flaky (some) | notrun."""
        if self.ran == 0:
            return "notrun"
        if self.failures == 0:
            return "pass"
        return "fail" if self.failures == self.ran else "flaky"

    @property
    def label(self) -> str:
        o = self.outcome
        return f"flaky {self.failures}/{self.ran}" if o == "flaky" else (
            f"fails {self.failures}/{self.ran}" if o == "fail" else o)


@dataclass(frozen=True)
class TestDiff:
    """One test's row of the xfstests diff."""

    __test__ = False

    section: str
    test: str
    category: str       # new failure | fixed | flaky | still failing | known failure | pass | notrun
    tonight: str
    last_good: str | None
    baseline: str | None
    message: str = ""


def attempts_from_rows(rows: Iterable[tuple[str, str, str, str]]) -> dict[tuple[str, str], TestAttempts]:
    """(section, test, status, message) rows in attempt order -> attempts per test."""
    acc: dict[tuple[str, str], tuple[list[str], list[str]]] = {}
    for section, test, status, message in rows:
        s, m = acc.setdefault((section, test), ([], []))
        s.append(status)
        m.append(message or "")
    return {k: TestAttempts(k[0], k[1], tuple(s), tuple(m)) for k, (s, m) in acc.items()}


def xfstests_diff(tonight: Mapping[tuple[str, str], TestAttempts],
                  baseline: Mapping[tuple[str, str], TestAttempts],
                  last_good: Mapping[tuple[str, str], str]) -> list[TestDiff]:
    """Classify every test run tonight. ``last_good`` maps (section, test) to that night's outcome."""
    out = []
    for key in sorted(tonight):
        t = tonight[key]
        b = baseline.get(key)
        lg = last_good.get(key)
        o = t.outcome
        passed_before = lg == "pass" or (b is not None and b.outcome == "pass")
        if o == "fail":
            cat = "new failure" if passed_before else ("still failing" if lg == "fail" else "known failure")
        elif o == "flaky":
            cat = "flaky"
        elif o == "pass":
            cat = "fixed" if lg in ("fail", "flaky") else "pass"
        else:
            cat = "notrun"
        msg = next((m for s, m in zip(t.statuses, t.messages) if s in ("fail", "error") and m), "")
        out.append(TestDiff(key[0], key[1], cat, t.label, lg, b.label if b else None, msg))
    return out


@dataclass
class FlakyRate:
    """A test's flakiness over recent nights: attempts, failures, nights with mixed outcomes."""

    section: str
    test: str
    attempts: int = 0
    failures: int = 0
    nights: int = 0
    flaky_nights: int = 0
    kernels: set = field(default_factory=set)

    @property
    def rate(self) -> float:
        return self.failures / self.attempts if self.attempts else 0.0


def expunge_lines(rates: Iterable[FlakyRate], *, min_flaky_nights: int = 2, source: str = "") -> list[str]:
    """fstests-configs expunge entries (YAML, under the section's ``expunge:``) for tests that were
    flaky on at least ``min_flaky_nights`` nights."""
    lines = []
    for r in sorted(rates, key=lambda r: (r.section, r.test)):
        if r.flaky_nights >= min_flaky_nights:
            why = (f"flaky: failed {r.failures}/{r.attempts} attempts, mixed on {r.flaky_nights} of "
                   f"{r.nights} nights" + (f" ({source})" if source else ""))
            lines.append(f"# section {r.section}\n      - {{test: {r.test}, reason: \"{why}\"}}")
    return lines
