"""The plain-text report of a try (harness.drivers.series.text): numbers with intervals, sysrq
lines, how to reproduce, and a Tested-by only when nothing regressed."""

from harness.drivers.series.text import ReportInput, render


def row(cell, verdict, pct, metric="iops"):
    return {"cell": cell, "metric": metric, "verdict": verdict, "base_median": 2021.0, "new_median": 572.0,
            "pct_change": pct, "q_value": 0.004, "ci_low": -75.0, "ci_high": -68.0, "ci_confidence": 0.95,
            "n_base": 5, "n_new": 5, "gates": True}


def report(rows, failures=None, xfs=()):
    return render(ReportInput(
        "fs: direct-io: dio-sync", "dio.mbox", 1, "dio-sync", "baseline",
        {"dio-sync": "abc123", "baseline": "def456"}, "tcg", rows,
        {"ext4/nvme/unwritten-convert/libaio": ["dio-sync: active 1/1, 30 inactive iomap_dio_complete_work"]},
        failures or {}, ["touches sb_init_dio_done_wq in fs/direct-io.c: ..."], ["ext4_4k:generic/091"], list(xfs),
        "", ["kharness try dio.mbox"], tester="kharness <kharness@localhost>"))


def test_a_regression_with_numbers_interval_and_evidence_and_no_trailer():
    text = report([row("ext4/nvme/unwritten-convert/libaio", "regression", -71.7),
                   row("xfs/nvme/append-extend/libaio", "no change", 1.0)])
    assert "ext4/nvme/unwritten-convert/libaio iops: 2021 -> 572 (-71.7%, 95% interval -75%..-68%, q=0.004" in text
    assert "sysrq: dio-sync: active 1/1" in text
    assert "Regressions (1 comparison(s) in 1 cell(s)):" in text
    assert "dio-sync (abc123) against baseline (def456)" in text
    assert "Reproduce:\n  kharness try dio.mbox" in text
    assert "Tested-by" not in text


def test_evidence_once_per_cell_whatever_the_metrics():
    cell = "ext4/nvme/unwritten-convert/libaio"
    text = report([row(cell, "regression", -71.7), row(cell, "regression", 150.0, metric="p99 latency")])
    assert text.count("sysrq: dio-sync") == 1 and "2 comparison(s) in 1 cell(s)" in text


def test_nothing_regressed_gives_a_trailer():
    text = report([row("xfs/nvme/append-extend/libaio", "no change", 1.0)])
    assert "No regression found." in text and text.rstrip().endswith("Tested-by: kharness <kharness@localhost>")


def test_a_failed_run_or_an_xfstests_new_failure_withholds_the_trailer():
    rows = [row("xfs/nvme/append-extend/libaio", "no change", 1.0)]
    assert "Tested-by" not in report(rows, failures={"xfs/nvme/append-extend/libaio": ["hang"]})
    text = report(rows, xfs=[("ext4_4k:generic/091", "new failure", "fail: output mismatch")])
    assert "xfstests new failure: ext4_4k:generic/091" in text and "Tested-by" not in text


def test_every_xfstest_that_ran_is_in_the_report_with_both_kernels():
    rows = [row("xfs/nvme/append-extend/libaio", "no change", 1.0)]
    text = report(rows, xfs=[("ext4_4k:generic/001", "pass", "pass (base pass)")])
    assert "xfstests result: ext4_4k:generic/001: pass, pass (base pass)" in text
    assert text.rstrip().endswith("Tested-by: kharness <kharness@localhost>")
