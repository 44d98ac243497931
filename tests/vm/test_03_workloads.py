"""Real workloads and evidence: ext4/XFS/ocfs2 on NVMe and virtio, sysrq captures naming the
dio workqueue on both kernels, and hang detection on a frozen filesystem."""

import json
import threading
import time

import pytest

from harness.errors import HangError
from harness.evidence.capture import capture_sysrq
from harness.evidence.sysrq import parse_dumps
from harness.results.rundir import RunDir
from harness.runner import MOUNTPOINT, measure_filesystem, run_fio_once
from harness.session import vm_config
from harness.vm.machine import VM
from harness.workloads.fio import FioJob
from harness.workloads.fs import get_filesystem, make_and_mount, unmount

pytestmark = pytest.mark.vm


def short_job(pattern="unwritten-convert", engine="libaio", runtime=3, size="16m", iodepth=16):
    return FioJob(pattern=pattern, directory=f"{MOUNTPOINT}/fio", engine=engine, iodepth=iodepth,
                  size=size, runtime=runtime)


def test_each_filesystem_on_nvme_and_virtio(baseline_kernel, image, accel, tmp_path):
    cfg = vm_config(baseline_kernel, image, accel, tmp_path / "vm", ["nvme:1G", "virtio:1G"])
    run = RunDir(tmp_path / "run", kernel="baseline")
    with VM(cfg) as vm:
        for disk in cfg.disks:
            for fs in ("ext4", "xfs", "ocfs2"):
                ms = measure_filesystem(vm, disk, get_filesystem(fs), [short_job()], 1, run, kernel="baseline")
                (m,) = ms
                assert m.status == "ok", m
                r = m.result
                assert r.iops > 0 and r.total_ios > 0 and r.error == 0
                assert r.clat_p50_us <= r.clat_p99_us <= r.clat_p999_us
                assert (fs, disk.kind) == (m.fs, m.disk)
                mounts = vm.run(["findmnt", "-n", MOUNTPOINT], check=False).stdout
                assert mounts == "", "scratch filesystem left mounted"
    lines = (run.path / "measurements.jsonl").read_text().splitlines()
    assert len(lines) == 6


def test_mkfs_failure_carries_tool_output(baseline_kernel, image, accel, tmp_path):
    from harness.errors import WorkloadError
    from harness.workloads.fs import Filesystem
    cfg = vm_config(baseline_kernel, image, accel, tmp_path, ["virtio:64M"])
    with VM(cfg) as vm:
        bad = Filesystem("xfs", ("mkfs.xfs", "-f", "-b", "size=3000", "{dev}"))
        with pytest.raises(WorkloadError) as e:
            make_and_mount(vm, bad, vm.device_for(cfg.disks[0]))
        assert "mkfs.xfs" in str(e.value) and "size=3000" in str(e.value)
        assert "illegal" in str(e.value).lower() or "invalid" in str(e.value).lower()


def _capture_dio_workqueue(kernel, image, accel, tmp_path, wq_prefix):
    """Run unwritten-extent AIO O_DSYNC writes and take sysrq-w+t mid-run until the dio
    workqueue shows up busy. Returns (workqueue, blocked kworker tasks, capture)."""
    cfg = vm_config(kernel, image, accel, tmp_path / "vm", ["nvme:1G"])
    run = RunDir(tmp_path / "run", kernel=kernel.name)
    with VM(cfg) as vm:
        make_and_mount(vm, get_filesystem("ext4"), vm.device_for(cfg.disks[0]))
        for attempt in range(3):
            found = {}

            def sample():
                time.sleep(2.5)
                for _ in range(4):
                    cap = capture_sysrq(vm, "wt", via="ssh", out_dir=run.subdir("sysrq"), label=f"a{attempt}")
                    for d in cap.dumps:
                        for wq in d.workqueues:
                            if wq.name.startswith(wq_prefix):
                                found["wq"], found["cap"] = wq, cap
                    if "wq" in found:
                        return
            t = threading.Thread(target=sample)
            t.start()
            run_fio_once(vm, short_job(runtime=12, size="64m", iodepth=32), run, f"ev{attempt}",
                         kernel=kernel.name, fs="ext4", disk="nvme", run_index=attempt)
            t.join(120)
            if "wq" in found:
                return found["wq"], found["cap"]
    pytest.fail(f"no busy {wq_prefix} workqueue captured in 3 attempts; see {run.path}")


def test_baseline_capture_names_dio_dev_workqueue(baseline_kernel, image, accel, tmp_path):
    wq, cap = _capture_dio_workqueue(baseline_kernel, image, accel, tmp_path, "dio/")
    assert wq.name == "dio/nvme0n1"
    assert any(p.max_active > 1 for p in wq.pwqs)
    assert cap.raw_path.exists() and cap.json_path.exists()
    assert any("dio/nvme0n1" in line for line in cap.summary())


def test_patched_capture_shows_single_threaded_dio_sync(patched_kernel, image, accel, tmp_path):
    wq, cap = _capture_dio_workqueue(patched_kernel, image, accel, tmp_path, "dio-sync")
    assert wq.name == "dio-sync"
    assert all(p.max_active == 1 for p in wq.pwqs)
    assert any("dio-sync" in line and "1/1" in line for line in cap.summary())


def test_sysrq_through_qmp_keyboard(baseline_kernel, image, accel, tmp_path):
    cfg = vm_config(baseline_kernel, image, accel, tmp_path)
    with VM(cfg) as vm:
        cap = capture_sysrq(vm, "w", via="qmp")
        assert cap.via == "qmp"
        assert "sysrq: Show Blocked State" in cap.raw
        assert [d.kind for d in cap.dumps] == ["w"]


def test_hang_on_frozen_filesystem_collects_evidence_and_kills_vm(baseline_kernel, image, accel, tmp_path):
    cfg = vm_config(baseline_kernel, image, accel, tmp_path / "vm", ["virtio:1G"])
    run = RunDir(tmp_path / "run", kernel="baseline")
    with VM(cfg) as vm:
        make_and_mount(vm, get_filesystem("xfs"), vm.device_for(cfg.disks[0]))
        vm.run(["mkdir", "-p", f"{MOUNTPOINT}/fio"])
        vm.run(["fsfreeze", "--freeze", MOUNTPOINT])
        t0 = time.monotonic()
        with pytest.raises(HangError) as e:
            run_fio_once(vm, short_job(pattern="append-extend"), run, "frozen", kernel="baseline",
                         fs="xfs", disk="virtio", run_index=0, deadline=75)
        assert time.monotonic() - t0 < 75 + 90
        assert not vm.alive, "the hung VM must be killed"
    ev = e.value.evidence_dir
    raws = sorted(ev.glob("hang-frozen-wt-*.txt"))
    assert raws, f"no raw sysrq capture in {ev}"
    dumps = parse_dumps(raws[0].read_text())
    # whichever step touched the frozen filesystem first (mkdir -p of the job directory, or fio)
    blocked = [t for d in dumps if d.kind == "w" for t in d.tasks if t.comm in ("mkdir", "fio")]
    assert blocked and all(t.state == "D" for t in blocked)
    # a write to a frozen filesystem waits for the freeze in mnt_want_write / sb_start_write
    assert any(f in ("mnt_want_write", "percpu_rwsem_wait") or "sb_start_write" in f
               for t in blocked for f in t.stack), [t.stack for t in blocked]
    assert "made no progress" in str(e.value) and blocked[0].comm in str(e.value)
    events = json.loads((run.path / "events.json").read_text())
    assert any(ev["kind"] == "hung_task" and ev["title"].startswith("INFO: task hung in") for ev in events)


def test_periodic_sysrq_sampling_during_a_run(patched_kernel, image, accel, tmp_path):
    cfg = vm_config(patched_kernel, image, accel, tmp_path / "vm", ["nvme:1G"])
    run = RunDir(tmp_path / "run", kernel="patched")
    with VM(cfg) as vm:
        make_and_mount(vm, get_filesystem("ext4"), vm.device_for(cfg.disks[0]))
        m = run_fio_once(vm, short_job(runtime=8, size="64m", iodepth=32), run, "sampled", kernel="patched",
                         fs="ext4", disk="nvme", run_index=0, sample_interval=2.0)
    assert m.status == "ok" and m.result.iops > 0
    samples = sorted((run.path / "sysrq").glob("sample*-w-*.json"))
    assert len(samples) >= 2, samples
    parsed = [json.loads(p.read_text()) for p in samples]
    assert all(p["via"] == "ssh" and p["dumps"] and p["dumps"][0]["kind"] == "w" for p in parsed)
