#!/usr/bin/env python3
"""Benchmark boot-to-SSH: N boots of a kernel with one NVMe and one virtio disk.

    .venv/bin/python -m benchmarks.boot [--kernel baseline] [--image debian-bookworm] [--boots 5]
        [--accel tcg]

Prints the median, the quartiles and every boot's seconds (the distribution), then the shutdown.
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
    ap.add_argument("--image", default="debian-bookworm")
    args = ap.parse_args()
    bed = Testbed([args.kernel], image=args.image, accel=args.accel).prepare()
    boots, shutdowns = [], []
    for _ in range(args.boots):
        with tempfile.TemporaryDirectory() as td:
            with booted(bed, args.kernel, Path(td), disks=["nvme:1G", "virtio:1G"]) as vm:
                boots.append(vm.boot_seconds)
                t0 = time.monotonic()
            shutdowns.append(time.monotonic() - t0)
    q = statistics.quantiles(boots, n=4) if len(boots) > 1 else [boots[0]] * 3
    print(f"boot to SSH ({args.image}, {bed.accel_name}, {args.boots} boots): median "
          f"{statistics.median(boots):.1f}s, quartiles {q[0]:.1f}-{q[2]:.1f}s, min {min(boots):.1f}s, "
          f"max {max(boots):.1f}s")
    print("every boot: " + " ".join(f"{b:.1f}" for b in sorted(boots)))
    print(f"shutdown: median {statistics.median(shutdowns):.1f}s")


if __name__ == "__main__":
    main()
