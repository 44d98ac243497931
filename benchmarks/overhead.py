#!/usr/bin/env python3
"""Harness overhead: the same fio job run by hand over SSH versus through the harness
(run_fio_once: job file copy, deadline, JSON copy-back and parse, console scan), in one VM.

    .venv/bin/python benchmarks/overhead.py [--runs 5] [--kernel baseline]

Reports wall time per measurement and fio's own IOPS for both ways, alternating them.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from harness.image.build import build_image
from harness.kernel.build import build_kernel
from harness.results.rundir import RunDir
from harness.runner import MOUNTPOINT, run_fio_once
from harness.session import vm_config
from harness.vm.accel import choose_accel
from harness.vm.machine import VM
from harness.workloads.fio import FioJob, fio_argv, parse_fio_json, render_job
from harness.workloads.fs import get_filesystem, make_and_mount


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kernel", default="baseline")
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    kb, img = build_kernel(args.kernel), build_image("debian-bookworm")
    acc = choose_accel(kb.bzimage)
    job = FioJob(pattern="randwrite-overwrite", directory=f"{MOUNTPOINT}/fio", iodepth=16, size="32m", runtime=5)
    with tempfile.TemporaryDirectory() as td:
        cfg = vm_config(kb, img, acc, Path(td) / "vm", ["nvme:1G"])
        run = RunDir(Path(td) / "run", purpose="overhead benchmark")
        with VM(cfg) as vm:
            make_and_mount(vm, get_filesystem("ext4"), vm.device_for(cfg.disks[0]))
            (Path(td) / "job.fio").write_text(render_job(job))
            vm.run(["mkdir", "-p", "/root/bench", job.directory])
            vm.put(Path(td) / "job.fio", "/root/bench/job.fio")
            hand_t, hand_iops, kh_t, kh_iops = [], [], [], []
            for i in range(args.runs):
                t0 = time.monotonic()
                res = vm.run(fio_argv("/root/bench/job.fio"), timeout=600)
                hand_t.append(time.monotonic() - t0)
                hand_iops.append(parse_fio_json(res.stdout)[0].iops)
                t0 = time.monotonic()
                m = run_fio_once(vm, job, run, f"bench{i}", kernel=args.kernel, fs="ext4", disk="nvme", run_index=i)
                kh_t.append(time.monotonic() - t0)
                kh_iops.append(m.result.iops)
    med = statistics.median
    print(f"by hand:      wall {med(hand_t):.2f}s  IOPS {med(hand_iops):.0f}  (median of {args.runs})")
    print(f"via harness:  wall {med(kh_t):.2f}s  IOPS {med(kh_iops):.0f}")
    print(f"overhead: wall {100 * (med(kh_t) / med(hand_t) - 1):+.1f}%  IOPS {100 * (med(kh_iops) / med(hand_iops) - 1):+.1f}%")


if __name__ == "__main__":
    main()
