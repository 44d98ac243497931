"""Counted mechanism metrics: the guest script, the parsers on text captured from 6.1 guests, the
per-1000-writes figures, and their way through records, the results store and the verdict module."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from harness.drivers.matrix import CellOutcome, MatrixRun, cells, make_profile
from harness.errors import WorkloadError
from harness.results.metrics import COUNTED, METRICS, metric
from harness.results.report import comparison_table
from harness.results.rows import MeasurementRow
from harness.results.store import Store
from harness.results.verdict import cell_values, decide_cells, measured
from harness.run.records import MeasurementRecord
from harness.workloads.counters import (
    NO_TRACEFS,
    Capture,
    Snapshot,
    WorkqueueTrace,
    deltas,
    guest_script,
    kept,
    parse_capture,
    parse_ctxt,
    parse_diskstat,
    parse_jbd2_info,
    parse_snapshot,
    parse_workqueue_trace,
    parse_xfs_log,
    per_kwrite,
)
from harness.workloads.fio import FioJob, hooks, render_job
from tests.helpers.records import make_record

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "counters"
CELL = "ext4/nvme/unwritten-convert/libaio"


# -- the files read --------------------------------------------------------------------------------
def test_diskstat_writes_and_flushes():
    # /sys/block/<dev>/stat of 6.1: 17 fields; 5 = writes completed, 16 = flushes completed
    line = "     142        0     6242      112   318290     2202  2571920   189403        0   266268   194052" \
           "        0        0        0        0    80451    4535\n"
    assert parse_diskstat(line) == (318290, 80451)
    # before 5.5 (no discard and flush fields): no flush count
    assert parse_diskstat("1 2 3 4 5 6 7 8 9 10 11") == (5, None)
    with pytest.raises(WorkloadError, match="at least 11"):
        parse_diskstat("1 2 3")
    with pytest.raises(WorkloadError, match="integers"):
        parse_diskstat("1 2 x 4 5 6 7 8 9 10 11")


def test_jbd2_info_transactions():
    text = ("2297 transactions (2284 requested), each up to 8192 blocks\naverage: \n"
            "  0ms waiting for transaction\n  4ms request delay\n")
    assert parse_jbd2_info(text) == 2297
    assert parse_jbd2_info("0 transactions (0 requested), each up to 8192 blocks\n") == 0
    with pytest.raises(WorkloadError, match="jbd2"):
        parse_jbd2_info("garbage\n")


def test_xfs_log_line():
    text = "extent_alloc 4 32 4 32\nlog 1811 14532 0 1795 1790\npush_ail 3657 0 0 0 0 0 0 0 0 0\n"
    assert parse_xfs_log(text) == (1811, 1795)
    with pytest.raises(WorkloadError, match="log"):
        parse_xfs_log("extent_alloc 4 32 4 32\n")


def test_ctxt():
    assert parse_ctxt("cpu  1 2 3\nctxt 123456\nbtime 1\n") == 123456
    assert parse_ctxt("ctxt 9\n") == 9
    with pytest.raises(WorkloadError, match="ctxt"):
        parse_ctxt("cpu 1 2 3\n")


def test_snapshot_sections_and_absent_files():
    text = ("## /sys/block/vda/stat\n 1 0 8 0 20 0 160 3 0 4 4 0 0 0 0 7 1\n"
            "## /proc/stat\nctxt 500\n")
    assert parse_snapshot(text) == Snapshot(writes=20, flushes=7, ctxt=500)
    with pytest.raises(WorkloadError, match="no block stat"):
        parse_snapshot("## /proc/stat\nctxt 500\n")


# -- the workqueue trace ---------------------------------------------------------------------------
HEAD = ("# tracer: nop\n#\n# entries-in-buffer/entries-written: {n}/{w}   #P:2\n#\n"
        "#           TASK-PID     CPU#  |||||  TIMESTAMP  FUNCTION\n"
        "#              | |         |   |||||     |         |\n")


def ev(pid, cpu, ts, event, body, task="kworker/0:1"):
    return f"    {task}-{pid}     [{cpu:03d}] .....  {ts:.6f}: {event}: {body}\n"


def queue(work, wq, ts, pid=300, task="fio"):
    return ev(pid, 0, ts, "workqueue_queue_work",
              f"work struct={work} function=iomap_dio_complete_work workqueue={wq} req_cpu=2 cpu=0", task=task)


def start(work, pid, ts):
    return ev(pid, pid % 2, ts, "workqueue_execute_start", f"work struct {work}: function iomap_dio_complete_work")


def end(work, pid, ts):
    return ev(pid, pid % 2, ts, "workqueue_execute_end", f"work struct {work}: function iomap_dio_complete_work")


def test_trace_overlapping_items_give_the_peak():
    lines = [queue("000000001", "dio/nvme0n1", 1.0), queue("000000002", "dio/nvme0n1", 1.0001),
             start("000000001", 41, 1.0002), start("000000002", 42, 1.0003),
             queue("000000003", "dio/nvme0n1", 1.0004), start("000000003", 43, 1.0005),
             end("000000001", 41, 1.0010), end("000000002", 42, 1.0020), end("000000003", 43, 1.0025)]
    t = parse_workqueue_trace(HEAD.format(n=9, w=9) + "".join(lines))
    assert t == WorkqueueTrace(items=3, peak=3, mean_us=round((800 + 1700 + 2000) / 3, 1), lost=0)


def test_trace_serial_items_and_other_workqueues():
    lines = [queue("0000a", "dio-sync", 2.0), queue("0000b", "dio-sync", 2.0),
             start("0000a", 50, 2.001), queue("0000c", "events", 2.0015, task="kworker/1:1"),
             start("0000c", 51, 2.0016), end("0000a", 50, 2.002), end("0000c", 51, 2.004),
             start("0000b", 50, 2.0021), end("0000b", 50, 2.003)]
    t = parse_workqueue_trace(HEAD.format(n=9, w=9) + "".join(lines))
    # the "events" item overlapped but is not a dio item: peak 1, two items of 1000 and 900 us
    assert (t.items, t.peak, t.mean_us, t.lost) == (2, 1, 950.0, 0)


def test_trace_work_struct_freed_and_queued_again_while_its_function_runs():
    # iomap_dio_complete_work() frees the dio (and the work struct in it); the same address
    # may be queued again before the first execution's end event: the worker closes it.
    lines = [queue("0000f", "dio/vdb", 3.0), start("0000f", 60, 3.001), queue("0000f", "dio/vdb", 3.0015),
             start("0000f", 61, 3.0016), end("0000f", 60, 3.002), end("0000f", 61, 3.003)]
    t = parse_workqueue_trace(HEAD.format(n=6, w=6) + "".join(lines))
    assert (t.items, t.peak) == (2, 2)


def test_trace_counts_what_the_buffer_dropped():
    lines = [queue("1", "dio/vdb", 1.0), start("1", 7, 1.1), end("1", 7, 1.2),
             "CPU:1 [LOST 12 EVENTS]\n"]
    t = parse_workqueue_trace(HEAD.format(n=3, w=40) + "".join(lines))
    assert t.lost == 37 + 12 and t.items == 1
    raw = deltas(Capture(Snapshot(writes=0), Snapshot(writes=10), t))
    assert "dio_wq_items" not in raw and "dio_wq_mean_us" not in raw and raw["dio_wq_peak"] == 1


def test_trace_skips_noise_and_is_empty_without_events():
    assert parse_workqueue_trace("# tracer: nop\n\ngarbage line\n") == WorkqueueTrace(0, 0, None, 0)


# -- captured from a 6.1 guest (tests/fixtures/counters/) -----------------------------------------
def _fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


@pytest.mark.parametrize("kernel,items,peak,writes,commits", [("baseline", 51, 17, 11250, 1505),
                                                              ("patched", 21, 1, 3736, 1223)])
def test_captured_ext4_unwritten_convert(kernel, items, peak, writes, commits):
    """The ``collect`` output of run 0 of tests/vm/test_03_workloads.py's counters test (ext4 on
    NVMe, unwritten-convert, libaio, iodepth 32, 32 MiB), as the run directory keeps it: the
    snapshots whole, the trace's first 200 lines. The baseline's dio/nvme0n1 items overlap (17
    at once in these lines, 33 in the whole job); the patch's dio-sync runs one at a time."""
    c = parse_capture(_fixture(f"captured-6.1.192-{kernel}-ext4-nvme-unwritten-convert.txt"))
    assert c.note == "" and c.trace is not None
    assert (c.trace.items, c.trace.peak, c.trace.lost) == (items, peak, 0)
    d = deltas(c)
    assert (d["writes"], d["jbd2_transactions"]) == (writes, commits)
    assert "xfs_log_writes" not in d            # the snapshot reads only ext4's journal


@pytest.mark.parametrize("kernel,items,peak,writes,commits", [("baseline", 48, 14, 8964, 903),
                                                              ("patched", 22, 1, 5508, 1813)])
def test_captured_612_ext4_unwritten_convert(kernel, items, peak, writes, commits):
    """Run 0 of the 6.12 flagship (tests/vm/test_16_kernel_612.py; baseline-6.12 and
    patched-6.12, ext4 on NVMe, unwritten-convert, libaio): 6.12's trace lines carry the same
    workqueue_execute_start/end fields as 6.1's, /proc/fs/jbd2 and the block stat the same
    columns. writes = 5662 - 154 write requests in the patched snapshots, commits 1814 - 1."""
    c = parse_capture(_fixture(f"captured-6.12.118-{kernel}-ext4-nvme-unwritten-convert.txt"))
    assert c.note == "" and c.trace is not None
    assert (c.trace.items, c.trace.peak, c.trace.lost) == (items, peak, 0)
    d = deltas(c)
    assert (d["writes"], d["jbd2_transactions"]) == (writes, commits)


def test_captured_xfs_snapshot():
    """An XFS run of benchmarks/counter_overhead.py without the trace."""
    c = parse_capture(_fixture("captured-6.1.192-baseline-xfs-nvme-unwritten-convert.txt"))
    assert c.trace is None and c.note == ""
    assert deltas(c) == {"writes": 2012.0, "flushes": 1002.0, "xfs_log_writes": 983.0, "xfs_log_forces": 992.0,
                         "ctxt": 14787.0}


def test_kept_cuts_the_trace_only():
    text = _fixture("captured-6.1.192-patched-ext4-nvme-unwritten-convert.txt")
    short = kept(text, trace_lines=20)
    assert short.startswith(text[:text.index("@@ trace")]) and "trace cut here" in short
    assert parse_capture(short).before == parse_capture(text).before
    assert kept("@@ before\n## /proc/stat\nctxt 1\n") == "@@ before\n## /proc/stat\nctxt 1\n"


def test_capture_without_tracefs_says_so():
    text = ("@@ before\n## /sys/block/vdb/stat\n 1 0 8 0 20 0 160 3 0 4 4 0 0 0 0 7 1\n"
            "@@ after\n## /sys/block/vdb/stat\n 1 0 8 0 50 0 400 3 0 4 4 0 0 0 0 9 1\n"
            f"@@ notrace\n{NO_TRACEFS}\n")
    c = parse_capture(text)
    assert c.trace is None and c.note == NO_TRACEFS
    assert deltas(c) == {"writes": 30.0, "flushes": 2.0}
    with pytest.raises(WorkloadError, match="before/after"):
        parse_capture("@@ before\n## /proc/stat\nctxt 1\n")


# -- per 1000 writes -------------------------------------------------------------------------------
def test_per_kwrite_names_are_metrics():
    c = Capture(Snapshot(100, 10, 5, None, None, 1000), Snapshot(2100, 410, 305, None, None, 9000),
                WorkqueueTrace(2000, 3, 850.0, 0))
    raw = deltas(c)
    assert raw == {"writes": 2000, "flushes": 400, "jbd2_transactions": 300, "ctxt": 8000, "dio_wq_items": 2000,
                   "dio_wq_peak": 3, "dio_wq_mean_us": 850.0, "trace_lost": 0}
    figures = per_kwrite(raw, fio_writes=2000)
    assert figures == {"dev_writes_per_kwrite": 1000.0, "flushes_per_kwrite": 200.0, "jbd2_commits_per_kwrite": 150.0,
                       "ctxsw_per_kwrite": 4000.0, "dio_wq_items_per_kwrite": 1000.0,
                       "dio_wq_peak_concurrency": 3, "dio_wq_mean_us": 850.0}
    assert set(figures) <= {m.key for m in COUNTED}
    assert per_kwrite(raw, fio_writes=0) == {}
    # a counter that went backwards (a device re-probed) is no figure
    assert "writes" not in deltas(Capture(Snapshot(writes=10), Snapshot(writes=5), None))


def test_counted_metrics_explain_and_never_gate():
    assert COUNTED and all(not m.gates for m in COUNTED)
    assert metric("dio_wq_peak_concurrency").higher_is_better
    assert not metric("jbd2_commits_per_kwrite").higher_is_better
    keys = {f.name for f in dataclasses.fields(MeasurementRecord)}
    rows = {f.name for f in dataclasses.fields(MeasurementRow)}
    assert all(m.key in keys and m.key in rows for m in METRICS)


# -- the guest script and the job's hooks ----------------------------------------------------------
def test_guest_script_is_valid_shell_and_checks_its_inputs(tmp_path):
    for trace in (True, False):
        script = tmp_path / f"c{trace}.sh"
        script.write_text(guest_script("nvme0n1", "/root/kharness/ext4-nvme-r0", trace))
        assert subprocess.run(["sh", "-n", str(script)], capture_output=True).returncode == 0
    text = guest_script("nvme0n1", "/root/kharness/x", True)
    assert "TRACE=1" in text and 'workqueue ~ "dio*"' in text and "trace_clock" in text
    assert "TRACE=0" in guest_script("vdb", "/root/kharness/x", False)
    with pytest.raises(WorkloadError, match="device"):
        guest_script("nvme0n1; reboot", "/root/x", True)
    with pytest.raises(WorkloadError, match="path"):
        guest_script("vdb", "/root/$(reboot)", True)


def test_guest_script_steps_on_this_host(tmp_path):
    """The script's own logic with tracing off, on the host's block device and /proc."""
    dev = next((p.name for p in sorted(Path("/sys/block").glob("*")) if (p / "stat").exists()), None)
    if dev is None or not dev.isalnum():
        pytest.skip("no block device to read here")
    script = tmp_path / "c.sh"
    script.write_text(guest_script(dev, str(tmp_path / "snap"), trace=False))
    marker = tmp_path / "started"
    for step in (["setup"], ["before", str(marker)], ["after"]):
        subprocess.run(["sh", str(script), *step], check=True, timeout=30)
    assert marker.exists()
    out = subprocess.run(["sh", str(script), "collect"], check=True, capture_output=True, text=True, timeout=30)
    c = parse_capture(out.stdout)
    assert c.trace is None and c.before.writes is not None and c.after.ctxt >= c.before.ctxt


def test_job_hooks():
    base = FioJob(pattern="unwritten-convert", directory="/mnt/scratch/j")
    assert hooks(base) == ("", "")
    assert hooks(dataclasses.replace(base, marker="/root/kharness/m")) == ("touch /root/kharness/m", "")
    both = dataclasses.replace(base, marker="/root/kharness/m", counters="/root/kharness/c.sh")
    assert hooks(both) == ("sh /root/kharness/c.sh before /root/kharness/m", "sh /root/kharness/c.sh after")
    text = render_job(both)
    measured_part = text[text.index("[measure."):]
    assert "exec_prerun=sh /root/kharness/c.sh before /root/kharness/m" in measured_part
    assert "exec_postrun=sh /root/kharness/c.sh after" in measured_part
    assert "exec_" not in text[:text.index("[measure.")]          # never around the prep jobs
    with pytest.raises(Exception, match="counters"):
        render_job(dataclasses.replace(base, counters="/root/x;reboot"))


@pytest.mark.skipif(shutil.which("fio") is None, reason="fio not installed")
@pytest.mark.parametrize("pattern", ["randwrite-overwrite", "randwrite-osync", "append-extend", "unwritten-convert"])
def test_jobs_with_hooks_parse_with_fio(tmp_path, pattern):
    job = FioJob(pattern=pattern, directory=str(tmp_path), marker="/root/m", counters="/root/c.sh")
    jobfile = tmp_path / "job.fio"
    jobfile.write_text(render_job(job))
    proc = subprocess.run(["fio", "--parse-only", str(jobfile)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# -- records, the store and the verdict module -----------------------------------------------------
def _ms(values: dict[str, list[float]]) -> list[MeasurementRecord]:
    n = len(next(iter(values.values())))
    return [MeasurementRecord(CELL, "ext4", "nvme", "unwritten-convert", "libaio", i, "ok", iops=1000.0 + i,
                              **{k: v[i] for k, v in values.items()}) for i in range(n)]


def test_old_measurement_records_still_load():
    old = {"cell": CELL, "fs": "ext4", "disk": "nvme", "pattern": "unwritten-convert", "engine": "libaio",
           "run_index": 0, "status": "ok", "iops": 1200.0, "bw_kib_s": 4800.0, "clat_p50_us": 1.0,
           "clat_p99_us": 2.0, "clat_p999_us": 3.0, "fio_json": "fio/x.json", "error": None}
    m = MeasurementRecord(**old)
    assert m.jbd2_commits_per_kwrite is None and m.counters is None
    assert measured([m]) == {k: [v] for k, v in old.items() if k in {x.key for x in METRICS}}


def test_store_keeps_the_counters_and_reads_old_rows(tmp_path):
    rec = make_record("run-c")
    rec["measurements"][0].update(jbd2_commits_per_kwrite=333.0, dio_wq_peak_concurrency=1.0,
                                  counters={"writes": 5000.0, "fio_writes": 3000.0, "jbd2_transactions": 999.0})
    with Store(tmp_path / "s.sqlite") as store:
        store.add_run(rec)
        first, second = store.measurements(["run-c"])
        assert (first.jbd2_commits_per_kwrite, first.dio_wq_peak_concurrency, first.flushes_per_kwrite) == (
            333.0, 1.0, None)
        assert first.counters == {"writes": 5000.0, "fio_writes": 3000.0, "jbd2_transactions": 999.0}
        assert second.counters == {} and second.jbd2_commits_per_kwrite is None
        # the store's rows feed the verdict module like the records do
        assert measured([first])["jbd2_commits_per_kwrite"] == [333.0]
        bad = make_record("run-bad")
        bad["measurements"][0]["counters"] = {"writes": "many"}
        with pytest.raises(Exception, match=r"measurements\[0\]\.counters\.writes"):
            store.add_run(bad)
        bad["measurements"][0]["counters"] = [1, 2]
        with pytest.raises(Exception, match="counters: expected an object"):
            store.add_run(bad)


def test_verdict_compares_a_counted_metric_apart_from_the_gating_ones():
    base = _ms({"jbd2_commits_per_kwrite": [230.0, 231.0, 229.0, 232.0, 230.5],
                "dio_wq_peak_concurrency": [3.0, 4.0, 3.0, 3.0, 4.0]})
    new = _ms({"jbd2_commits_per_kwrite": [333.0, 335.0, 331.0, 334.0, 332.0],
               "dio_wq_peak_concurrency": [1.0] * 5})
    values = {CELL: cell_values(base, new)}
    gating_only = decide_cells(values)[CELL]
    assert [c.metric for c in gating_only] == ["IOPS"]
    both = decide_cells(values, ["jbd2_commits_per_kwrite", "dio_wq_peak_concurrency"])[CELL]
    by = {c.metric: c for c in both}
    assert by["jbd2 commits/kwrite"].verdict == "regression" and by["jbd2 commits/kwrite"].pct_change > 40
    assert by["dio wq peak concurrency"].verdict == "regression"
    # asking for explanation never moves the gating verdict (its own Benjamini-Hochberg family)
    assert by["IOPS"] == gating_only[0]


def test_record_json_round_trip_keeps_counters():
    m = _ms({"jbd2_commits_per_kwrite": [300.0]})[0]
    m = dataclasses.replace(m, counters={"writes": 10.0})
    again = MeasurementRecord(**json.loads(json.dumps(dataclasses.asdict(m))))
    assert again == m


def test_suite_table_shows_counted_metrics_without_moving_the_verdicts():
    profile = make_profile("quick", filesystems=["ext4"])
    m = MatrixRun.__new__(MatrixRun)  # no testbed: the table needs only the outcomes (and no boots)
    m.records = []
    m.outcomes = {c.id: CellOutcome(c) for c in cells(profile)}
    cid = next(c for c in m.outcomes if c.endswith("unwritten-convert/libaio"))
    base = _ms({"jbd2_commits_per_kwrite": [184.0, 187.0, 185.0], "dio_wq_peak_concurrency": [33.0, 32.0, 32.0]})
    new = _ms({"jbd2_commits_per_kwrite": [973.0, 998.0, 985.0], "dio_wq_peak_concurrency": [1.0, 1.0, 1.0]})
    m.outcomes[cid].base, m.outcomes[cid].new = base, new
    gating, explained = m.decided()[cid], m.decided(explain=True)[cid]
    assert [c.metric for c in gating] == ["IOPS"]
    assert [c.metric for c in explained] == ["IOPS", "jbd2 commits/kwrite", "dio wq peak concurrency"]
    assert explained[0] == gating[0]
    table = comparison_table(m)
    assert "jbd2 commits/kwrite" in table and "dio wq peak" in table and "+432" in table
