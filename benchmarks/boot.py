#!/usr/bin/env python3
"""Benchmark boot-to-SSH: N boots of a kernel with one NVMe and one virtio disk.

    .venv/bin/python benchmarks/boot.py [--kernel baseline] [--boots 5] [--accel tcg]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from harness.run.boot import booted
from harness.run.testbed import Testbed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kernel", default="baseline")
    ap.add_argument("--boots", type=int, default=5)
    ap.add_argument("--accel", choices=["kvm", "tcg"])
    args = ap.parse_args()
    bed = Testbed([args.kernel], accel=args.accel).prepare()
    boots, shutdowns = [], []
    for _ in range(args.boots):
        with tempfile.TemporaryDirectory() as td:
            with booted(bed, args.kernel, Path(td), disks=["nvme:1G", "virtio:1G"]) as vm:
                boots.append(vm.boot_seconds)
                t0 = time.monotonic()
            shutdowns.append(time.monotonic() - t0)
    print(f"boot to SSH ({bed.accel_name}, {args.boots} boots): median {statistics.median(boots):.1f}s, "
          f"min {min(boots):.1f}s, max {max(boots):.1f}s")
    print(f"shutdown: median {statistics.median(shutdowns):.1f}s")


if __name__ == "__main__":
    main()
