"""The nightly HTML report and index: rendered from a synthetic night, escaped, self-contained,
and loaded in a real headless Chromium (no console errors; a screenshot shows the table and a plot)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from harness.drivers.nightly.book import NightlyDB
from harness.drivers.nightly.fold import CellRow, CountedSeries, NightResult
from harness.drivers.nightly.html import svg_series, write_index, write_night_report
from harness.results.history import Decision, TestDiff
from tests.helpers.browser import have_chromium, open_in_chromium

CELL = "ext4/nvme/unwritten-convert/libaio"


def synthetic_night(run_dir: Path) -> NightResult:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "console.log").write_text("boot\n")
    res = NightResult("n3", "default", "nightly/n3", {"baseline": "a" * 40, "baseline@next": "b" * 40}, "baseline")
    hist = Decision("last-good", "regression", 2021.0, 572.0, -71.7, 0.1, 3, 3, reference="n2")
    base = Decision("baseline", "regression", 2000.0, 572.0, -71.4, 0.1, 3, 3, reference="baseline")
    row = CellRow("baseline@next", CELL, "IOPS", "iops", [570.0, 572.0, 580.0], base, hist, run_ids=["r1"],
                  series=[("n1", 2010.0), ("n2", 2021.0), ("n3", 572.0)],
                  baseline_series=[("n1", 2000.0), ("n2", 1990.0), ("n3", 2000.0)],
                  bisect=f"kharness bisect --kernel baseline --good {'a' * 40} --bad {'b' * 40} --check fio:{CELL}",
                  reproduce=f"kharness reproduce r1 --cell {CELL}")
    quiet = Decision("baseline", "no change", 500.0, 505.0, 1.0, 0.7, 3, 3)
    row2 = CellRow("baseline@next", "ext4/nvme/append-extend/libaio", "IOPS", "iops", [505.0], quiet,
                   Decision("last-good", "no change", 500.0, 505.0, 1.0, 0.7, 3, 3, reference="n2"),
                   series=[("n1", 498.0), ("n2", 500.0), ("n3", 505.0)])
    res.fio = [row, row2]
    nights = ("n1", "n2", "n3")
    res.counted = [
        CountedSeries("baseline@next", CELL, "jbd2 commits/kwrite", "journal transactions per 1000 writes",
                      tuple(zip(nights, (230.0, 228.0, 333.0))), tuple(zip(nights, (231.0, 229.0, 230.0))),
                      "regression"),
        CountedSeries("baseline@next", CELL, "dio wq peak concurrency", "work items executing at once",
                      tuple(zip(nights, (2.0, 2.0, 1.0))), tuple(zip(nights, (2.0, 2.0, 2.0)))),
        CountedSeries("baseline@next", "ext4/nvme/append-extend/libaio", "flushes/kwrite",
                      "flush requests per 1000 writes", tuple(zip(nights, (10.0, 11.0, 10.0))), ())]
    res.control = [(CELL, "IOPS", Decision("baseline", "no change", 2000.0, 1985.0, -0.75, 0.7, 3, 3))]
    res.control_history = (1, 24)
    res.xfstests = {"baseline@next": [
        TestDiff("ext4_4k", "generic/013", "new failure", "fails 3/3", "pass", "pass", "output mismatch <b>x</b>"),
        TestDiff("ext4_4k", "generic/091", "flaky", "flaky 1/3", "pass", "pass"),
        TestDiff("ext4_4k", "generic/001", "pass", "pass", "pass", "pass")]}
    res.evidence = {("baseline@next", CELL): {"run_id": "r9", "run_dir": str(run_dir), "files": ["sysrq/w-1.txt"],
                                              "summary": ["dio-sync: active 1/1, 30 inactive iomap_dio_complete_work",
                                                          "1 kworker blocked in jbd2_log_wait_commit"]}}
    res.ranges = {"baseline@next": {"since_night": "n2", "old": "a" * 40, "new": "b" * 40,
                                    "log": ["bbbbbbb fs: direct-io: single-threaded workqueue"]}}
    res.not_run = [{"unit": "nightly-fio-p0-r2-new0-virtio", "kref": "baseline@next",
                    "work": ["xfs/virtio/append-extend/libaio"], "why": "budget: needs ~90 s, 12 s left"}]
    res.runs = [{"run_id": "r1", "run_dir": str(run_dir), "label": "nightly-fio-p0-r0-new0-nvme", "status": "done",
                 "kref": "baseline@next", "role": "new", "failures": [], "sysrq_summary": []}]
    return res


def test_report_renders_everything_escaped(tmp_path):
    night_dir = tmp_path / "n3"
    res = synthetic_night(night_dir / "runs" / "r1")
    with NightlyDB(tmp_path / "nightly.sqlite") as db:
        path = write_night_report(res, night_dir, db)
    html = path.read_text()
    assert res.verdict == "regression" and res.exit_code == 1
    for needle in (CELL, "-71.7%", "dio-sync: active 1/1", "kharness bisect --kernel baseline", "--check fio:",
                   "kharness reproduce r1", "new failure", "flaky 1/3", "budget: needs ~90 s", "<svg",
                   "runs/r1/console.log", "1 of 24 control comparisons", "single-threaded workqueue"):
        assert needle in html, needle
    assert "<b>x</b>" not in html and "&lt;b&gt;x&lt;/b&gt;" in html  # recorded text is escaped
    # counted metrics over the nights: a group per cell, open where something changed tonight
    counted = html[html.index('id="counted-plots"'):]
    assert "jbd2 commits/kwrite: journal transactions per 1000 writes, regression tonight" in counted
    assert f"<details class=\"counted\" open><summary>baseline@next {CELL}: jbd2 commits/kwrite (regression)" in counted
    assert "<details class=\"counted\"><summary>baseline@next ext4/nvme/append-extend/libaio" in counted
    assert counted.index(CELL) < counted.index("append-extend")
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")  # nothing fetched


def test_svg_series_scales_and_escapes():
    svg = str(svg_series([("n1", 100.0), ("n<2>", 50.0)], title="a<b", highlight="n<2>"))
    assert svg.startswith("<svg") and "a&lt;b" in svg and "n&lt;2&gt;" in svg and "polyline" in svg
    assert str(svg_series([])) == ""


def test_index_lists_nights(tmp_path):
    with NightlyDB(tmp_path / "nightly.sqlite") as db:
        db.start("n1", "default", "x", {"baseline": "a" * 40})
        db.finish("n1", "done", "good", 0, "")
        (tmp_path / "n1").mkdir()
        (tmp_path / "n1" / "report.html").write_text("x")
        html = write_index(tmp_path, db).read_text()
    assert "n1/report.html" in html and "good" in html


@pytest.mark.skipif(not have_chromium(),
                    reason="needs Debian's chromium and chromium-driver (scripts/setup installs them)")
def test_report_in_headless_chromium(tmp_path):
    night_dir = tmp_path / "n3"
    res = synthetic_night(night_dir / "runs" / "r1")
    with NightlyDB(tmp_path / "nightly.sqlite") as db:
        path = write_night_report(res, night_dir, db)
    errors, png = open_in_chromium(path, tmp_path / "report.png")
    assert not errors, errors
    assert open_in_chromium.plots == 5  # type: ignore[attr-defined]  # 2 IOPS, 3 counted
    assert open_in_chromium.shown == 4  # type: ignore[attr-defined]  # the quiet cell's counts are folded
    assert png.stat().st_size > 10_000
    import os
    if os.environ.get("KHARNESS_KEEP_SCREENSHOT"):
        shutil.copy(png, os.environ["KHARNESS_KEEP_SCREENSHOT"])
