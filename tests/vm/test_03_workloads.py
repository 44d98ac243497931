"""Real workloads and evidence through the composition layer: run_boot on ext4/XFS/ocfs2 over NVMe
and virtio, sysrq captures naming the dio workqueue on both kernels, and the one hang handler on a
frozen filesystem (a boot cut short, its evidence kept, the rest run in a fresh boot)."""

import json
import statistics
import time
from pathlib import Path

import pytest

from harness.errors import WorkloadError
from harness.evidence.capture import capture_sysrq
from harness.evidence.summary import summarize_dump
from harness.evidence.sysrq import parse_dumps
from harness.executors.base import RunContext
from harness.executors.local import execute
from harness.results.rundir import new_run_dir
from harness.results.store import Store
from harness.results.verdict import cell_values
from harness.run.boot import booted, run_boot
from harness.run.fio import measure
from harness.run.plan import fio_cell, fio_spec
from harness.run.records import BootRecord
from harness.run.spec import MOUNTPOINT, SysrqSampling
from harness.run.spec_read import read_spec
from harness.workloads.counters import NO_TRACEFS
from harness.workloads.fs import Filesystem, get_filesystem, make_and_mount

pytestmark = pytest.mark.vm


def short_cell(fs="ext4", disk="nvme", pattern="unwritten-convert", runtime=3, size="16m", iodepth=16, runs=1):
    return fio_cell(fs, disk, pattern, "libaio", iodepth=iodepth, size=size, runtime=runtime, runs=runs)


def test_each_filesystem_on_nvme_and_virtio_in_one_boot(testbed, tmp_path):
    cells = [short_cell(fs, disk) for disk in ("nvme", "virtio") for fs in ("ext4", "xfs", "ocfs2")]
    spec = fio_spec(testbed, "baseline", cells, disk_size="1G", label="each-fs")
    run_dir = new_run_dir(tmp_path, spec.label)
    rec = run_boot(spec, run_dir, say=print)
    assert rec.status == "done", rec.failures
    assert [m.cell for m in rec.measurements] == [c.id for c in cells]
    for m in rec.measurements:
        assert m.status == "ok", m
        assert m.iops > 0 and m.clat_p50_us <= m.clat_p99_us <= m.clat_p999_us
        assert (run_dir / m.fio_json).exists()
    assert len((run_dir / "measurements.jsonl").read_text().splitlines()) == 6
    # the run directory holds the spec that produced it, and the record
    assert read_spec(run_dir) == spec
    saved = json.loads((run_dir / "record.json").read_text())
    assert saved["run_id"] == run_dir.name and len(saved["measurements"]) == 6
    assert saved["spec"]["kernel"]["key"] == testbed.kernel("baseline").key


def test_counters_show_serialised_completions_and_reach_the_store(testbed, tmp_path):
    """ext4/NVMe unwritten-extent conversion, libaio, one boot of each kernel: the patched
    kernel's completions run one at a time on its dio workqueue (peak concurrency 1) where the
    baseline's overlap, and it commits the journal more often per 1000 writes; the stored rows
    carry the counters, and the verdict module reads them from the store."""
    cell = short_cell(runtime=5, size="32m", iodepth=32, runs=2)
    store = Store(tmp_path / "results.sqlite")
    rows = {}
    for kernel in ("baseline", "patched"):
        spec = fio_spec(testbed, kernel, [cell], disk_size="1G", label=f"counters-{kernel}")
        run_dir = new_run_dir(tmp_path, spec.label)
        rec = run_boot(spec, run_dir, say=print)
        assert rec.status == "done", rec.failures
        store.add_run(rec.to_json())
        rows[kernel] = store.measurements([rec.run_id])
        for m in rows[kernel]:
            print(kernel, m.run_index, m.iops, m.jbd2_commits_per_kwrite, m.dio_wq_peak_concurrency, m.counters)
            text = (run_dir / "counters" / f"{cell.cell_id.slug}-r{m.run_index}.txt").read_text()
            assert NO_TRACEFS not in text, (f"{kernel} has no event tracing: its definition needs "
                                            "fragments/tracing.config (docs/workloads.md#counted-metrics)")
            assert m.status == "ok" and m.counters["fio_writes"] > 0 and m.counters["dio_wq_items"] > 0
            assert m.counters["writes"] >= m.counters["fio_writes"]      # the journal's writes on top
            assert (run_dir / "counters" / f"{cell.cell_id.slug}-r{m.run_index}.txt").exists()
    base, new = rows["baseline"], rows["patched"]
    assert [m.dio_wq_peak_concurrency for m in new] == [1.0, 1.0]
    assert max(m.dio_wq_peak_concurrency for m in base) > 1
    assert (statistics.median(m.jbd2_commits_per_kwrite for m in new)
            > statistics.median(m.jbd2_commits_per_kwrite for m in base))
    values = cell_values(base, new)
    assert {"jbd2_commits_per_kwrite", "dio_wq_peak_concurrency"} <= set(values.base) & set(values.new)


def test_mkfs_failure_carries_tool_output(testbed, tmp_path):
    with booted(testbed, "baseline", tmp_path, disks=["virtio:64M"]) as vm:
        bad = Filesystem("xfs", ("mkfs.xfs", "-f", "-b", "size=3000", "{dev}"))
        with pytest.raises(WorkloadError) as e:
            make_and_mount(vm, bad, vm.device_for(vm.cfg.disks[0]))
        assert "mkfs.xfs" in str(e.value) and "size=3000" in str(e.value)
        assert "illegal" in str(e.value).lower() or "invalid" in str(e.value).lower()


def _capture_dio_workqueue(testbed, kernel, tmp_path, wq_prefix):
    """Run unwritten-extent AIO O_DSYNC writes with sysrq-w+t sampled every 2 s from the moment
    the measured job starts, until the dio workqueue shows up busy (at most 3 runs).
    Returns (workqueue, raw capture path, its summary lines)."""
    cell = short_cell(runtime=12, size="64m", iodepth=32)
    run = tmp_path / "run"
    with booted(testbed, kernel, tmp_path / "vm", disks=["nvme:1G"]) as vm:
        make_and_mount(vm, get_filesystem("ext4"), vm.device_for(vm.cfg.disks[0]))
        for attempt in range(3):
            _, evidence, _ = measure(vm, cell, attempt, run, sampling=SysrqSampling("wt", delay=1.0, interval=2.0))
            for ref in evidence:
                if not ref.path.endswith(".txt"):
                    continue
                raw = run / ref.path
                for d in parse_dumps(raw.read_text()):
                    for wq in d.workqueues:
                        if wq.name.startswith(wq_prefix):
                            lines = [line for dd in parse_dumps(raw.read_text()) for line in summarize_dump(dd)]
                            return wq, raw, lines
    pytest.fail(f"no busy {wq_prefix} workqueue captured in 3 runs; see {run}")


def test_baseline_capture_names_dio_dev_workqueue(testbed, tmp_path):
    wq, raw, summary = _capture_dio_workqueue(testbed, "baseline", tmp_path, "dio/")
    assert wq.name == "dio/nvme0n1"
    assert any(p.max_active > 1 for p in wq.pwqs)
    assert raw.exists() and raw.with_suffix(".json").exists()
    assert any("dio/nvme0n1" in line for line in summary)


def test_patched_capture_shows_single_threaded_dio_sync(testbed, tmp_path):
    wq, raw, summary = _capture_dio_workqueue(testbed, "patched", tmp_path, "dio-sync")
    assert wq.name == "dio-sync"
    assert all(p.max_active == 1 for p in wq.pwqs)
    assert any("dio-sync" in line and "1/1" in line for line in summary)


def test_sysrq_through_qmp_keyboard(testbed, tmp_path):
    with booted(testbed, "baseline", tmp_path) as vm:
        cap = capture_sysrq(vm, "w", via="qmp")
        assert cap.via == "qmp"
        assert "sysrq: Show Blocked State" in cap.raw
        assert [d.kind for d in cap.dumps] == ["w"]


FREEZE = [["mkdir", "-p", f"{MOUNTPOINT}/fio"], ["fsfreeze", "--freeze", MOUNTPOINT]]


def test_hang_on_frozen_filesystem_is_handled_and_the_rest_runs_in_a_fresh_boot(testbed, tmp_path):
    """The hang handler: evidence through the QMP keyboard, the VM killed within the deadline,
    the hung boot's console kept, and the cells after the hung one run in a fresh boot."""
    hung, after = short_cell("xfs", "virtio", "append-extend"), short_cell("ext4", "virtio")
    spec = fio_spec(testbed, "baseline", [hung, after], disk_size="1G", label="frozen",
                    setup=FREEZE, deadline_s=75)
    # The frozen setup applies to every cell of the boot; the second boot gets no setup.
    t0 = time.monotonic()
    first = run_boot(spec, new_run_dir(tmp_path, "frozen"), say=print)
    assert time.monotonic() - t0 < 240 + 75 + 120
    assert first.status == "hang" and first.remaining == (after.id,)
    assert [m.status for m in first.measurements] == ["hang"]
    run_dir = first.run_dir
    raws = sorted((Path(run_dir) / "sysrq").glob("hang-*-wt-*.txt"))
    assert raws, f"no raw sysrq capture in {run_dir}/sysrq"
    dumps = parse_dumps(raws[0].read_text())
    blocked = [t for d in dumps if d.kind == "w" for t in d.tasks if t.comm in ("mkdir", "fio")]
    assert blocked and all(t.state == "D" for t in blocked)
    # a write to a frozen filesystem waits for the freeze in mnt_want_write / sb_start_write
    assert any(f in ("mnt_want_write", "percpu_rwsem_wait") or "sb_start_write" in f
               for t in blocked for f in t.stack), [t.stack for t in blocked]
    assert any(blocked[0].comm in line for line in first.sysrq_summary)
    assert any(e.kind == "hung_task" and e.title.startswith("INFO: task hung in") for e in first.events)
    assert "Linux version" in (Path(run_dir) / "console.log").read_text()
    assert {e.what for e in first.evidence} == {"sysrq"}

    # execute() reboots for what a hang left, in a fresh run directory of its own
    import dataclasses
    rest = dataclasses.replace(spec.narrowed(first.remaining), workload=dataclasses.replace(
        spec.narrowed(first.remaining).workload, setup=()))
    (second,) = execute([rest], RunContext(tmp_path))
    assert isinstance(second, BootRecord) and second.status == "done"
    assert second.run_dir != first.run_dir
    assert [m.cell for m in second.measurements] == [after.id]
    assert "hung_task" in (Path(run_dir) / "events.json").read_text()  # first boot's evidence kept


def test_sysrq_sampling_during_a_run(testbed, tmp_path):
    cell = short_cell(runtime=8, size="64m", iodepth=32)
    spec = fio_spec(testbed, "patched", [cell], disk_size="1G", label="sampled",
                    sampling=SysrqSampling("w", delay=2.0, interval=2.0))
    rec = run_boot(spec, new_run_dir(tmp_path, "sampled"), say=print)
    assert rec.status == "done" and rec.measurements[0].status == "ok"
    samples = [e for e in rec.evidence if e.path.endswith(".json")]
    assert len(samples) >= 2, rec.evidence
    parsed = [json.loads((Path(rec.run_dir) / s.path).read_text()) for s in samples]
    assert all(p["via"] == "ssh" and p["dumps"] and p["dumps"][0]["kind"] == "w" for p in parsed)
