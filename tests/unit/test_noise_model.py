"""The measured-noise benchmarks: benchmarks/noise_by_metric.py reads boots right and
benchmarks/history_detector.py draws its series from the named noise classes."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from benchmarks import history_detector as hd
from benchmarks import noise_by_metric as nm


def _record(run_dir, label, iops, jbd2, *, cell="ext4/nvme/unwritten-convert/libaio", key="k1",
            started="2026-12-06T08:00:00+0000", icount=None):
    return {"label": label, "run_dir": str(run_dir), "started": started,
            "spec": {"kernel": {"key": key}, "vm": {"cpus": 2, "icount_shift": icount},
                     "workload": {"cells": [{"job": {"runtime": 3, "size": "32m"}}]}},
            "measurements": [{"cell": cell, "run_index": 0, "status": "ok", "iops": v, "jbd2_commits_per_kwrite": j}
                             for v, j in zip(iops, jbd2)]}


def _write(root, name, rec):
    d = root / name
    d.mkdir(parents=True)
    rec["run_dir"] = str(d)
    (d / "record.json").write_text(json.dumps(rec))


def test_noise_by_metric_reads_boots_and_skips_what_is_not_one(tmp_path):
    # One real-looking boot only on disk: pytest's temporary directories are read by this very
    # benchmark, and a condition needs 2 boots, so these records can never count there.
    _write(tmp_path / "night1", "b0", _record(None, "baseline-nvme-run0", [1000.0], [180.0]))
    _write(tmp_path / "night1", "ev", _record(None, "evidence-x", [10.0], [1.0]))            # skipped
    _write(tmp_path / "night1", "fake", _record(None, "one", [1.0], [1.0], started="t0"))   # skipped
    _write(tmp_path / "night1", "ic", _record(None, "icount", [5.0], [1.0], icount=3))       # skipped
    boots = list(nm.boots_from_dirs([tmp_path]))
    assert [b["label"] for b in boots] == ["baseline-nvme-run0"]
    assert boots[0]["session"] == str(tmp_path / "night1")


def test_noise_by_metric_pools_boots_of_one_condition():
    vals = [1000.0, 1100.0, 900.0, 1050.0]
    boots = [nm._boot(_record(f"/r/n1/b{i}", f"baseline-nvme-run{i}", [v, v * 1.01], [180.0, 180.0]), "n1")
             for i, v in enumerate(vals)]
    res = nm.analyse(boots)
    want = float(np.std(np.log(vals), ddof=1))
    assert res["iops"]["run"] == pytest.approx(want)
    assert res["iops"]["run_boots"] == 4
    assert res["iops"]["within"] == pytest.approx(math.log(1.01) / math.sqrt(2))   # two runs a boot
    assert res["jbd2_commits_per_kwrite"]["run"] == pytest.approx(0.0)


def test_noise_by_metric_sees_a_session_shift():
    rng = np.random.default_rng(3)
    boots = []
    for s, shift in enumerate((1.0, 1.3, 0.8, 1.2, 0.9, 1.25)):
        for i in range(4):
            v = 1000 * shift * math.exp(rng.normal(0, 0.02))
            boots.append(nm._boot(_record(f"/r/s{s}/b{i}", f"r{i}", [v], [100.0]), f"s{s}"))
    res = nm.analyse(boots)
    assert 0.1 < res["iops"]["session"] < 0.35
    assert res["iops"]["run"] < 0.04


def test_detector_series_steps_in_the_worse_direction():
    rng = np.random.default_rng(1)
    quiet = dict(metric="iops", sds=(0.001,), night=0.0)
    s = hd.series(rng, 4, 3, 2, 0.2, quiet)
    assert np.median(s[3]) == pytest.approx(800, rel=0.02)        # IOPS: lower is worse
    s = hd.series(rng, 4, 3, 2, 0.2, dict(quiet, metric="clat_p99_us"))
    assert np.median(s[3]) == pytest.approx(1200, rel=0.02)       # latency: higher is worse
    assert set(hd.NOISE) >= {"synthetic-5-9", "iops", "p99", "jbd2", "ctxsw"}


def test_old_model_is_kept_bit_for_bit():
    """``--noise synthetic-5-9`` draws exactly what the benchmark drew before the measured classes."""
    a = hd.series(np.random.default_rng(7), 5, 3, 2, 0.1)
    rng = np.random.default_rng(7)
    cv = rng.uniform(0.05, 0.09)
    b = [list((900.0 if i >= 2 else 1000.0) * (1 + rng.normal(0, cv, 3))) for i in range(5)]
    assert a == b


def test_nights_test_treats_a_night_as_the_unit():
    flat = [[1000.0] * 5 for _ in range(10)]
    stepped = flat + [[800.0] * 5]
    noisy = [[1000.0 * f] * 5 for f in (1.0, 1.1, 0.9, 1.05, 0.95, 1.1, 0.9, 1.0, 1.05, 0.95)]
    kw = dict(higher_is_better=True, window=3, alpha=0.05, min_effect_pct=5.0)
    assert hd.nights_test(stepped, **kw) == "regression"
    # a night 8% low when nights move by ~7% is not evidence, however many boots agree
    assert hd.nights_test(noisy + [[920.0] * 50], **kw) == "no change"
