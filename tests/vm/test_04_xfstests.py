"""Real xfstests runs (skipped, with the reason, when no xfstests source is configured).

xfstests' own selftests have fixed outcomes (pass, fail, notrun, hang), which makes them the
check that the harness maps each outcome right; generic/002 and ext4/001 are real filesystem
tests on ext4 and XFS. A recorded test is then reproduced from its run directory.
"""

import json
from pathlib import Path

import pytest

from harness.drivers.reproduce import reproduce
from harness.executors.base import RunContext
from harness.executors.local import execute
from harness.image.xfstests import HOW_TO, configured_source, resolve
from harness.run.plan import xfstests_spec
from harness.run.testbed import XFSTESTS_IMAGE, Testbed

pytestmark = [pytest.mark.vm,
              pytest.mark.skipif(configured_source(None, None) is None,
                                 reason=f"no xfstests source configured: {HOW_TO}")]


@pytest.fixture(scope="module")
def xbed():
    return Testbed(["baseline"], image=XFSTESTS_IMAGE).prepare()


def run_tests(bed, section, tests, root, disk_kind="virtio", watchdog=1800.0):
    src = resolve(*configured_source(None, None)).tree
    spec = xfstests_spec(bed, "baseline", section, tests, disk_kind=disk_kind,
                         label=f"xfstests-baseline-{section}", default_watchdog_s=watchdog)
    return execute([spec], RunContext(root, tests_source=src))


def test_quick_tests_on_ext4_and_xfs_and_reproduce_one(xbed, tmp_path):
    for section, tests in (("ext4_4k", ["generic/002", "ext4/001"]), ("xfs_4k", ["generic/002"])):
        (rec,) = run_tests(xbed, section, tests, tmp_path / section, disk_kind="nvme")
        assert {r.test: r.status for r in rec.xfstests} == {t: "pass" for t in tests}, rec.xfstests
        run_dir = Path(rec.run_dir)
        meta = json.loads((run_dir / "metadata.json").read_text())
        assert meta["status"] == "done" and rec.spec.workload.section == section
        assert (run_dir / "local.config").read_text().count("[" + section + "]") == 1
        assert json.loads((run_dir / "spec.json").read_text())["workload"]["tests"] == tests
    # reproduce one test of the last run from its run directory
    recorded, (again,) = reproduce(str(run_dir), tmp_path / "repro", cell="generic/002", say=print,
                                   tests_source=resolve(*configured_source(None, None)).tree)
    assert again.reproduces == recorded.run_id and again.spec.workload.tests == ("generic/002",)
    assert [(r.test, r.status) for r in again.xfstests] == [("generic/002", "pass")]


def test_outcomes_and_watchdog_with_selftests(xbed, tmp_path):
    """Outcomes map right, and only the hanging selftest hits its watchdog, whatever the machine's
    speed: the watchdog is scaled by the speed measured in the guest (boot and mkfs time)."""
    recs = run_tests(xbed, "xfs_4k", ["selftest/002", "selftest/004", "selftest/006", "selftest/001"],
                     tmp_path, watchdog=45)
    r = {x.test: x for rec in recs for x in rec.xfstests}
    assert r["selftest/002"].status == "fail" and "intentionally broken" in (r["selftest/002"].output_diff or "")
    assert r["selftest/004"].status == "notrun" and "Always skip me" in r["selftest/004"].message
    # the hang is caught by the watchdog, evidenced, and the run carries on in a fresh boot
    assert r["selftest/006"].status == "error" and r["selftest/006"].message.startswith("hung:")
    assert [rec.status for rec in recs] == ["hang", "done"]
    hung_dir = Path(recs[0].run_dir)
    assert list((hung_dir / "tests" / "selftest-006" / "sysrq").glob("hang-*-wt-*.txt"))
    assert r["selftest/001"].status == "pass"
    assert recs[1].spec.workload.tests == ("selftest/001",) and recs[1].run_dir != recs[0].run_dir
    assert (hung_dir / "tests" / "selftest-002" / "results" / "xfs_4k" / "selftest" / "002.out.bad").exists()
    assert "Linux version" in (hung_dir / "console.log").read_text()  # the hung boot's console is kept
