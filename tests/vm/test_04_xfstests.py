"""Real xfstests runs (skipped, with the reason, when no xfstests source is configured).

xfstests' own selftests have fixed outcomes (pass, fail, notrun, hang), which makes them the
check that the harness maps each outcome right; generic/002 and ext4/001 / xfs/001 are real
filesystem tests on ext4 and XFS.
"""

import json

import pytest

from harness.image.xfstests import HOW_TO, configured_source
from harness.xfstests_run import run_xfstests

pytestmark = [pytest.mark.vm,
              pytest.mark.skipif(configured_source(None, None) is None,
                                 reason=f"no xfstests source configured: {HOW_TO}")]


def test_quick_tests_on_ext4_and_xfs(tmp_path):
    for section, tests in (("ext4_4k", ["generic/002", "ext4/001"]), ("xfs_4k", ["generic/002"])):
        run = run_xfstests("baseline", section, tests, disk_kind="nvme", run_dir=tmp_path / section, say=print)
        assert {r.name: r.status for r in run.results} == {t: "pass" for t in tests}, run.results
        meta = json.loads((tmp_path / section / "metadata.json").read_text())
        assert meta["status"] == "done" and meta["section"] == section
        assert (tmp_path / section / "local.config").read_text().count("[" + section + "]") == 1


def test_outcomes_and_watchdog_with_selftests(tmp_path):
    run = run_xfstests("baseline", "xfs_4k", ["selftest/002", "selftest/004", "selftest/006", "selftest/001"],
                       disk_kind="virtio", run_dir=tmp_path, say=print, default_watchdog=45)
    r = run.by_name()
    assert r["selftest/002"].status == "fail" and "intentionally broken" in (r["selftest/002"].output_diff or "")
    assert r["selftest/004"].status == "notrun" and "Always skip me" in r["selftest/004"].message
    # the hang is caught by the watchdog, evidenced, and the run carries on in a fresh VM
    assert r["selftest/006"].status == "error" and r["selftest/006"].message.startswith("hung:")
    assert list((tmp_path / "tests" / "selftest-006" / "sysrq").glob("hang-wt-*.txt"))
    assert r["selftest/001"].status == "pass"
    assert run.boots == 2 and run.hung == ["selftest/006"]
    assert (tmp_path / "tests" / "selftest-002" / "results" / "xfs_4k" / "selftest" / "002.out.bad").exists()
