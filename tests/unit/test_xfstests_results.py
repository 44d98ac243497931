"""xfstests results (harness.workloads.xfstests_results): xunit, check.log, check.time,
artifacts and comparison.

Fixtures in tests/fixtures/xfstests: ``synth-*`` are written by hand in the exact format of
fstests' common/report and check; ``captured-*`` come from real runs. Every ``*result.xml`` there
must satisfy the invariants checked by ``test_xunit_fixture_invariants``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness.config.fstests import TEST_NAME
from harness.errors import HarnessError
from harness.workloads.xfstests_results import (
    STATUSES,
    TestResult,
    attach_artifacts,
    collect_artifacts,
    compare_runs,
    parse_check_log,
    parse_check_time,
    parse_xunit,
    parse_xunit_properties,
    watchdog_seconds,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "xfstests"
XUNIT_FIXTURES = sorted(FIXTURES.glob("*.xml"))


# ---------------------------------------------------------------------------------------------
# xunit


def test_parse_xunit_synth_ext4():
    results = parse_xunit((FIXTURES / "synth-ext4_4k-result.xml").read_text())
    by = {r.name: r for r in results}
    assert [r.name for r in results] == ["generic/001", "generic/013", "generic/042",
                                         "generic/475", "generic/476", "generic/500"]
    assert {r.section for r in results} == {"ext4_4k"}
    assert (by["generic/001"].status, by["generic/001"].duration_s) == ("pass", 5.0)
    assert by["generic/001"].message == "" and by["generic/001"].output_diff is None

    f = by["generic/013"]
    assert f.status == "fail" and f.duration_s == 21.0
    assert f.message == "- output mismatch (see /var/lib/xfstests/results//ext4_4k/generic/013.out.bad)"
    assert f.output_diff.startswith("--- tests/generic/013.out")
    assert "+fsstress: check_cwd failure" in f.output_diff
    assert f.full.startswith("QA output created by 013") and f.dmesg is None

    d = by["generic/475"]
    assert d.status == "fail" and d.message.startswith("_check_dmesg: something found in dmesg")
    assert "WARNING: CPU: 1 PID: 4711 at fs/ext4/inode.c:3927" in d.dmesg
    assert d.output_diff is None

    n = by["generic/042"]
    assert n.status == "notrun"
    assert n.message == "Reflink not supported by scratch filesystem type: ext4"
    assert (by["generic/500"].status, by["generic/500"].message) == ("notrun", "")


def test_parse_xunit_repairs_unescaped_failure_message():
    results = parse_xunit((FIXTURES / "synth-xfs_4k-unescaped-result.xml").read_text(), "xfs_4k")
    by = {r.name: r for r in results}
    assert by["xfs/104"].status == "fail"
    assert by["xfs/104"].message == ('xfs_repair failed, err=1 <see '
                                     '/var/lib/xfstests/results//xfs_4k/xfs/104.full> & "check"')
    assert by["xfs/999"].message == "not suitable for this filesystem type: xfs & friends"


def test_parse_xunit_error_and_edge_cases():
    xml = ('<?xml version="1.0" encoding="UTF-8"?>\n<testsuite name="xfstests" failures="0" '
           'skipped="0" tests="2" time="">\n'
           '\t<testcase classname="xfstests.s1" name="generic/001" time="">\n'
           '\t\t<failure message="Unknown test_status=weird" type="TestFail"/>\n\t</testcase>\n'
           '\t<testcase classname="xfstests.s1" name="generic/002" time="2">\n'
           '\t\t<error message="boom"/>\n\t</testcase>\n</testsuite>\n')
    r1, r2 = parse_xunit(xml, section="override")
    assert (r1.status, r1.duration_s, r1.section) == ("error", None, "override")
    assert (r2.status, r2.message) == ("error", "boom")
    with pytest.raises(HarnessError):
        parse_xunit("")
    with pytest.raises(HarnessError):
        parse_xunit("<testsuite><testcase name='generic/001'>")
    with pytest.raises(HarnessError):
        parse_xunit("<html/>")


def test_parse_xunit_properties():
    props = parse_xunit_properties((FIXTURES / "synth-ext4_4k-result.xml").read_text())
    assert props["KERNEL"] == "6.1.192-g1748276115c8"
    assert props["SECTION"] == "ext4_4k" and props["MKFS_OPTIONS"] == "-b 4096"


@pytest.mark.parametrize("path", XUNIT_FIXTURES, ids=lambda p: p.name)
def test_xunit_fixture_invariants(path):
    """What check's xunit report guarantees: one <testcase> per tried (non-expunged) test,
    failures/skipped counts match, names are <dir>/<test>, classname is xfstests.<section>."""
    import xml.etree.ElementTree as ET

    results = parse_xunit(path.read_text())
    assert results, "no testcases"
    root = None
    try:
        root = ET.fromstring(path.read_text())
    except ET.ParseError:
        pass  # an unescaped failure message; parse_xunit repaired it
    for r in results:
        assert r.status in STATUSES
        assert TEST_NAME.match(r.name), r.name
        assert r.section and re.fullmatch(r"[A-Za-z0-9_]+", r.section)
        assert r.duration_s is None or r.duration_s >= 0
        assert isinstance(r.message, str)
        if r.status == "pass":
            assert r.output_diff is None and r.message == ""
        if r.status == "notrun":
            assert r.output_diff is None
    names = [r.name for r in results]
    assert len(names) == len(set(names)), "a test reported twice"
    assert len({r.section for r in results}) == 1
    if root is not None:
        assert int(root.get("tests")) == len(results)
        assert int(root.get("failures")) == sum(r.status == "fail" for r in results)
        assert int(root.get("skipped")) == sum(r.status == "notrun" for r in results)


# ---------------------------------------------------------------------------------------------
# check.log, check.time, artifacts


def test_parse_check_log():
    runs = parse_check_log((FIXTURES / "synth-ext4_4k-check.log").read_text())
    assert len(runs) == 3
    first, second, third = runs
    assert first.passed_all and first.total == 2 and first.ran == ["generic/001", "generic/002"]
    assert first.kernel == "6.1.192-g1748276115c8" and first.date == "Fri Nov 28 16:58:02 UTC 2025"
    assert second.ran == ["generic/001", "generic/013", "generic/042", "generic/475",
                          "generic/476", "generic/500"]
    assert second.not_run == ["generic/042", "generic/500"]
    assert second.failures == ["generic/013", "generic/475"]
    assert (second.failed_count, second.total, second.passed_all) == (2, 6, False)
    assert not second.interrupted and third.interrupted
    assert third.failures == ["generic/013"]


def test_parse_check_log_without_header():
    runs = parse_check_log("Ran: generic/001\nPassed all 1 tests\nRan: generic/002\n")
    assert [r.ran for r in runs] == [["generic/001"], ["generic/002"]]
    assert runs[0].passed_all and runs[1].total is None and not runs[1].passed_all


def test_parse_check_time_and_watchdog():
    times = parse_check_time((FIXTURES / "synth-ext4_4k-check.time").read_text()
                             + "garbage\ngeneric/003 x\n\n")
    assert times == {"generic/001": 5.0, "generic/002": 3.0, "generic/013": 21.0,
                     "generic/475": 93.0, "generic/476": 88.0}
    assert watchdog_seconds("generic/001", times) == 120.0          # 5 x 5 < minimum
    assert watchdog_seconds("generic/475", times) == 465.0          # 5 x 93
    assert watchdog_seconds("generic/999", times) == 1800.0         # unknown: default
    assert watchdog_seconds("generic/476", times, factor=2, minimum=10) == 176.0
    assert watchdog_seconds("generic/999", times, default=600) == 600.0


@pytest.mark.parametrize("bad", ["inf", "Infinity", "nan", "-5", "-inf", "1e999"])
def test_non_finite_or_negative_check_time_gets_the_default_watchdog(bad):
    """"generic/001 inf" used to give generic/001 an infinite watchdog (no watchdog at all)."""
    times = parse_check_time(f"generic/001 {bad}\ngeneric/002 3\n")
    assert times == {"generic/002": 3.0}
    assert watchdog_seconds("generic/001", times) == 1800.0
    assert watchdog_seconds("generic/001", times, default=600) == 600.0
    # a caller-built table with such a value gets the default too
    assert watchdog_seconds("generic/001", {"generic/001": float(bad)}, default=60) == 60.0


def test_watchdog_that_overflows_gets_the_default():
    """Found by test_props_workloads: 5 x 1e308 is inf, which was no watchdog."""
    times = parse_check_time("generic/001 1e308\n")
    assert times == {"generic/001": 1e308}
    assert watchdog_seconds("generic/001", times) == 1800.0


def test_non_finite_xunit_time_is_no_duration():
    xml = (FIXTURES / "synth-ext4_4k-result.xml").read_text()
    first = re.search(r'<testcase [^>]*time="([^"]*)"', xml)
    assert first
    for bad in ("inf", "nan", "-3"):
        doctored = xml[:first.start(1)] + bad + xml[first.end(1):]
        assert parse_xunit(doctored)[0].duration_s is None
    assert parse_xunit(xml)[0].duration_s is not None


def test_xunit_with_a_lone_surrogate_parses():
    """Found by test_props_workloads: text read with surrogateescape raised UnicodeEncodeError."""
    xml = (FIXTURES / "synth-ext4_4k-result.xml").read_text()
    doctored = xml.replace("<testcase ", "<testcase x=\"\udcff\" ", 1)
    assert [r.name for r in parse_xunit(doctored)] == [r.name for r in parse_xunit(xml)]
    with pytest.raises(HarnessError):
        parse_xunit("\udcff")


def test_check_log_with_a_5000_digit_count_is_not_a_summary_line():
    """int() refuses more than 4300 digits: this raised ValueError."""
    runs = parse_check_log("Ran: generic/001\nFailed " + "9" * 5000 + " of 2 tests\n")
    assert runs[0].ran == ["generic/001"] and runs[0].failed_count is None


def make_results_dir(tmp_path: Path) -> Path:
    base = tmp_path / "results"
    g = base / "ext4_4k" / "generic"
    g.mkdir(parents=True)
    (g / "013.out.bad").write_text("QA output created by 013\nfsstress: check_cwd failure\n")
    (g / "013.full").write_text("full log of 013\n")
    (g / "475.dmesg").write_text("[  641.9] WARNING: CPU: 1 PID: 4711\n")
    (g / "475.full").write_text("x" * 5000)
    (g / "042.notrun").write_text("Reflink not supported\n")
    (g / "013.out.bad.rerun0").write_text("ignored")
    (base / "ext4_4k" / "result.xml").write_text("<testsuite/>")
    (base / "ext4_4k" / "check.log").write_text("")
    (base / "xfs_4k" / "xfs").mkdir(parents=True)
    (base / "xfs_4k" / "xfs" / "104.full").write_text("other section")
    return base


def test_collect_artifacts(tmp_path):
    base = make_results_dir(tmp_path)
    arts = collect_artifacts(base, "ext4_4k")
    assert set(arts) == {"generic/013", "generic/475", "generic/042"}
    assert set(arts["generic/013"]) == {"out.bad", "full"}
    assert arts["generic/475"]["dmesg"].name == "475.dmesg"
    assert arts["generic/042"] == {"notrun": base / "ext4_4k" / "generic" / "042.notrun"}
    assert collect_artifacts(base, "missing") == {}
    assert set(collect_artifacts(base / "xfs_4k", "")) == {"xfs/104"}


def test_attach_artifacts(tmp_path):
    base = make_results_dir(tmp_path)
    tests_dir = tmp_path / "tests"
    (tests_dir / "generic").mkdir(parents=True)
    (tests_dir / "generic" / "013.out").write_text("QA output created by 013\n")
    results = [TestResult("generic/013", "fail", 21.0, "- output mismatch", section="ext4_4k"),
               TestResult("generic/475", "fail", 93.0, "dmesg", dmesg="from xunit",
                          section="ext4_4k"),
               TestResult("generic/042", "notrun", 1.0, "", section="ext4_4k"),
               TestResult("generic/001", "pass", 5.0, section="ext4_4k")]
    attach_artifacts(results, collect_artifacts(base, "ext4_4k"), tests_dir=tests_dir, limit=1000)
    r013, r475, r042, r001 = results
    assert "+fsstress: check_cwd failure" in r013.output_diff
    assert r013.output_diff.startswith("---") and r013.full == "full log of 013\n"
    assert r475.dmesg == "from xunit"  # what the report carried wins
    assert r475.full.startswith("[... 4000 characters cut ...]") and r475.full.endswith("x" * 1000)
    assert r042.message == "Reflink not supported"
    assert (r001.output_diff, r001.dmesg, r001.full) == (None, None, None)
    # Without the expected output the raw .out.bad text is kept under a note.
    r = attach_artifacts([TestResult("generic/013", "fail", 1.0)],
                         collect_artifacts(base, "ext4_4k"))[0]
    assert r.output_diff.startswith("(expected output unavailable")
    assert "fsstress: check_cwd failure" in r.output_diff


# ---------------------------------------------------------------------------------------------
# Comparison


def tr(name: str, status: str) -> TestResult:
    return TestResult(name, status, 1.0, section="ext4_4k")


def test_compare_runs():
    base = [tr("generic/001", "pass"), tr("generic/002", "pass"), tr("generic/003", "fail"),
            tr("generic/004", "fail"), tr("generic/005", "notrun"), tr("generic/006", "pass"),
            tr("generic/007", "error"), tr("generic/008", "pass")]
    new = [tr("generic/001", "pass"), tr("generic/002", "fail"), tr("generic/003", "fail"),
           tr("generic/004", "pass"), tr("generic/005", "pass"), tr("generic/006", "notrun"),
           tr("generic/007", "fail"), tr("generic/009", "error"), tr("generic/010", "error")]
    new[-1] = tr("generic/008", "error")
    c = compare_runs(base, new)
    assert c.new_failures == ["generic/002", "generic/008"]
    assert c.shared_failures == ["generic/003", "generic/007"]
    assert c.fixed == ["generic/004"]
    assert [(x.test, x.base, x.new) for x in c.notrun_changes] == [
        ("generic/005", "notrun", "pass"), ("generic/006", "pass", "notrun")]
    assert c.only_new == ["generic/009"] and c.only_base == []
    assert c.regressed
    assert not compare_runs(base, base).regressed


def test_compare_runs_with_parsed_fixture():
    results = parse_xunit((FIXTURES / "synth-ext4_4k-result.xml").read_text())
    base = [TestResult(r.name, "pass" if r.status == "fail" else r.status, r.duration_s,
                       section=r.section) for r in results]
    c = compare_runs(base, results)
    assert c.new_failures == ["generic/013", "generic/475"] and not c.fixed
    assert compare_runs(results, base).fixed == ["generic/013", "generic/475"]


def test_compare_runs_refuses_mixed_sections():
    with pytest.raises(HarnessError):
        compare_runs([tr("generic/001", "pass"),
                      TestResult("generic/001", "pass", 1.0, section="xfs_4k")], [])


# -- real results captured from the harness's own runs (6.1.192 guest, xfstests 63a29724) ----------
CAPTURED = Path(__file__).resolve().parents[1] / "fixtures" / "xfstests"


def test_captured_pass_fail_notrun():
    (p,) = parse_xunit((CAPTURED / "captured-6.1.192-ext4_4k-generic-001-result.xml").read_text(), "ext4_4k")
    assert (p.name, p.status) == ("generic/001", "pass") and p.duration_s > 0
    (f,) = parse_xunit((CAPTURED / "captured-6.1.192-xfs_4k-selftest-002-result.xml").read_text(), "xfs_4k")
    assert (f.name, f.status) == ("selftest/002", "fail") and "output mismatch" in f.message
    (n,) = parse_xunit((CAPTURED / "captured-6.1.192-xfs_4k-selftest-004-result.xml").read_text(), "xfs_4k")
    assert (n.name, n.status) == ("selftest/004", "notrun") and "Always skip me" in n.message


def test_captured_check_log_and_time():
    runs = parse_check_log((CAPTURED / "captured-6.1.192-ext4_4k-check.log").read_text())
    assert runs and runs[-1].kernel and runs[-1].kernel.startswith("6.1.192")
    times = parse_check_time((CAPTURED / "captured-6.1.192-check.time").read_text())
    assert times.get("generic/001", 0) > 10
    assert watchdog_seconds("generic/001", times) >= 5 * times["generic/001"]
