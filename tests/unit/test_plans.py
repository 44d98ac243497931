"""Nightly plans: the shipped plans load; every mistake names the file and the key."""

from __future__ import annotations

import pytest

from harness.drivers.nightly.plans import list_plans, load_plan, load_plan_file
from harness.drivers.nightly.units import (
    estimate_night,
    fio_units,
    planned_units,
    xfstests_units,
)
from harness.errors import DefinitionError

GOOD = """
kernels: [patched, baseline@main]
baseline: baseline
budget_minutes: 90
fio:
  filesystems: [ext4, xfs]
  disks: [nvme]
  patterns: [unwritten-convert, append-extend]
  engines: [libaio]
  runtime: 5
  size: 32m
  repeats: 3
priorities:
  - {cells: "ext4/*/unwritten-convert/*", priority: 10}
control:
  cells: ["xfs/nvme/append-extend/libaio"]
xfstests:
  retries: 2
  sections:
    - {section: ext4_4k, tests: [generic/001, "group:quick"], priority: 5}
"""


def write(tmp_path, text, name="p.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_shipped_plans_load_and_fit_their_budget():
    assert {"default", "full"} <= set(list_plans())
    for name in ("default", "full"):
        plan = load_plan(name)
        assert plan.cells() and plan.control_cells()
        assert estimate_night(plan) < plan.budget_s, name
    assert estimate_night(load_plan("default")) > 45 * 60  # sized to use the night, not a token run


def test_plan_fields(tmp_path):
    plan = load_plan_file(write(tmp_path, GOOD))
    assert plan.kernels == ("patched", "baseline@main") and plan.baseline == "baseline"
    assert plan.budget_s == 90 * 60 and plan.retries == 2
    assert plan.priority("ext4/nvme/unwritten-convert/libaio") == 10
    assert plan.priority("xfs/nvme/append-extend/libaio") == 0
    assert plan.control_cells() == ["xfs/nvme/append-extend/libaio"]


@pytest.mark.parametrize("change, key", [
    (("budget_minutes: 90", "budget_minutes: 90\nbogus: 1"), "bogus"),
    (("kernels: [patched, baseline@main]", "kernels: [nosuchkernel]"), "kernels[0]"),
    (("kernels: [patched, baseline@main]", "kernels: [baseline@-x]"), "kernels[0]"),
    (("kernels: [patched, baseline@main]", "kernels: [baseline@a..b]"), "kernels[0]"),
    (("kernels: [patched, baseline@main]", "kernels: [../etc]"), "kernels[0]"),
    (("kernels: [patched, baseline@main]", "kernels: [baseline]"), "kernels"),
    (("filesystems: [ext4, xfs]", "filesystems: [ext4, zfs]"), "fio.filesystems[1]"),
    (("disks: [nvme]", "disks: [floppy]"), "fio.disks[0]"),
    (("disks: [nvme]", "disks: [nvme:4G]"), "fio.disks[0]"),
    (("engines: [libaio]", "engines: [posixaio]"), "fio.engines[0]"),
    (("size: 32m", "size: lots"), "fio.size"),
    (('cells: "ext4/*/unwritten-convert/*"', 'cells: "ext5/*"'), "priorities[0].cells"),
    (('cells: ["xfs/nvme/append-extend/libaio"]', 'cells: ["xfs/virtio/*"]'), "control.cells[0]"),
    (("section: ext4_4k", "section: nosuch"), "xfstests.sections[0].section"),
    (("generic/001", "generic/../x"), "xfstests.sections[0].tests[0]"),
    (("retries: 2", "retries: -1"), "xfstests.retries"),
])
def test_mistakes_name_file_and_key(tmp_path, change, key):
    path = write(tmp_path, GOOD.replace(*change))
    with pytest.raises(DefinitionError) as e:
        load_plan_file(path)
    assert e.value.path == path and e.value.key == key, str(e.value)


def test_unknown_plan_names_known_ones(tmp_path):
    with pytest.raises(DefinitionError, match="known: default"):
        load_plan("nosuch")
    with pytest.raises(DefinitionError, match="invalid plan name"):
        load_plan("..")


def test_units_are_deterministic_interleaved_and_prioritised(tmp_path):
    plan = load_plan_file(write(tmp_path, GOOD))
    units = planned_units(plan)
    assert [u.label for u in units] == [u.label for u in planned_units(load_plan_file(write(tmp_path, GOOD)))]
    assert len({u.label for u in units}) == len(units)
    # the priority-10 tier first, run index by run index, base / each kernel / control interleaved
    first = [u for u in units if u.priority == 10]
    assert units[:len(first)] == first
    assert [(u.run_index, u.role, u.kref) for u in first[:3]] == [(0, "base", "baseline"), (0, "new", "patched"),
                                                                    (0, "new", "baseline@main")]
    assert all(u.cells == ("ext4/nvme/unwritten-convert/libaio",) for u in first)
    control = [u for u in fio_units(plan) if u.role == "control"]
    assert len(control) == 3 and all(u.cells == ("xfs/nvme/append-extend/libaio",) for u in control)
    # xfstests (priority 5) between the tiers; retries only for what failed
    xs = [u for u in units if u.kind == "xfstests"]
    assert units.index(xs[0]) == len(first) and len(xs) == 3
    retry = xfstests_units(plan, 1, {xs[1].label: ("generic/001",)})
    assert [(u.label, u.tests) for u in retry] == [(xs[1].label.replace("-a0", "-a1"), ("generic/001",))]


def test_budget_scales_estimates_by_what_units_really_took():
    from harness.drivers.nightly.units import Budget
    b = Budget(100.0, spent_s=40.0)
    assert b.fits(50) and not b.fits(70)
    b.observe(20, 40)                         # too few seconds observed to trust a ratio yet
    assert b.ratio == 1.0
    b.observe(20, 40)
    assert b.ratio == 2.0 and not b.fits(35)  # 40 spent + 35 * 2 > 100


def test_night_id_resumes_the_unfinished_night(tmp_path):
    from harness.drivers.nightly.book import NightlyDB
    from harness.drivers.nightly.night import choose_night
    plan = load_plan_file(write(tmp_path, GOOD, "nightlytest.yaml"))
    with NightlyDB(tmp_path / "n.sqlite") as db:
        first = choose_night(db, plan, None)
        assert first.startswith("nightlytest-")
        db.start(first, plan.name, "x", {})
        assert choose_night(db, plan, None) == first          # killed: the same night again
        db.finish(first, "done", "good", 0, "")
        assert choose_night(db, plan, None) == f"{first}-2"   # finished: a new night
        assert choose_night(db, plan, "n7") == "n7"
        with pytest.raises(Exception, match="night id"):
            choose_night(db, plan, "../x")


def test_nightly_plan_command_prints_the_estimate(capsys):
    from harness.cli import main
    assert main(["nightly", "plan", "default"]) == 0
    out = capsys.readouterr().out
    assert "nightly-fio-p30-r0-base-nvme" in out and "budget 120 min" in out


def test_two_nights_never_overlap(tmp_path, monkeypatch):
    from harness.drivers.nightly.book import NightlyDB
    from harness.drivers.nightly.night import lock_path, run_night
    from harness.errors import LockTimeout
    from harness.util import file_lock
    monkeypatch.setenv("KHARNESS_CACHE", str(tmp_path / "cache"))
    plan = load_plan_file(write(tmp_path, GOOD))
    with file_lock(lock_path()), NightlyDB(tmp_path / "n.sqlite") as db:
        with pytest.raises(LockTimeout, match="nightly.lock"):
            run_night(plan, tmp_path / "nights", None, db, wait=0.2)  # type: ignore[arg-type]
        assert db.nights() == []  # nothing started
