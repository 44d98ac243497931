"""The nightly history decisions on synthetic series with injected steps, and the xfstests diff."""

from __future__ import annotations

import numpy as np
import pytest

from harness.results.history import (
    FlakyRate,
    PastNight,
    TestAttempts,
    attempts_from_rows,
    change_points,
    detect_change,
    expunge_lines,
    noise_sigma,
    vs_history,
    xfstests_diff,
)


def nights(rng, n, level=1000.0, cv=0.07, runs=3):
    return [list(level * (1 + rng.normal(0, cv, runs))) for _ in range(n)]


def hist(series, good=None):
    return [PastNight(f"n{i}", tuple(v), True if good is None else good[i], commit=f"c{i}")
            for i, v in enumerate(series)]


@pytest.mark.parametrize("seed", range(5))
def test_a_15pct_step_is_flagged_within_three_nights(seed):
    rng = np.random.default_rng(seed)
    s = nights(rng, 10) + nights(rng, 3, level=850.0)
    verdicts = []
    for k in range(10, 13):
        d = vs_history(hist(s[:k]), s[k], higher_is_better=True)
        verdicts.append(d)
    flagged = [d for d in verdicts if d.verdict == "regression"]
    assert flagged, [(d.verdict, d.detail) for d in verdicts]
    d = flagged[0]
    # the split may land a night early by chance: the range to bisect is then one night longer
    assert d.method == "change-point" and d.change_night in ("n9", "n10", "n11", "n12", "tonight")
    assert d.pct < -5 and d.p_value < 0.05 and d.then > d.now


def test_noise_alone_is_rarely_flagged():
    """At most 5% of nights without a step are flagged (the benchmark measures ~2.5%)."""
    rng = np.random.default_rng(100)
    flags = n = 0
    for _ in range(60):
        s = nights(rng, 13, cv=rng.uniform(0.05, 0.09))
        for k in range(5, 13):
            flags += vs_history(hist(s[:k]), s[k], higher_is_better=True).verdict == "regression"
            n += 1
    assert flags / n <= 0.05, f"{flags}/{n}"


def test_latency_up_is_a_regression_and_iops_up_an_improvement():
    rng = np.random.default_rng(7)
    s = nights(rng, 8) + [list(1400 * (1 + rng.normal(0, 0.03, 3))) for _ in range(2)]
    assert detect_change(s, higher_is_better=False).verdict == "regression"
    assert detect_change(s, higher_is_better=True).verdict == "improvement"


def test_an_old_change_is_the_new_normal():
    rng = np.random.default_rng(3)
    s = nights(rng, 8) + nights(rng, 6, level=700.0)
    d = detect_change(s, higher_is_better=True, window=3)
    assert d.verdict == "no change", d
    assert 8 in change_points([np.median(v) for v in s])  # PELT still finds it (and the report names it)


def test_tonight_back_at_the_old_level_is_not_flagged():
    rng = np.random.default_rng(11)
    s = nights(rng, 10) + nights(rng, 2, level=700.0) + nights(rng, 1)
    assert detect_change(s, higher_is_better=True).verdict != "regression"


def test_short_history_uses_the_last_good_night():
    rng = np.random.default_rng(5)
    s = nights(rng, 3, cv=0.03)
    s[2] = [600.0, 610.0, 590.0]                                  # night n2 was bad
    tonight = [598.0, 605.0, 601.0]
    d = vs_history(hist(s, good=[True, True, False]), tonight, higher_is_better=True)
    assert d.method == "last-good" and d.reference == "n1" and d.verdict == "regression"
    assert vs_history([], tonight, higher_is_better=True).verdict == "no history"
    assert vs_history(hist(s[:1]), [], higher_is_better=True).verdict == "inconclusive"


def test_noise_sigma_ignores_a_single_step():
    x = [1.0, 1.02, 0.98, 1.01, 0.99, 0.7, 0.71, 0.69]
    assert noise_sigma(x) < 0.05


def test_same_night_decisions_are_the_suite_rule():
    from harness.results.verdict import CellValues, night_vs_baseline
    base = [2000.0, 2100.0, 1950.0]
    d = night_vs_baseline({"down": CellValues({"iops": base}, {"iops": [560.0, 580.0, 572.0]}),
                           "same": CellValues({"iops": base}, {"iops": [2010.0, 2090.0, 1990.0]}),
                           "none": CellValues({"iops": []}, {"iops": [1.0]})})
    assert d["down"]["iops"].verdict == "regression" and d["down"]["iops"].q_value is not None
    assert d["same"]["iops"].verdict == "no change"
    assert d["none"]["iops"].verdict == "inconclusive" and d["none"]["clat_p99_us"].n_now == 0


def test_xfstests_outcomes_and_diff():
    t = attempts_from_rows([("s", "generic/001", "fail", "bad"), ("s", "generic/001", "fail", ""),
                            ("s", "generic/001", "fail", ""), ("s", "generic/002", "fail", "x"),
                            ("s", "generic/002", "pass", ""), ("s", "generic/003", "pass", ""),
                            ("s", "generic/004", "notrun", "no"), ("s", "generic/005", "fail", "y"),
                            ("s", "generic/005", "fail", ""), ("s", "generic/006", "error", "hung")])
    assert t[("s", "generic/001")].label == "fails 3/3" and t[("s", "generic/002")].label == "flaky 1/2"
    base = {("s", "generic/001"): TestAttempts("s", "generic/001", ("pass",)),
            ("s", "generic/005"): TestAttempts("s", "generic/005", ("fail",))}
    last = {("s", "generic/003"): "fail", ("s", "generic/006"): "pass"}
    cats = {d.test: d.category for d in xfstests_diff(t, base, last)}
    assert cats == {"generic/001": "new failure",      # passes on the baseline, fails every time here
                    "generic/002": "flaky", "generic/003": "fixed", "generic/004": "notrun",
                    "generic/005": "known failure",    # fails on the baseline too
                    "generic/006": "new failure"}      # passed on the last good night
    msg = {d.test: d.message for d in xfstests_diff(t, base, last)}
    assert msg["generic/001"] == "bad"


def test_expunge_lines_for_tests_flaky_on_several_nights():
    rates = [FlakyRate("ext4_4k", "generic/091", 9, 3, 3, 2), FlakyRate("ext4_4k", "generic/001", 3, 1, 1, 1)]
    lines = expunge_lines(rates, min_flaky_nights=2, source="nightly default")
    assert len(lines) == 1 and "test: generic/091" in lines[0] and "3/9" in lines[0] and "ext4_4k" in lines[0]
