"""A night folded from a synthetic results store (two nights of a small plan), its KCIDB v5 export
validated with kcidb-io, and the resume rules (what a unit still has to do; an interrupted boot
recorded from its run directory)."""

from __future__ import annotations

import json

import pytest

from harness.drivers.nightly.book import NightlyDB
from harness.drivers.nightly.fold import fold_night, group_of
from harness.drivers.nightly.kcidb import KcidbError, night_kcidb, validate
from harness.drivers.nightly.plans import load_plan_file
from harness.drivers.nightly.units import (
    INTERRUPTED,
    pending,
    planned_units,
    recover_orphans,
    runs_by_label,
)
from harness.results.store import Store
from tests.helpers import nights
from tests.helpers.nights import CELL, COMMITS, PLAN, night_record

two_nights = nights.two_nights  # the shared fixture (tests/helpers/nights.py)


def test_second_night_flags_the_step_against_history_and_baseline(two_nights):
    plan, store, db, res1 = two_nights
    assert res1.verdict == "good" and not res1.regressions
    res = fold_night(store, db, plan, "n2", COMMITS[2])
    assert res.exit_code == 1
    (reg,) = [r for r in res.regressions if r.metric == "IOPS"]
    assert reg.cell == CELL and reg.history.method == "last-good" and reg.history.reference == "n1"
    assert reg.history.verdict == reg.baseline.verdict == "regression" and reg.history.pct < -70
    assert reg.bisect == f"kharness bisect --kernel baseline --good {'a' * 40} --bad {'b' * 40} --check fio:{CELL}"
    assert reg.reproduce.startswith("kharness reproduce n2-") and reg.reproduce.endswith(f"--cell {CELL}")
    assert [n for n, _ in reg.series] == ["n1", "n2"]
    assert all(not d.flagged for _, _, d in res.control)
    doc = night_kcidb(res, store)
    assert doc["version"]["major"] == 5
    assert {c["git_commit_hash"] for c in doc["checkouts"]} == {"a" * 40, "b" * 40}
    fail = [t for t in doc["tests"] if t["status"] == "FAIL"]
    assert fail and all(t["path"].startswith("kharness.fio.ext4.nvme.unwritten-convert.libaio") for t in fail)


def test_invalid_kcidb_names_the_key():
    with pytest.raises(KcidbError, match="checkouts/0"):
        validate({"version": {"major": 5, "minor": 3}, "checkouts": [{"id": "no-origin-colon"}]})


def test_pending_and_recovery_of_an_interrupted_boot(two_nights, tmp_path):
    plan, store, _db, _ = two_nights
    unit = planned_units(plan)[0]
    runs = runs_by_label(store, group_of("n2"))
    assert pending(unit, runs[unit.label]) == []                  # recorded with nothing remaining
    assert pending(unit, []) == [CELL]                            # never started
    # A boot killed after its measurement: spec.json and measurements.jsonl, no record.json.
    from harness.run.plan import fio_cell
    from harness.run.spec import FioWorkload, ImageSpec, KernelSpec, RunSpec
    d = tmp_path / "night" / "runs" / "20261129-020000-nightly-x-ab12"
    d.mkdir(parents=True)
    cells_ = (fio_cell("ext4", "nvme", "unwritten-convert", "libaio"),
              fio_cell("ext4", "nvme", "append-extend", "libaio"))
    spec = RunSpec(label="nightly-x",
                   kernel=KernelSpec("baseline", "f" * 24, "src", "a" * 40, "a" * 40, "6.1", "defconfig", "h"),
                   image=ImageSpec("debian-bookworm", "e" * 20), accel="tcg", disks=(),
                   workload=FioWorkload(cells=cells_))
    spec.write(d)
    cells = [c.id for c in spec.workload.cells]
    m = {"cell": cells[0], "fs": "ext4", "disk": "nvme", "pattern": "p", "engine": "libaio", "run_index": 0,
         "status": "ok", "iops": 1.0}
    (d / "measurements.jsonl").write_text(json.dumps(m) + "\n" + '{"cell": "trunc')
    assert recover_orphans(d.parent, store, group_of("n2"), lambda s: None) == [d.name]
    row = store.run(d.name)
    assert row.status == "error" and row.record["failures"] == [INTERRUPTED]
    assert row.record["remaining"] == cells[1:]
    assert [x.cell for x in store.measurements([d.name])] == cells[:1]
    assert recover_orphans(d.parent, store, group_of("n2"), lambda s: None) == []   # once only


def test_xfstests_new_failure_flaky_and_rates(tmp_path):
    from harness.drivers.nightly.units import xfstests_units
    p = tmp_path / "x.yaml"
    p.write_text(PLAN.replace("control:", "xfstests: {retries: 2, sections: [{section: ext4_4k, tests: "
                                          "[generic/001, generic/002]}]}\ncontrol:"))
    plan = load_plan_file(p)
    store, db = Store(tmp_path / "s.sqlite"), NightlyDB(tmp_path / "n.sqlite")

    def xrec(night, unit, results, commit):
        r = night_record(f"{night}-{unit.label}", night, unit.label, unit.role, 1.0, root=tmp_path, commit=commit)
        r["measurements"], r["spec"]["workload"] = [], {"kind": "xfstests"}
        r["xfstests"] = [{"section": "ext4_4k", "test": t, "status": s, "message": "mismatch" if s == "fail" else None}
                         for t, s in results]
        return r

    outcomes = {  # night -> (role tag, attempt) -> results
        "n1": {("base", 0): [("generic/001", "pass"), ("generic/002", "pass")],
               ("new0", 0): [("generic/001", "pass"), ("generic/002", "pass")]},
        "n2": {("base", 0): [("generic/001", "pass"), ("generic/002", "pass")],
               ("new0", 0): [("generic/001", "fail"), ("generic/002", "fail")],
               ("new0", 1): [("generic/001", "fail"), ("generic/002", "pass")],
               ("new0", 2): [("generic/001", "fail"), ("generic/002", "fail")]}}
    for i, night in ((1, "n1"), (2, "n2")):
        db.start(night, plan.name, "sha", COMMITS[i])
        failed = {u.label: ("generic/001", "generic/002") for u in xfstests_units(plan) if "new0" in u.label}
        units = xfstests_units(plan) + [u for a in (1, 2) for u in xfstests_units(plan, a, failed)]
        db.record_units(night, {u.label: u.info() for u in units})
        for u in units:
            tag = u.label.split("-")[-2]
            if (tag, u.attempt) in outcomes[night]:
                store.add_run(xrec(night, u, outcomes[night][(tag, u.attempt)], COMMITS[i][u.kref]))
        res = fold_night(store, db, plan, night, COMMITS[i])
        db.finish(night, "done", res.verdict, res.exit_code, "")
    cats = {d.test: (d.category, d.tonight) for d in res.xfstests["baseline@next"]}
    assert cats == {"generic/001": ("new failure", "fails 3/3"), "generic/002": ("flaky", "flaky 2/3")}
    assert res.exit_code == 1 and [d.test for d in res.new_failures] == ["generic/001"]
    assert res.xfstests_bisect[("baseline@next", "ext4_4k", "generic/001")] == (
        f"kharness bisect --kernel baseline --good {'a' * 40} --bad {'b' * 40} --check xfstests:generic/001@ext4_4k")
    rates = {r.test: r for r in db.flaky_rates(plan.name)}
    assert rates["generic/002"].flaky_nights == 1 and rates["generic/002"].failures == 2
    validate(night_kcidb(res, store))
    store.close()
