"""Boot records: their JSON form goes into the real results store unchanged, and the matrix folds
records (not shared state) into per-cell comparisons."""

import dataclasses
import json
from pathlib import Path

from harness.evidence.events import Event
from harness.results.rundir import new_run_dir
from harness.results.store import Store
from harness.run.matrix import MatrixRun, cells, make_profile
from harness.run.records import BootRecord, EvidenceRef, MeasurementRecord, XfstestRecord
from harness.run.spec import spec_from_json

from .test_spec import fio_spec


def record(spec, run_id="r1", role=None, iops=(1000.0,), status="done", cell=None, run_index=0):
    cell = cell or spec.workload.cells[0].id
    fs, disk, pattern, engine = cell.split("/")
    ms = tuple(MeasurementRecord(cell, fs, disk, pattern, engine, run_index + i, "ok", iops=v, bw_kib_s=v * 4,
                                 clat_p50_us=100.0, clat_p99_us=1e6 / v, clat_p999_us=2e6 / v, fio_json=f"fio/{i}.json")
               for i, v in enumerate(iops))
    return BootRecord(run_id=run_id, run_dir=f"/tmp/{run_id}", spec=dataclasses.replace(spec, role=role,
                      run_index=run_index), status=status, started="2026-11-29T18:00:00+0000",
                      finished="2026-11-29T18:01:00+0000", boot_seconds=7.5, measurements=ms,
                      xfstests=(XfstestRecord("xfs_4k", "generic/001", "pass", 3.0),),
                      events=(Event("hung_task", "INFO: task hung in jbd2_log_wait_commit", 10, "INFO: task"),),
                      evidence=(EvidenceRef("sysrq/hang-x-wt-1.txt", "sysrq"),), failures=("x",),
                      sysrq_summary=("dio-sync: active 1/1",), group="g1", front_end="pytest")


def test_record_json_is_what_the_store_takes(tmp_path):
    spec = fio_spec()
    rec = record(spec, iops=(1000.0, 1100.0))
    data = json.loads(json.dumps(rec.to_json()))
    assert spec_from_json(data["spec"]) == spec
    with Store(tmp_path / "s.sqlite") as store:
        assert store.add_run(data) == "r1"
        row = store.run("r1")
        assert (row.kernel, row.kernel_key, row.image_key, row.accel, row.workload) == (
            "patched", "k" * 24, "i" * 20, "tcg", "fio")
        assert row.group == "g1" and row.front_end == "pytest" and row.boot_seconds == 7.5
        assert [m.iops for m in store.measurements(["r1"])] == [1000.0, 1100.0]
        assert [x.test for x in store.xfstests(["r1"])] == ["generic/001"]
        assert [e.kind for e in store.events(["r1"])] == ["hung_task"]
        assert [e.path for e in store.evidence(["r1"])] == ["sysrq/hang-x-wt-1.txt"]
        store.add_run(data)  # recorded twice (a retried unit): nothing duplicated
        assert len(store.measurements(["r1"])) == 2


def test_new_run_dir_is_always_fresh(tmp_path):
    a, b = new_run_dir(tmp_path, "fio/ext4 x"), new_run_dir(tmp_path, "fio/ext4 x")
    assert a != b and a.parent == b.parent == tmp_path
    assert "/" not in a.name[len("YYYYmmdd-HHMMSS-"):] and " " not in a.name


def test_matrix_folds_records_into_comparisons(tmp_path):
    profile = make_profile("quick", filesystems=["ext4"])
    m = MatrixRun.__new__(MatrixRun)  # no testbed: fold only needs the outcomes
    m.kernel, m.baseline, m.profile, m.results = "patched", "baseline", profile, tmp_path
    from harness.run.matrix import CellOutcome
    m.outcomes = {c.id: CellOutcome(c) for c in cells(profile)}
    m.records, m.events, m.consoles = [], {"baseline": [], "patched": []}, {"baseline": [], "patched": []}
    spec = fio_spec()
    target = "ext4/nvme/unwritten-convert/libaio"
    for i, (b, n) in enumerate([(2000, 600), (2100, 560), (1950, 580), (2050, 590), (2020, 610)]):
        m.fold(record(dataclasses.replace(spec, kernel=dataclasses.replace(spec.kernel, name="baseline")),
                      f"b{i}", "base", (b,), cell=target, run_index=i))
        m.fold(record(spec, f"n{i}", "new", (n,), cell=target, run_index=i))
    o = m.outcomes[target]
    assert len(o.base) == len(o.new) == 5
    (iops, p99) = o.comparisons()
    assert iops.verdict == "regression" and iops.pct_change < -60
    assert p99.verdict == "regression"
    rows = m.rows()
    assert any(r["cell"] == target and r["metric"] == "IOPS" and r["verdict"] == "regression" for r in rows)
    assert len(m.events["patched"]) == 5 and m.consoles["baseline"][0] == str(Path("/tmp/b0/console.log"))


def test_a_failed_boot_fails_what_it_left_undone(tmp_path):
    profile = make_profile("quick", filesystems=["ext4"])
    m = MatrixRun.__new__(MatrixRun)
    m.kernel, m.baseline, m.profile, m.results = "patched", "baseline", profile, tmp_path
    from harness.run.matrix import CellOutcome
    m.outcomes = {c.id: CellOutcome(c) for c in cells(profile)}
    m.records, m.events, m.consoles = [], {"baseline": [], "patched": []}, {"baseline": [], "patched": []}
    spec = fio_spec()
    rec = dataclasses.replace(record(spec, "n0", "new", ()), status="boot-failed",
                              failures=("guest kernel panicked during boot: Kernel panic",),
                              remaining=tuple(m.outcomes))
    m.fold(rec)
    assert all("boot-failed: guest kernel panicked" in o.failures[0] for o in m.outcomes.values())
