#!/usr/bin/env python3
"""Which AIO O_DIRECT write completions are cheap and which block, per filesystem, disk and job.

    .venv/bin/python -m benchmarks.completion_paths [--runs 3] [--runtime 5] [--out DIR]

One boot per kernel (baseline, then patched) with an NVMe and a virtio-blk scratch disk. For
each disk, filesystem and job it runs fio (libaio, 4k, iodepth 32) ``--runs`` times and reads
the guest's counters around each run:

* ``/sys/block/<dev>/stat``: write and flush requests the block layer sent to the device
  (a flush is a REQ_PREFLUSH request, e.g. from ``blkdev_issue_flush()`` in ``ext4_sync_file()``);
* ``/sys/block/<dev>/queue/fua``: whether the device takes FUA writes;
* ext4: ``/proc/fs/jbd2/<dev>-8/info`` (transactions committed);
  XFS: ``/proc/fs/xfs/stat`` line ``log`` (log writes and log forces).

In 6.1 every AIO direct write completes in the ``dio/<dev>`` workqueue
(``iomap_dio_bio_end_io()`` queues ``iomap_dio_complete_work()``), so the workqueue's
concurrency matters only when that work blocks: a flush or journal commit in
``generic_write_sync()``, an unwritten-extent conversion or an i_size update. A pure O_DSYNC
overwrite on a device with FUA skips all of them (``iomap_dio_rw()`` sets
``IOMAP_DIO_WRITE_FUA`` and clears ``IOMAP_DIO_NEED_SYNC`` when every bio went out with FUA).

Besides the suite's four patterns (``randwrite-osync`` is O_SYNC, what fio's ``sync=1`` means: no
FUA shortcut, and every mtime change makes the inode sync-dirty, so completions wait for a journal
commit), one ext4 variant shows what the file layout does: ``overwrite-unsynced`` (the prep job
without ``end_fsync``: the layout's transaction may still be running when the measured writes
start).

Every figure is TCG on this machine's cores; IOPS vary 5-9% between boots.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from harness.run.boot import booted
from harness.run.spec import MOUNTPOINT
from harness.run.testbed import Testbed
from harness.vm.machine import VM
from harness.workloads.fio import FioJob, fio_argv, parse_fio_json, render_job
from harness.workloads.fs import get_filesystem, make_and_mount, unmount

KERNELS = ("baseline", "patched")
DISKS = ("nvme:2G", "virtio:2G")
SUITE_JOBS = ("randwrite-overwrite", "randwrite-osync", "unwritten-convert", "append-extend")
EXT4_VARIANTS = ("overwrite-unsynced",)


@dataclass(frozen=True)
class Counters:
    writes: int
    flushes: int
    commits: int       # ext4: jbd2 transactions; XFS: log forces

    def __sub__(self, other: Counters) -> Counters:
        return Counters(self.writes - other.writes, self.flushes - other.flushes, self.commits - other.commits)


def job_text(job: str, size: str, runtime: int, tag: str) -> str:
    """fio job text for a suite pattern or the ext4 ``overwrite-unsynced`` variant."""
    pattern = "randwrite-overwrite" if job in EXT4_VARIANTS else job
    text = render_job(FioJob(pattern=pattern, directory=f"{MOUNTPOINT}/cp", engine="libaio", iodepth=32,
                             size=size, runtime=runtime, tag=tag))
    if job == "overwrite-unsynced":
        assert "end_fsync=1" in text
        text = text.replace("end_fsync=1", "end_fsync=0")
    return text


def read_counters(vm: VM, dev: str, fstype: str) -> Counters:
    """Block-layer write and flush requests of ``dev`` and the filesystem's commit count."""
    name = dev.removeprefix("/dev/")
    stat = vm.run(["cat", f"/sys/block/{name}/stat"], timeout=30).stdout.split()
    writes, flushes = int(stat[4]), int(stat[15]) if len(stat) > 15 else -1
    if fstype == "ext4":
        info = vm.run(["cat", f"/proc/fs/jbd2/{name}-8/info"], timeout=30).stdout
        commits = int(info.split()[0])          # "N transactions (M requested), each up to ..."
    else:
        log = next(line for line in vm.run(["cat", "/proc/fs/xfs/stat"], timeout=30).stdout.splitlines()
                   if line.startswith("log "))
        commits = int(log.split()[4])           # log: writes blocks noiclogs force force_sleep
    return Counters(writes, flushes, commits)


def run_one(vm: VM, work: Path, dev: str, fstype: str, job: str, tag: str, runtime: int) -> dict:
    """One fio run with the counters around it."""
    local = work / f"{tag}.fio"
    local.write_text(job_text(job, "32m", runtime, tag))
    vm.put(local, f"/root/{local.name}")
    before = read_counters(vm, dev, fstype)
    res = vm.run(fio_argv(f"/root/{local.name}"), timeout=runtime * 3 + 180)
    delta = read_counters(vm, dev, fstype) - before
    r = parse_fio_json(res.stdout, source=tag)[0]
    return {"iops": r.iops, "ios": r.total_ios, "p99_us": r.clat_p99_us, "writes": delta.writes,
            "flushes": delta.flushes, "commits": delta.commits}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--runtime", type=int, default=5)
    ap.add_argument("--out", type=Path, default=Path("completion-paths"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    bed = Testbed(list(KERNELS)).prepare()
    rows: list[dict] = []
    for kernel in KERNELS:
        with tempfile.TemporaryDirectory() as td, \
                booted(bed, kernel, Path(td) / "vm", disks=DISKS) as vm:
            for disk in vm.cfg.disks:
                dev = vm.device_for(disk)
                fua = vm.run(["cat", f"/sys/block/{dev.removeprefix('/dev/')}/queue/fua"], timeout=30).stdout.strip()
                for fstype in ("ext4", "xfs"):
                    make_and_mount(vm, get_filesystem(fstype), dev, MOUNTPOINT)
                    vm.run(["mkdir", "-p", f"{MOUNTPOINT}/cp"], timeout=30)
                    jobs = SUITE_JOBS + (EXT4_VARIANTS if fstype == "ext4" else ())
                    for i in range(args.runs):
                        for job in jobs:
                            t0 = time.monotonic()
                            row = run_one(vm, Path(td), dev, fstype, job, f"{kernel}-{disk.kind}-{fstype}-{job}-{i}",
                                          args.runtime)
                            row.update(kernel=kernel, disk=disk.kind, fs=fstype, job=job, run=i, fua=fua,
                                       wall_s=round(time.monotonic() - t0, 1))
                            rows.append(row)
                            print(json.dumps(row), flush=True)
                    unmount(vm, MOUNTPOINT)
    (args.out / "rows.json").write_text(json.dumps(rows, indent=1))
    print_table(rows)


def print_table(rows: list[dict]) -> None:
    """Median per (disk, fs, job): IOPS per kernel, change, and per-write flush and commit rates."""
    med = statistics.median
    keys = sorted({(r["disk"], r["fs"], r["job"]) for r in rows})
    print("| disk | fs | job | FUA | baseline IOPS | patched IOPS | change | flushes/write (base) "
          "| commits/1000 writes (base) | commits/1000 writes (patched) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for disk, fs, job in keys:
        sel = {k: [r for r in rows if (r["disk"], r["fs"], r["job"], r["kernel"]) == (disk, fs, job, k)]
               for k in KERNELS}
        if not all(sel.values()):
            continue
        iops = {k: med(r["iops"] for r in v) for k, v in sel.items()}
        rate = {k: med(1000 * r["commits"] / max(1, r["writes"]) for r in v) for k, v in sel.items()}
        flush = med(r["flushes"] / max(1, r["writes"]) for r in sel["baseline"])
        print(f"| {disk} | {fs} | {job} | {sel['baseline'][0]['fua']} | {iops['baseline']:.0f} | "
              f"{iops['patched']:.0f} | {100 * (iops['patched'] / iops['baseline'] - 1):+.0f}% | {flush:.2f} | "
              f"{rate['baseline']:.1f} | {rate['patched']:.1f} |")


if __name__ == "__main__":
    main()
