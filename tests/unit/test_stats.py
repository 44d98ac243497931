"""Statistics: summaries and the noise-aware base-versus-new comparison."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy.stats import ttest_ind

from harness.errors import HarnessError
from harness.results.stats import SETTLE_ALPHA, compare, format_comparison, summarize, welch_log_p

BASE_IOPS = [8979.0, 9010.0, 8950.0, 9100.0, 8890.0]
NEW_IOPS = [498.0, 510.0, 490.0, 505.0, 480.0]


def test_summarize_basic():
    s = summarize([1.0, 2.0, 3.0, 4.0])
    assert (s.n, s.median, s.mean, s.min, s.max) == (4, 2.5, 2.5, 1.0, 4.0)
    assert s.stdev == pytest.approx(1.2909944, rel=1e-6)
    assert s.cv == pytest.approx(s.stdev / 2.5)
    assert s.iqr == pytest.approx(1.5)


def test_summarize_single_and_invalid():
    s = summarize([7.0])
    assert (s.n, s.median, s.stdev, s.cv, s.iqr) == (1, 7.0, 0.0, 0.0, 0.0)
    with pytest.raises(HarnessError):
        summarize([])
    with pytest.raises(HarnessError):
        summarize([1.0, math.nan])


def test_clear_regression_5v5():
    c = compare(BASE_IOPS, NEW_IOPS, metric="IOPS", higher_is_better=True)
    assert c.verdict == "regression" and c.significant
    assert c.p_value < 1e-9   # Welch on logs: a 18x ratio with 1-2% noise
    assert not c.ranges_overlap
    assert c.pct_change == pytest.approx((498 - 8979) / 8979 * 100)
    assert format_comparison("ext4/nvme randwrite-overwrite libaio", c) == (
        "ext4/nvme randwrite-overwrite libaio: IOPS -94% (498 vs 8979 median, 5 runs each, p<0.001; "
        "HL -94%, 97% CI -95%..-94%; MDE 4%) regression")


def test_clear_improvement_is_the_mirror():
    c = compare(NEW_IOPS, BASE_IOPS, metric="IOPS", higher_is_better=True)
    assert c.verdict == "improvement" and c.significant
    assert c.pct_change > 1000


def test_noise_is_no_change():
    base = [100.0, 103.0, 97.0, 101.0, 99.0]
    new = [102.0, 98.0, 104.0, 100.0, 97.0]
    c = compare(base, new, metric="IOPS", higher_is_better=True)
    assert c.verdict == "no change" and not c.significant
    assert c.ranges_overlap
    assert abs(c.pct_change) < 3
    assert c.p_value is not None and c.p_value > 0.05


def test_small_but_certain_change_is_below_min_effect():
    base = [100.0, 100.5, 101.0, 101.5, 102.0]
    new = [103.5, 104.0, 104.5, 105.0, 105.5]  # +3.5 %, perfectly separated
    c = compare(base, new, metric="IOPS", higher_is_better=True)
    assert c.p_value < 1e-3 and not c.ranges_overlap
    assert c.verdict == "no change"
    assert compare(base, new, metric="IOPS", higher_is_better=True, min_effect_pct=3.0).verdict == "improvement"


def test_big_but_noisy_change_is_inconclusive():
    base = [100.0, 60.0, 140.0, 90.0, 115.0]
    new = [120.0, 80.0, 170.0, 105.0, 150.0]  # medians +20 %, but runs spread +-40 %
    c = compare(base, new, metric="IOPS", higher_is_better=True)
    assert c.pct_change == pytest.approx(20.0)
    assert c.ranges_overlap and c.p_value > 0.05
    assert c.verdict == "inconclusive" and not c.significant


def test_significant_but_shift_within_spread_is_inconclusive():
    base = [95.0, 96, 97, 98, 99, 101, 102, 103, 104, 105]
    new = [x + 4.5 for x in base]  # p = 0.01, +4.5 %, but the interquartile range is 5.5
    c = compare(base, new, metric="IOPS", higher_is_better=True, min_effect_pct=3)
    assert c.p_value < 0.05 and c.pct_change > 4 and c.base.iqr > 4.5
    assert c.verdict == "inconclusive"


def test_3v3_big_change_is_flagged_at_the_minimum():
    base = [100.0, 102.0, 104.0]
    new = [50.0, 51.0, 53.0]
    c = compare(base, new, metric="IOPS", higher_is_better=True)
    assert c.p_value < 1e-3  # Mann-Whitney could never go below 0.1 at 3 vs 3
    assert not c.ranges_overlap
    assert c.verdict == "regression" and c.significant and c.settled


def test_3v3_separated_ranges_alone_flag_nothing():
    # the old ranges rule flagged this (-9%, ranges apart); the t-test on logs does not (p = 0.065)
    c = compare([100.0, 95.0, 106.0], [94.0, 86.0, 91.0], metric="IOPS", higher_is_better=True)
    assert c.pct_change < -5 and not c.ranges_overlap
    assert c.p_value > 0.05 and c.verdict == "inconclusive" and not c.settled


def test_3v3_overlapping_large_change_is_inconclusive():
    c = compare([100.0, 102.0, 104.0], [50.0, 51.0, 101.0], metric="IOPS", higher_is_better=True)
    assert c.pct_change < -40 and c.ranges_overlap
    assert c.verdict == "inconclusive"


def test_lower_is_better_latency_direction():
    base = [500.0, 510.0, 490.0, 505.0, 495.0]
    worse = [600.0, 610.0, 590.0, 620.0, 605.0]
    c = compare(base, worse, metric="p99 clat us", higher_is_better=False)
    assert c.pct_change > 15 and c.verdict == "regression" and not c.higher_is_better
    c = compare(worse, base, metric="p99 clat us", higher_is_better=False)
    assert c.verdict == "improvement"


@pytest.mark.parametrize("base,new", [([100.0, 101.0], [50.0, 51.0]), ([100.0], [50.0, 51.0, 52.0]),
                                      ([100.0, 101.0, 102.0], [50.0])])
def test_fewer_than_three_runs_is_inconclusive(base, new):
    c = compare(base, new, metric="IOPS", higher_is_better=True)
    assert c.verdict == "inconclusive" and not c.significant
    assert c.pct_change < -45
    if min(len(base), len(new)) < 2:
        assert c.p_value is None
        assert "p=n/a" in format_comparison("x", c)


def test_identical_values_are_no_change():
    c = compare([5.0] * 4, [5.0] * 4, metric="IOPS", higher_is_better=True)
    assert c.verdict == "no change" and c.p_value == 1.0 and c.pct_change == 0.0


def test_welch_log_p_edges():
    assert welch_log_p([1.0], [2.0, 3.0]) is None
    assert welch_log_p([2.0, 2.0], [2.0, 2.0]) == 1.0 and welch_log_p([2.0, 2.0], [3.0, 3.0]) == 0.0
    # a ratio test: scaling both sides changes nothing
    assert welch_log_p([10.0, 12.0, 11.0], [8.0, 9.0, 9.5]) == pytest.approx(
        welch_log_p([1000.0, 1200.0, 1100.0], [800.0, 900.0, 950.0]))
    # non-positive values: the raw values
    assert welch_log_p([0.0, 1.0, 2.0], [5.0, 6.0, 7.0]) < 0.05


def test_format_unequal_runs_and_small_numbers():
    c = compare([52.1, 52.4, 52.3], [60.2, 60.5, 60.1, 60.4], metric="p50 clat us", higher_is_better=False)
    line = format_comparison("xfs/virtio append-extend io_uring", c)
    assert line.startswith("xfs/virtio append-extend io_uring: p50 clat us +15% "
                           "(60.3 vs 52.3 median, 4 vs 3 runs, p<0.001; ")
    assert line.endswith(" regression")


# -- effects: Hodges-Lehmann intervals, MDE, Benjamini-Hochberg -----------------------------
def test_u_null_distribution_matches_enumeration():
    import itertools

    from harness.results.effects import _u_null_counts
    for m, n in [(3, 3), (4, 2), (5, 4)]:
        counts = [0] * (m * n + 1)
        for xs in itertools.combinations(range(m + n), m):  # ranks of the first sample
            counts[sum(xs) - m * (m - 1) // 2] += 1
        assert list(_u_null_counts(m, n)) == counts


def test_interval_confidence_is_the_achievable_one():
    from harness.results.effects import shift
    s = shift([100, 102, 98], [50, 51, 49])
    assert s.confidence == 0.9  # 3 vs 3: the widest interval, 1 - 2/20
    assert -52 < s.low <= s.pct <= s.high < -47
    assert shift([100, 101], [100]) is None and shift([0, 1], [1, 2]) is None


def test_interval_coverage_by_simulation():
    import numpy as np

    from harness.results.effects import shift
    rng = np.random.default_rng(7)
    hits, trials = 0, 600
    for _ in range(trials):
        b = rng.lognormal(0, 0.07, 6)
        n = rng.lognormal(math.log(0.9), 0.07, 6)
        s = shift(b, n)
        hits += s.low <= -10 <= s.high
    assert 0.93 <= hits / trials <= 0.99  # the exact interval has 95.9% at 6 vs 6


def test_mde_shrinks_with_runs_and_grows_with_noise():
    from harness.results.effects import mde_pct
    quiet, noisy = [100, 101, 99, 100.5, 99.5], [100, 110, 90, 105, 95]
    assert mde_pct(quiet, quiet) < mde_pct(noisy, noisy)
    assert mde_pct(noisy * 4, noisy * 4) < mde_pct(noisy, noisy)
    assert mde_pct([1], [1, 2]) is None


def test_bh_adjust_and_matrix_adjust_take_back_a_lone_p_value():
    from harness.results.effects import bh_adjust
    from harness.results.stats import adjust
    assert bh_adjust([0.01, None, 0.04, 0.03]) == [pytest.approx(0.03), None, pytest.approx(0.04), pytest.approx(0.04)]
    # one cell with p < 0.05 among many quiet ones: overlapping ranges, so only the p-value flags it
    base, new = [100, 104, 96, 102, 98, 101], [93, 97, 90, 99, 92, 95]
    alone = compare(base, new, metric="IOPS", higher_is_better=True)
    assert alone.p_value < 0.05 and alone.ranges_overlap and alone.verdict == "regression"
    quiet = [compare([100, 101, 99, 100], [100, 100.5, 99.5, 101], metric="IOPS", higher_is_better=True)] * 20
    adjusted = adjust([alone, *quiet])
    assert adjusted[0].q_value > 0.05 and adjusted[0].verdict == "inconclusive"
    assert "q=" in format_comparison("c", adjusted[0])


def test_settled_means_decided_or_a_narrow_no_change():
    big = compare(BASE_IOPS, NEW_IOPS, metric="IOPS", higher_is_better=True)
    assert big.settled
    # flagged at alpha but not at SETTLE_ALPHA: looked at again with more runs
    base, new = [100, 104, 96, 102, 98, 101], [94, 98, 91, 100, 93, 96]
    weak = compare(base, new, metric="IOPS", higher_is_better=True)
    assert weak.verdict == "regression" and SETTLE_ALPHA <= weak.p_value < 0.05 and not weak.settled
    narrow = compare([100, 100.5, 99.5, 100.2, 99.8], [100.1, 100.4, 99.6, 100, 99.9], metric="IOPS",
                     higher_is_better=True)
    assert narrow.verdict == "no change" and narrow.settled
    assert format_comparison("c", narrow).endswith("no change larger than 1%")
    wide = compare([100, 120, 85], [101, 80, 118], metric="IOPS", higher_is_better=True)
    assert wide.verdict == "no change" and not wide.settled


def test_welch_log_p_one_constant_side_warns_nothing():
    """fio's p99 often lands in the same histogram bucket on every run: scipy's "precision loss"
    warning for the exact zero variance is silenced, and the p-value is Welch's own."""
    base, new = [86508.0] * 5, [86508.0, 90000.0, 88000.0, 86508.0, 95000.0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        p = welch_log_p(base, new)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = ttest_ind(np.log(new), np.log(base), equal_var=False).pvalue
    assert p == pytest.approx(expected) and 0.05 < p < 1
