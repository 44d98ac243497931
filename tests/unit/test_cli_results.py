"""`kharness results ...` against a real SQLite store: list, show, compare, export, errors."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest
from rich.console import Console

import harness.cli as cli
from harness.cli import common
from harness.results.store import Store
from tests.helpers.records import make_record

CELL = "ext4/nvme/unwritten-convert/libaio"
HOSTILE = "[red]boom[/red] [bold]x"


def fio_spec(kernel: str) -> dict:
    return {"kernel": {"name": kernel, "key": f"{kernel}-k3y", "commit": "0123abcd" * 5, "release": "6.8.0",
                       "patches": [{"file": "0001-fix.patch", "subject": f"ext4: fix {HOSTILE}",
                                    "sha256": "f00d" * 16}]},
            "image": {"recipe": "debian-bookworm", "key": "img-k3y"}, "accel": "kvm",
            "disks": [{"kind": "nvme", "size": "8G", "serial": "kh-scratch"}],
            "workload": {"kind": "fio", "cells": [{
                "fs": {"fstype": "ext4", "mkfs": ["mkfs.ext4", "-F", "{dev}"], "mount_options": "noatime"},
                "disk": "nvme", "runs": 1,
                "job": {"pattern": "unwritten-convert", "engine": "libaio", "iodepth": 32, "numjobs": 1,
                        "bs": "4k", "size": "1G", "runtime": 30, "ramp_time": 5, "directory": "/mnt/scratch",
                        "rendered": "[global]\n"}}]}}


@pytest.fixture(autouse=True)
def wide_consoles(monkeypatch):
    """Consoles that write to sys.stdout/sys.stderr when printing (so capsys sees them), wide enough
    that tables do not wrap."""
    monkeypatch.setattr(common, "out", Console(width=250, highlight=False, soft_wrap=True))
    monkeypatch.setattr(common, "console", Console(width=250, highlight=False, stderr=True))
    monkeypatch.setattr(cli, "console", common.console)


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "results.sqlite"
    with Store(path) as store:
        for i in range(5):
            base = make_record(f"base-{i}", root=tmp_path, group="g1", kernel="v6.8", role="base",
                               started=f"2026-11-29T18:0{i}:00+0000", iops=(10000.0 + 40 * i - 80,))
            base["spec"] = fio_spec("v6.8")
            store.add_run(base)
            new = make_record(f"new-{i}", root=tmp_path, group="g1", kernel="v6.8-patched", role="new",
                              started=f"2026-11-29T18:1{i}:00+0000", iops=(7000.0 + 30 * i - 60,))
            new["spec"] = fio_spec("v6.8-patched")
            new["xfstests"][0]["status"] = "fail"  # generic/001: pass on base, fail on new
            new["measurements"][0].update(jbd2_commits_per_kwrite=333.0 + i, dio_wq_peak_concurrency=1.0)
            store.add_run(new)
        odd = make_record("odd-1", root=tmp_path, group=None, kernel="v6.8-patched", status="hang",
                          started="2026-11-30T09:00:00+0000")
        odd["spec"] = fio_spec("v6.8-patched")
        odd["label"] = f"label {HOSTILE}"
        odd["xfstests"][1]["message"] = f"message {HOSTILE}\nsecond line"
        odd["events"][0]["title"] = f"INFO: task {HOSTILE} blocked"
        odd["failures"] = [f"failure {HOSTILE}"]
        odd["reproduces"] = "base-0"
        store.add_run(odd)
        xfs = make_record("xfs-1", root=tmp_path, group="g2", kernel="v6.8", started="2026-11-30T10:00:00+0000",
                          iops=())
        xfs["spec"]["workload"] = {"kind": "xfstests", "section": "xfs_4k", "fstype": "xfs",
                                   "mkfs_options": "-b size=4096", "tests": ["generic/001", "generic/475"],
                                   "expunged": [["generic/999", "takes hours"]]}
        store.add_run(xfs)
    return path


def run(db, *argv: str) -> int:
    return cli.main(["--store", str(db), "results", *argv])


def lines_with(text: str, *needles: str) -> list[str]:
    return [line for line in text.splitlines() if all(n in line for n in needles)]


def test_list(db, capsys):
    assert run(db, "list") == 0
    text = capsys.readouterr().out
    ids = [line.split()[1] for line in text.splitlines() if line.startswith("│")]
    assert ids == ["xfs-1", "odd-1", *(f"new-{i}" for i in range(4, -1, -1)), *(f"base-{i}" for i in range(4, -1, -1))]
    [row] = lines_with(text, "base-3")
    assert [c.strip() for c in row.split("│")[1:-1]] == [
        "base-3", "2026-11-29 18:03:00", "v6.8", "fio", "base", "done", "1/2", "pytest", "g1"]

    assert run(db, "list", "--group", "g1", "--kernel", "v6.8") == 0
    text = capsys.readouterr().out
    assert len(lines_with(text, "base-")) == 5 and not lines_with(text, "new-") and not lines_with(text, "xfs-1")

    assert run(db, "list", "--limit", "3") == 0
    captured = capsys.readouterr()
    assert len([line for line in captured.out.splitlines() if line.startswith("│")]) == 3
    assert "--limit 0 for all" in captured.err

    assert run(db, "list", "--front-end", "nope") == 0
    assert "no runs recorded matching the filters" in capsys.readouterr().err


def test_show(db, tmp_path, capsys):
    assert run(db, "show", "new-2") == 0
    text = capsys.readouterr().out
    assert "kernel:    v6.8-patched (key v6.8-patched-k3y, commit 0123abcd0123, release 6.8.0)" in text
    assert "patch:   0001-fix.patch: ext4: fix [red]boom[/red] [bold]x (sha256 f00df00df00d)" in text
    assert "image:     debian-bookworm (key img-k3y)" in text
    assert "accel:     kvm" in text and "disk:      nvme 8G serial kh-scratch" in text
    assert lines_with(text, "cell:", CELL, "x1", "iodepth=32", "numjobs=1", "bs=4k", "runtime=30")
    assert lines_with(text, "mkfs: mkfs.ext4 -F {dev}", "mount options: noatime")
    [meas] = lines_with(text, CELL, " ok ")
    assert [c.strip() for c in meas.split("│")[1:-1]] == [CELL, "0", "7000", "27.3", "110", "250", "900", "ok"]
    assert lines_with(text, "generic/001", "fail", "3.0")
    # the counted metrics the run has, in a table of their own
    assert "counted in the guest" in text
    [counted] = lines_with(text, CELL, "335")
    assert [c.strip() for c in counted.split("│")[1:-1]] == [CELL, "0", "335", "1"]
    assert "jbd2 commits/kwrite" in text and "flushes/kwrite" not in text
    assert "event:     hung_task: INFO: task hung in jbd2_log_wait_commit (console line 1234)" in text
    assert f"evidence:  {tmp_path / 'new-2' / 'sysrq/hang-x-wt-181512.txt'} (sysrq)" in text
    assert f"evidence:  {tmp_path / 'new-2' / 'console.log'} (console)" in text

    assert run(db, "show", "xfs") == 0  # a unique prefix
    text = capsys.readouterr().out
    assert ("workload:  xfstests, section xfs_4k (xfs, mkfs options -b size=4096), 2 tests" in text)
    assert "tests:   generic/001 generic/475" in text and "expunged: generic/999 (takes hours)" in text


def test_show_prints_hostile_text_literally(db, capsys):
    assert run(db, "show", "odd-1") == 0
    text = capsys.readouterr().out
    assert "\x1b[" not in text
    assert f"label:     label {HOSTILE}" in text
    assert f"ext4: fix {HOSTILE}" in text
    assert lines_with(text, "generic/475", f"message {HOSTILE}") and "second line" not in text
    assert f"event:     hung_task: INFO: task {HOSTILE} blocked" in text
    assert f"failure:   failure {HOSTILE}" in text
    assert "reproduces: base-0" in text


def test_show_json(db, capsys):
    assert run(db, "show", "odd-1", "--json") == 0
    doc = json.loads(capsys.readouterr().out)
    [r] = doc["runs"]
    assert (r["run_id"], r["status"], r["label"], r["failures"]) == ("odd-1", "hang", f"label {HOSTILE}",
                                                                    [f"failure {HOSTILE}"])


def compare_rows(text: str) -> dict[tuple[str, str], list[str]]:
    rows = {}
    for line in text.splitlines():
        cols = [c.strip() for c in line.split("│")[1:-1]]
        if len(cols) == 9 and cols[0] == CELL:
            rows[cols[0], cols[1]] = cols[2:]
    return rows


def test_compare_flags_a_30pct_iops_drop(db, capsys):
    assert run(db, "compare", "group:g1@v6.8", "group:g1@v6.8-patched") == 0
    text = capsys.readouterr().out
    assert "A: g1@v6.8: 5 runs, kernel v6.8" in text and "B: g1@v6.8-patched: 5 runs, kernel v6.8-patched" in text
    rows = compare_rows(text)
    assert rows[CELL, "iops"] == ["10000", "7000", "-30.0%", "<0.001", "<0.001", "5/5", "regression"]
    assert rows[CELL, "clat_p99_us"][-1] == "no change"
    [x] = lines_with(text, "generic/001")
    assert [c.strip() for c in x.split("│")[1:-1]] == ["xfs_4k", "generic/001", "pass", "fail"]
    assert not lines_with(text, "generic/475")


def test_compare_identical_sides(db, capsys):
    assert run(db, "compare", "group:g1@v6.8", "group:g1@v6.8", "--metric", "iops") == 0
    text = capsys.readouterr().out
    assert compare_rows(text) == {(CELL, "iops"): ["10000", "10000", "+0.0%", "1.000", "1.000", "5/5", "no change"]}
    assert "regression" not in text
    assert "the 2 tests run on both sides have the same status" in text


def test_compare_single_runs_are_inconclusive(db, capsys):
    assert run(db, "compare", "base-0", "new-0") == 0
    assert compare_rows(capsys.readouterr().out)[CELL, "iops"][-2:] == ["1/1", "inconclusive"]


def test_export_to_files(db, tmp_path, capsys):
    out_json, out_xml = tmp_path / "e.json", tmp_path / "e.xml"
    assert run(db, "export", "odd-1", "--group", "g1", "--format", "json", "-o", str(out_json)) == 0
    doc = json.loads(out_json.read_text())
    assert [r["run_id"] for r in doc["runs"]] == [  # the group's runs oldest first
        "odd-1", *(f"base-{i}" for i in range(5)), *(f"new-{i}" for i in range(5))]
    assert capsys.readouterr().out == ""

    assert run(db, "export", "base-0", "new-0", "--format", "junit", "-o", str(out_xml)) == 0
    root = ET.parse(out_xml).getroot()
    assert [s.get("name") for s in root.findall("testsuite")] == ["base-0", "new-0"]

    assert run(db, "export", "xfs-1", "--format", "json") == 0
    assert json.loads(capsys.readouterr().out)["runs"][0]["run_id"] == "xfs-1"


def test_unknown_refs_exit_2(db, capsys):
    assert run(db, "show", "nope") == 2
    assert "no run matches 'nope'" in capsys.readouterr().err
    assert run(db, "compare", "base-0", "missing-run") == 2
    assert "'missing-run'" in capsys.readouterr().err
    assert run(db, "compare", "group:g1@v7.0", "base-0") == 2
    assert "no runs in group 'g1' with kernel 'v7.0'" in capsys.readouterr().err
    assert run(db, "export", "--group", "nogroup", "--format", "junit") == 2
    assert "no runs in group 'nogroup'" in capsys.readouterr().err
    assert run(db, "export", "--format", "json") == 2
    assert "nothing to export" in capsys.readouterr().err
