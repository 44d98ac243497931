"""The two-level noise model (harness.results.noise), the verdicts' one value a boot, and how a
matrix's repeats choose runs a boot (harness.drivers.repeats)."""

import math
import random
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.drivers.repeats import FIRST_REPEAT_RUNS, boot_costs, cell_noise, plan_repeat
from harness.results.noise import Components, best_runs_per_boot, components, mde_pct, pooled
from harness.results.verdict import by_boot, cell_values, measured


def _nested(rng: random.Random, boots: int, runs: int, boot_sd: float, within_sd: float, mu: float = 7.0):
    return [[math.exp(mu + b + rng.gauss(0, within_sd)) for _ in range(runs)]
            for b in (rng.gauss(0, boot_sd) for _ in range(boots))]


def test_components_recover_the_two_sds():
    c = components(_nested(random.Random(1), 600, 3, 0.07, 0.11))
    assert c is not None and c.boots == 600 and c.runs == 1800
    assert c.boot_sd == pytest.approx(0.07, abs=0.01)
    assert c.within_sd == pytest.approx(0.11, abs=0.005)


def test_one_run_a_boot_cannot_split_the_noise():
    c = components([[100.0], [110.0], [90.0]])
    assert c is not None and c.within_sd is None
    logs = [math.log(v) for v in (100, 110, 90)]
    mean = sum(logs) / 3
    assert c.boot_sd == pytest.approx(math.sqrt(sum((x - mean) ** 2 for x in logs) / 2))
    assert components([[100.0, 101.0]]) is None   # one boot: no between-boot term


def test_a_boot_effect_smaller_than_the_runs_explain_is_zero_not_negative():
    # the boots' means differ less than their runs would make them: MS_between < MS_within
    c = components([[90.0, 110.0], [91.0, 109.0], [89.0, 111.0]])
    assert c is not None and c.boot_sd == 0.0 and c.within_sd > 0.1


@given(st.lists(st.lists(st.floats(0.001, 1e6), min_size=1, max_size=5), min_size=2, max_size=12))
def test_components_are_finite_and_not_negative(groups):
    c = components(groups)
    assert c is not None and c.boot_sd >= 0 and math.isfinite(c.boot_sd)
    assert c.within_sd is None or (c.within_sd >= 0 and math.isfinite(c.within_sd))


def test_pooled_weights_by_degrees_of_freedom():
    a, b = Components(0.1, 0.2, 3, 6), Components(0.3, None, 5, 5)
    p = pooled(a, None, b)
    assert p is not None and p.boots == 8 and p.runs == 11
    assert p.boot_sd == pytest.approx(math.sqrt((2 * 0.01 + 4 * 0.09) / 6))
    assert p.within_sd == pytest.approx(0.2)          # only the side that repeated in a boot
    assert pooled(None, None) is None


def test_mde_shrinks_with_boots_and_with_runs_only_as_far_as_the_boot_effect_allows():
    c = Components(0.07, 0.11, 10, 30)
    m3, m8 = mde_pct(c, 3), mde_pct(c, 8)
    assert m3 is not None and m8 is not None and m8 < m3
    assert mde_pct(c, 8, 4) < m8                       # more runs a boot help ...
    floor = mde_pct(Components(0.07, 0.0, 10, 30), 8)
    assert mde_pct(c, 8, 10 ** 6) == pytest.approx(floor, rel=1e-4)   # ... down to the boot effect alone
    assert mde_pct(c, 1) is None
    # one boot effect of 10%, no run noise, 8 boots a side: (t(.975,14) + t(.8,14)) * 0.1 * sqrt(2/8)
    d = (2.1447867 + 0.8680737) * 0.1 * 0.5
    assert mde_pct(Components(0.1, None, 8, 8), 8) == pytest.approx(-math.expm1(-d) * 100, rel=1e-5)


def test_best_runs_per_boot_is_kalibera_and_jones_optimum():
    # a boot costs 40 s beyond its runs, a run 5 s, the two SDs equal: sqrt(8) = 2.8 -> 3
    assert best_runs_per_boot(Components(0.1, 0.1, 5, 10), 40, 5) == 3
    assert best_runs_per_boot(Components(0.1, 0.05, 5, 10), 40, 5) == 1    # sqrt(2)/... -> 1.4 -> 1
    assert best_runs_per_boot(Components(0.1, None, 5, 5), 40, 5) == 1     # unknown within: one
    assert best_runs_per_boot(Components(0.0, 0.1, 5, 10), 40, 5) == 4     # no boot effect: the cap
    assert best_runs_per_boot(Components(0.01, 0.3, 5, 10), 40, 5) == 4


def _m(iops: float, run_id: str | None = None, free: float | None = None, **counts: float):
    return SimpleNamespace(status="ok", iops=iops, run_id=run_id, host_free=free, **counts)


def test_a_boots_runs_are_one_value_their_geometric_mean():
    ms = [_m(100.0), _m(121.0), _m(200.0)]
    assert measured(ms, boots=["a", "a", "b"])["iops"] == [pytest.approx(110.0), 200.0]
    assert measured(ms)["iops"] == [100.0, 121.0, 200.0]            # no boots named: each its own
    # store rows carry their run id: grouped without being told
    rows = [_m(100.0, "r1"), _m(121.0, "r1"), _m(200.0, "r2")]
    assert measured(rows)["iops"] == [pytest.approx(110.0), 200.0]
    # a count of 0 in a boot: the arithmetic mean
    zs = [_m(1.0, flushes_per_kwrite=0.0), _m(1.0, flushes_per_kwrite=2.0)]
    from harness.results.metrics import metric
    assert measured(zs, [metric("flushes_per_kwrite")], ["x", "x"])["flushes_per_kwrite"] == [1.0]
    assert by_boot(ms, "iops", ["a", "a", "b"]) == [[100.0, 121.0], [200.0]]


def test_the_calibration_of_a_boot_is_the_mean_of_its_runs():
    base = [_m(100.0, free=0.8), _m(100.0, free=0.6), _m(100.0, free=1.0)]
    v = cell_values(base, base, base_boots=["a", "a", "b"], new_boots=["a", "b", "c"])
    assert v.base_host_free["iops"] == [pytest.approx(0.7), 1.0]
    assert len(v.new["iops"]) == 3


def _outcome(base_groups, new_groups):
    base, bb, new, nb = [], [], [], []
    for side, boots, groups, tag in ((base, bb, base_groups, "b"), (new, nb, new_groups, "n")):
        for i, g in enumerate(groups):
            for v in g:
                side.append(_m(v))
                boots.append(f"{tag}{i}")
    return SimpleNamespace(base=base, new=new, base_boots=bb, new_boots=nb)


def _rec(n: int, wall: float, boot: float, role: str = "base"):
    ms = tuple(SimpleNamespace(status="ok") for _ in range(n))
    t0 = 1_700_000_000
    import time
    fmt = "%Y-%m-%dT%H:%M:%S%z"
    return SimpleNamespace(started=time.strftime(fmt, time.localtime(t0)),
                           finished=time.strftime(fmt, time.localtime(t0 + wall)), measurements=ms,
                           lost="", spec=SimpleNamespace(role=role), boot_seconds=boot)


def test_boot_costs_fit_a_line_when_boots_ran_different_numbers_of_runs():
    recs = [_rec(24, 24 * 5 + 30, 5), _rec(24, 24 * 5 + 30, 5), _rec(4, 4 * 5 + 30, 5)]
    boot, run = boot_costs(recs)
    assert boot == pytest.approx(30, abs=1) and run == pytest.approx(5, abs=0.1)
    # all alike: the boot to SSH, and the rest shared by the runs
    boot, run = boot_costs([_rec(10, 60, 8), _rec(10, 62, 8)])
    assert boot == 8 and run == pytest.approx(5.3, abs=0.01)
    assert boot_costs([_rec(10, 60, 8, role="evidence")]) is None


def test_plan_repeat_measures_within_boot_noise_first_then_follows_the_model():
    rng = random.Random(3)
    one_a_boot = {"c": _outcome(_nested(rng, 3, 1, 0.05, 0.15), _nested(rng, 3, 1, 0.05, 0.15))}
    recs = [_rec(24, 150, 5), _rec(4, 50, 5)]
    first = plan_repeat(one_a_boot, ["c"], recs)
    assert first.runs_per_boot == FIRST_REPEAT_RUNS and "within a boot" in first.reason
    assert plan_repeat(one_a_boot, ["c"], recs, fixed=3).runs_per_boot == 3
    # runs far noisier than boots, boots dear: the model asks for more runs a boot
    noisy_runs = {"c": _outcome(_nested(rng, 4, 3, 0.01, 0.2), _nested(rng, 4, 3, 0.01, 0.2))}
    assert plan_repeat(noisy_runs, ["c"], [_rec(24, 24 * 5 + 60, 5), _rec(4, 4 * 5 + 60, 5)]).runs_per_boot == 4
    # boots noisier than runs, boots cheap: one run a boot
    noisy_boots = {"c": _outcome(_nested(rng, 4, 3, 0.3, 0.01), _nested(rng, 4, 3, 0.3, 0.01))}
    p = plan_repeat(noisy_boots, ["c"], [_rec(24, 24 * 5 + 10, 5), _rec(4, 4 * 5 + 10, 5)])
    assert p.runs_per_boot == 1 and p.boot_sd > p.within_sd


def test_cell_noise_reports_components_and_mdes():
    rng = random.Random(4)
    out = {"ext4/nvme/x/libaio": _outcome(_nested(rng, 3, 2, 0.05, 0.1), _nested(rng, 3, 2, 0.05, 0.1)),
           "xfs/nvme/x/libaio": _outcome([[100.0]], [[90.0]])}   # one boot a side: no components
    (n,) = cell_noise(out, [_rec(24, 150, 5), _rec(4, 50, 5)])
    assert n.cell == "ext4/nvme/x/libaio" and n.metric == "IOPS" and n.boots == 6 and n.runs == 12
    assert n.within_sd is not None and n.mde_8_pct < n.mde_3_pct
    assert n.best_runs_per_boot is not None and "MDE at 3 boots a side" in n.line
