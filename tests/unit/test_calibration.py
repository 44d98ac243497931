"""Calibrated boots (harness.results.calibration, through the one verdict rule): the guest's
speed before each run normalises a side's values only when it explains them."""

import math
import random
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from harness.results.calibration import Fit, calibrate, fit
from harness.results.verdict import CellValues, decide_cells
from harness.workloads.fio import FioJob, calibration_iops, parse_fio_json, parse_jobs, render_job

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "calibration" / "captured-6.1-fio-3.33-calib-tmpfs.json"


def iops(values: CellValues, cell: str = "c") -> dict:
    return {c.metric: c for c in decide_cells({cell: values})[cell]}


def test_fit_recovers_the_slope_of_a_speed_bound_side():
    rng = random.Random(1)
    groups = []
    for level in (1000.0, 300.0):
        cs = [rng.uniform(15000, 40000) for _ in range(5)]
        groups.append([(level * (c / 30000) ** 0.9 * math.exp(rng.gauss(0, 0.01)), c) for c in cs])
    f = fit("iops", "base", groups, higher_is_better=True)
    assert f.applied and abs(f.slope - 0.9) < 0.05 and f.r2 > 0.95 and f.n == 10 and f.cells == 2


def test_latency_follows_speed_the_other_way():
    groups = [[(100.0 * 30000 / c, c) for c in (15000, 20000, 30000, 40000)],
              [(50.0 * 30000 / c * 1.01, c) for c in (18000, 25000, 35000)]]
    assert fit("clat_p99_us", "new", groups, higher_is_better=False).applied
    assert not fit("clat_p99_us", "new", groups, higher_is_better=True).applied


def test_unrelated_values_are_left_alone():
    rng = random.Random(3)
    groups = [[(1000 * math.exp(rng.gauss(0, 0.1)), rng.uniform(15000, 40000)) for _ in range(4)] for _ in range(4)]
    f = fit("iops", "base", groups[:2], higher_is_better=True)
    out, fits = calibrate({"a": ({"iops": groups[0]}, {"iops": groups[2]}),
                           "b": ({"iops": groups[1]}, {"iops": groups[3]})}, {"iops": True})
    assert not f.applied and "explains too little" in f.why
    assert fits["iops"][0] == f
    assert out["a"][0]["iops"] == [v for v, _ in groups[0]]


def slow_boot_case() -> dict[str, CellValues]:
    """Two cells, 3 boots a side; the base side's first boot ran at half speed (calibration and
    IOPS halved, as on a busy host); the new kernel is 40% slower and bound by something the
    guest's speed does not set (flat)."""
    base_cal = [15000.0, 30000.0, 31000.0]
    new_cal = [29500.0, 30500.0, 30000.0]
    cells = {}
    for cell, level in (("a", 1400.0), ("b", 400.0)):
        base = [level * c / 30000 * k for c, k in zip(base_cal, (1.0, 1.02, 0.99))]
        new = [level * 0.6 * k for k in (1.0, 1.03, 0.98)]
        cells[cell] = CellValues({"iops": base}, {"iops": new}, {"iops": base_cal}, {"iops": new_cal})
    return cells


def test_one_slow_boot_no_longer_hides_a_change():
    cells = slow_boot_case()
    raw = {k: next(c for c in v if c.metric == "IOPS") for k, v in decide_cells(cells, calibrate=False).items()}
    cal = {k: next(c for c in v if c.metric == "IOPS") for k, v in decide_cells(cells).items()}
    for k in cells:
        assert raw[k].verdict == "inconclusive" and not raw[k].calibrated
        assert cal[k].verdict == "regression" and cal[k].calibrated
        assert abs(cal[k].pct_change + 40) < 4
        base_fit, new_fit = cal[k].calibration
        assert base_fit.applied and base_fit.side == "base" and not new_fit.applied
        assert "normalised" in base_fit.line and "not used" in new_fit.line


def test_a_side_that_met_a_busier_host_is_brought_to_the_same_conditions():
    """Both kernels slow down with the host's load (slope 1); the baseline's boots met a busier
    host (free shares 0.5-0.7) than the new kernel's (0.9-1.0). Raw, the baseline looks slow and
    the real -30% of the new kernel hides; calibrated, both sides are compared as at the common
    median share."""
    cells = {}
    for cell, level in (("a", 2000.0), ("b", 400.0)):
        bc, nc = [0.5, 0.7, 0.6, 0.55], [1.0, 0.9, 0.95, 1.0]
        base = [level * c * k for c, k in zip(bc, (1.0, 1.02, 0.99, 1.01))]
        new = [level * 0.7 * c * k for c, k in zip(nc, (1.0, 1.03, 0.98, 1.0))]
        cells[cell] = CellValues({"iops": base}, {"iops": new}, {"iops": bc}, {"iops": nc})
    raw = decide_cells(cells, calibrate=False)["a"][0]
    cal = decide_cells(cells)["a"][0]
    assert raw.pct_change > 10 and raw.verdict != "regression"
    assert cal.calibrated and all(f.applied for f in cal.calibration)
    assert cal.verdict == "regression" and abs(cal.pct_change + 30) < 4


def test_runs_without_calibration_decide_as_before():
    cells = {k: CellValues(v.base, v.new) for k, v in slow_boot_case().items()}
    assert decide_cells(cells) == decide_cells(cells, calibrate=False)
    assert all(c.calibration is None for cs in decide_cells(cells).values() for c in cs)


def test_a_family_partly_without_calibration_is_not_normalised():
    cells = slow_boot_case()
    cells["b"] = CellValues(cells["b"].base, cells["b"].new)
    c = decide_cells(cells)["a"][0]
    assert not c.calibrated and "have no calibration" in c.calibration[0].why


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(1, 1e6), st.floats(1, 1e6)), min_size=0, max_size=12),
       st.lists(st.tuples(st.floats(1, 1e6), st.floats(1, 1e6)), min_size=0, max_size=12))
def test_calibrate_keeps_every_run(base, new):
    out, fits = calibrate({"c": ({"iops": base}, {"iops": new})}, {"iops": True})
    assert len(out["c"][0]["iops"]) == len(base) and len(out["c"][1]["iops"]) == len(new)
    assert all(math.isfinite(v) and v > 0 for side in out["c"] for v in side["iops"])
    for f in fits.get("iops", ()):
        assert isinstance(f, Fit) and (not f.applied or f.r2 >= 0.5)


def test_the_job_file_has_a_calibration_job_before_the_measured_one():
    text = render_job(FioJob("unwritten-convert", "/mnt/fio", calibrate=True))
    assert text.index("[calib.tmpfs]") < text.index("[measure.unwritten-convert.libaio]")
    assert "directory=/dev/shm" in text and "direct=0" in text
    assert "calib.tmpfs" not in render_job(FioJob("unwritten-convert", "/mnt/fio"))


def test_captured_fio_output_gives_the_calibration_apart():
    """fio 3.33 in the Debian 12 guest, 6.1 baseline, ext4/NVMe: the calibration job is not a
    measured job, and its IOPS are the guest's speed."""
    text = FIXTURE.read_text()
    assert [r.job for r in parse_fio_json(text)] == ["measure.unwritten-convert.libaio"]
    assert calibration_iops(parse_jobs(text)) == 30438.0
    assert calibration_iops(parse_jobs(text.replace('"calib.tmpfs"', '"other.tmpfs"'))) is None


def test_host_free_share_from_proc():
    """harness.vm.hostload: this process's own samples read back, and the share from two samples."""
    import os

    from harness.vm.hostload import CpuSample, free_share, sample
    s = sample(os.getpid())
    assert s is not None and s.total >= s.busy >= 0 and s.process >= 0
    assert sample(2 ** 22 + 12345) is None          # no such process
    before, after = CpuSample(100, 1000, 10), CpuSample(700, 2000, 110)
    # 600 busy ticks of 1000, 100 of them the guest's: others took half the host
    assert free_share(before, after) == 0.5
    assert free_share(before, before) is None and free_share(None, after) is None
    assert free_share(CpuSample(0, 0, 0), CpuSample(5000, 1000, 0)) == 0.0   # clamped


def test_a_nights_calibrated_decision_says_so():
    from harness.results.verdict import night_vs_baseline
    decisions = night_vs_baseline(slow_boot_case())
    assert decisions["a"]["iops"].verdict == "regression"
    assert decisions["a"]["iops"].detail == "calibrated by the host's load"
