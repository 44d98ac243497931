"""The pure parts of benchmarks/selection.py: the fault patches, what each touches, and how a
selection is judged against the full run (the full runs themselves are on real VMs)."""

import json
import subprocess

import pytest

from benchmarks.selection import (
    BUDGETS,
    backfill,
    base_xfstests,
    evaluate,
    faults,
    finished_matrix,
    improved_cells,
    matrix_verdicts,
    merged,
    read_rows,
    selections,
    table,
    write_record,
)
from harness.drivers.series.read import read_series
from harness.drivers.series.select import RULES


def test_the_faults_cover_the_areas_the_harness_runs():
    fs = faults()
    assert len(fs) >= 6 and all(n.startswith("select-") for n in fs)
    touched = {n: read_series(str(p)).touched.files for n, p in fs.items()}
    assert all(len(t) == 1 for t in touched.values())
    files = {t[0] for t in touched.values()}
    for area in ("fs/ext4/", "fs/xfs/", "fs/ocfs2/", "fs/iomap/", "fs/direct-io.c", "block/"):
        assert any(f.startswith(area) for f in files), area


def test_the_faults_apply_to_a_tree_with_git(tmp_path):
    for p in faults().values():
        out = subprocess.run(["git", "apply", "--stat", str(p)], capture_output=True, text=True, cwd=tmp_path)
        assert out.returncode == 0, (p, out.stderr)


def _row(regressions=(), failed=(), new_failures=(), s15=(), s30=(), e15=900.0, e30=1800.0, full_s=3600.0):
    return {"fault": "select-99", "full": {"regressions": list(regressions), "failed": list(failed),
                                           "new_failures": list(new_failures), "estimated_s": full_s,
                                           "wall_s": 4000.0, "items": []},
            "select_15m": {"items": list(s15), "estimated_s": e15},
            "select_30m": {"items": list(s30), "estimated_s": e30}}


def test_a_selection_catches_only_what_it_chose_of_what_the_full_run_caught():
    r = _row(regressions=["ext4/nvme/unwritten-convert/libaio"], new_failures=["xfs_4k:generic/263"],
             s15=["ext4/nvme/randwrite-osync/libaio"], s30=["xfs_4k:generic/263", "ext4/nvme/randwrite-osync/libaio"])
    e15, e30 = evaluate(r, "15m"), evaluate(r, "30m")
    assert e15["caught"] and not e15["selected"]
    assert e30["selected"] == ["xfs_4k:generic/263"]
    assert e15["share"] == 0.25 and e30["share"] == 0.5


def test_a_fault_the_full_run_missed_counts_for_neither():
    r = _row(s15=["ext4/nvme/unwritten-convert/libaio"])
    e = evaluate(r, "15m")
    assert not e["caught"] and not e["selected"]
    assert "| select-99 | 1 | nothing |" in table([r])


def test_a_cell_that_failed_on_the_fault_is_caught():
    r = _row(failed=["ocfs2/nvme/append-extend/libaio"], s15=["ocfs2/nvme/append-extend/libaio"])
    assert evaluate(r, "15m")["selected"] == ["ocfs2/nvme/append-extend/libaio"]


def test_the_table_sums_up_each_budget():
    rows = [_row(regressions=["a/nvme/p/libaio"], s15=["a/nvme/p/libaio"], s30=["a/nvme/p/libaio"]),
            _row(regressions=["b/nvme/p/libaio"], s15=[], s30=["b/nvme/p/libaio"]),
            _row()]
    text = table(rows)
    assert set(BUDGETS) == {"15m", "30m"}
    assert "--budget 15m: 1 of 2 caught faults caught by the selection (3 faults)" in text
    assert "--budget 30m: 2 of 2 caught faults" in text
    assert "time share median 25%" in text


def _attempt(runs, name, comparison=True):
    d = runs / name
    d.mkdir(parents=True)
    (d / "selection.json").write_text("{}")
    if comparison:
        (d / "comparison.json").write_text(json.dumps({
            "rows": [{"cell": "ocfs2/nvme/append-extend/libaio", "metric": "IOPS", "gates": True,
                      "verdict": "regression", "pct_change": -64.04},
                     {"cell": "ocfs2/nvme/append-extend/libaio", "metric": "jbd2 commits/write", "gates": False,
                      "verdict": "regression", "pct_change": 900.0},
                     {"cell": "xfs/nvme/randwrite-osync/libaio", "metric": "p99", "gates": True,
                      "verdict": "inconclusive", "pct_change": 3.0},
                     {"cell": "xfs/nvme/unwritten-convert/io_uring", "metric": "p99 latency us", "gates": True,
                      "verdict": "improvement", "pct_change": -50.84},
                     {"cell": "xfs/nvme/append-extend/libaio", "metric": "flushes/kwrite", "gates": False,
                      "verdict": "improvement", "pct_change": -40.0}],
            "failures": {"ext4/virtio/append-extend/io_uring": ["select-99 run 1: mount failed"]}}))
    return d


def test_a_fault_resumes_from_its_newest_attempt_whose_matrix_finished(tmp_path):
    assert finished_matrix(tmp_path, "select-03") is None
    _attempt(tmp_path, "select-03-20261207-013836", comparison=False)
    older = _attempt(tmp_path, "select-03-20261206-220000")
    newer = _attempt(tmp_path, "select-03-20261207-015843")
    _attempt(tmp_path, "select-04-20261207-030000")
    assert finished_matrix(tmp_path, "select-03") == newer != older
    assert finished_matrix(tmp_path, "select-05") is None


def test_the_full_matrix_verdicts_are_read_from_its_comparison(tmp_path):
    v = matrix_verdicts(_attempt(tmp_path, "select-03-1"))
    assert v["regressions"] == ["ocfs2/nvme/append-extend/libaio"]     # the gating metric only
    assert v["changes"] == {"ocfs2/nvme/append-extend/libaio IOPS": -64.0}
    assert v["failed"] == ["ext4/virtio/append-extend/io_uring"]
    # a gating improvement is recorded, and does not count as catching the fault
    assert v["improvements"] == {"xfs/nvme/unwritten-convert/io_uring p99 latency us": -50.8}
    assert improved_cells(v) == {"xfs/nvme/unwritten-convert/io_uring"}


def test_a_fault_the_full_run_found_only_improvements_for_is_shown_but_not_counted():
    r = _row(s15=["xfs/nvme/unwritten-convert/libaio"], s30=[])
    r["full"]["improvements"] = {"xfs/nvme/unwritten-convert/libaio IOPS": 121.8}
    assert not evaluate(r, "15m")["caught"]
    text = table([r])
    assert "| select-99 | 1 | nothing (improved: xfs/nvme/unwritten-convert/libaio) |" in text
    assert "--budget 15m: 0 of 0 caught faults" in text
    assert "it chose an improved cell for 1 of the 1 faults the full run found only improvements for" in text
    assert "chose an improved cell for 0 of the 1" in text.split("--budget 30m")[1]
    assert improved_cells(_row()["full"]) == set()      # a row from before improvements were recorded


def test_a_later_fault_takes_the_newest_recorded_base_xfstests():
    assert base_xfstests([_row()]) is None
    old, new = _row(), _row()
    old["full"]["base_xfstests"] = {"key": "k1/i", "attempts": [["ext4_4k", "generic/091", ["fail"], ["x"]]]}
    new["full"]["base_xfstests"] = {"key": "k2/i", "attempts": [["ext4_4k", "generic/091", ["pass"], [""]]]}
    b = base_xfstests([old, new, _row()])
    assert b.key == "k2/i" and b.attempts[0].statuses == ("pass",) and b.attempts[0].outcome == "pass"


def test_a_row_without_a_selection_shows_it_as_missing_and_the_aim_column_counts_its_own():
    r = _row(regressions=["a/nvme/p/libaio"], s15=["a/nvme/p/libaio"])
    assert evaluate(r, "aim") == {"caught": True, "selected": None, "share": None}
    assert table([r]).splitlines()[2].endswith("| n/a |")
    r["select_aim"] = {"items": ["a/nvme/p/libaio"], "estimated_s": 720.0}
    text = table([r, _row()])
    assert "a budget of 20% of the full run's: 1 of 1 caught faults caught by the selection (1 faults); " \
           "time share median 20%" in text


def test_the_aim_selection_fits_a_fifth_of_the_full_run(monkeypatch):
    # the filesystems' direct-I/O structure as on 6.1 without grepping a cached tree (seconds a plan)
    monkeypatch.setattr("harness.drivers.series.run.cached_repo", lambda source: None)
    name, patch = next(iter(faults().items()))
    row = selections(name, patch, None)
    aim, full = row["select_aim"], row["full"]
    assert aim["budget_s"] == round(0.2 * full["estimated_s"], 1) and row["rules"] == RULES
    assert aim["estimated_s"] <= aim["budget_s"] < row["select_15m"]["estimated_s"]
    assert set(aim["items"]) <= set(full["items"]) and "selected_after_matrix" not in row


def test_each_rules_version_is_summed_up_on_its_own(tmp_path):
    old = _row(regressions=["a/nvme/p/libaio"], s15=[])             # no "rules": version 1
    new = _row(regressions=["a/nvme/p/libaio"], s15=["a/nvme/p/libaio"])
    new["rules"] = 2
    text = table([old, new])
    v1, v2 = text.split("Selection rules 1:")[1].split("Selection rules 2:")
    assert "--budget 15m: 0 of 1 caught faults" in v1 and "--budget 15m: 1 of 1 caught faults" in v2
    assert "| select-99 | 2 |" in text
    # a selection missing from a version-1 row is not made up with other rules
    del old["select_30m"]
    old["full"]["run_dir"] = str(tmp_path)
    assert RULES != 1
    with pytest.raises(ValueError, match=f"select-99: made with selection rules 1, now {RULES}: not adding 30m"):
        backfill(old, faults()["select-01"], None)


def test_the_committed_record_keeps_a_row_without_this_machines_paths(tmp_path):
    record = tmp_path / "data" / "selection.jsonl"
    a = _row(regressions=["ext4/nvme/p/libaio"], s15=["ext4/nvme/p/libaio"])
    a["full"].update(run_dir=str(tmp_path / "runs/select-99-1"), base_xfstests={"key": "k", "attempts": []})
    write_record([a], record)
    (kept,) = read_rows(record)
    assert "run_dir" not in kept["full"] and "base_xfstests" not in kept["full"]
    assert kept["full"]["regressions"] == ["ext4/nvme/p/libaio"] and kept["select_15m"] == a["select_15m"]
    assert str(tmp_path) not in record.read_text()
    # a later row for the same fault replaces it; another fault's is added in the faults' order
    b = {**_row(), "fault": "select-01"}
    a2 = _row(new_failures=["ext4_4k:generic/091"])
    assert [r["fault"] for r in write_record([b, a2], record)] == ["select-01", "select-99"]
    assert read_rows(record)[1]["full"]["new_failures"] == ["ext4_4k:generic/091"]
    # the table reads the record and a machine's results file, the file's row winning
    assert merged(read_rows(record), [a])[1]["full"]["regressions"] == ["ext4/nvme/p/libaio"]


def test_a_broken_results_line_names_its_file_and_line(tmp_path):
    f = tmp_path / "selection.jsonl"
    f.write_text(json.dumps(_row()) + "\n\n{not json\n")
    with pytest.raises(ValueError, match=rf"{f}:3: not JSON"):
        read_rows(f)
    f.write_text("[1, 2]\n")
    with pytest.raises(ValueError, match=rf"{f}:1: not a result row"):
        read_rows(f)
    assert read_rows(tmp_path / "absent.jsonl") == []
