#!/usr/bin/env python3
"""Harness overhead: the same fio job run by hand over SSH versus through the harness
(harness.run.fio.measure: job file in, deadline, JSON over stdout, parse), in one VM.

    .venv/bin/python -m benchmarks.overhead [--runs 5] [--kernel baseline]

Reports wall time per measurement and fio's own IOPS for both ways, alternating them.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from harness.run.boot import booted
from harness.run.fio import fio_job, measure
from harness.run.plan import fio_cell
from harness.run.spec import MOUNTPOINT
from harness.run.testbed import Testbed
from harness.workloads.fio import fio_argv, parse_fio_json, render_job
from harness.workloads.fs import get_filesystem, make_and_mount


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kernel", default="baseline")
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    bed = Testbed([args.kernel]).prepare()
    cell = fio_cell("ext4", "nvme", "randwrite-overwrite", "libaio", iodepth=16, size="32m", runtime=5)
    with tempfile.TemporaryDirectory() as td:
        with booted(bed, args.kernel, Path(td) / "vm", disks=["nvme:1G"]) as vm:
            make_and_mount(vm, get_filesystem("ext4"), vm.device_for(vm.cfg.disks[0]), MOUNTPOINT)
            job = fio_job(cell.job, tag="hand")
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
                m, _, _ = measure(vm, cell, i, Path(td) / "run")
                kh_t.append(time.monotonic() - t0)
                kh_iops.append(m.iops)
    med = statistics.median
    print(f"by hand:      wall {med(hand_t):.2f}s  IOPS {med(hand_iops):.0f}  (median of {args.runs})")
    print(f"via harness:  wall {med(kh_t):.2f}s  IOPS {med(kh_iops):.0f}")
    print(f"overhead: wall {100 * (med(kh_t) / med(hand_t) - 1):+.1f}%  "
          f"IOPS {100 * (med(kh_iops) / med(hand_iops) - 1):+.1f}%")


if __name__ == "__main__":
    main()
