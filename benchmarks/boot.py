#!/usr/bin/env python3
"""Benchmark boot-to-SSH: N boots of a kernel with one NVMe and one virtio disk.

    .venv/bin/python -m benchmarks.boot [--kernel baseline] [--image debian-bookworm] [--boots 5]
        [--accel tcg] [--cmdline "..."]

Prints the median, the quartiles and every boot's seconds (the distribution), then the shutdown.
A boot that fails is counted, not fatal: each failure is classified as the host's (a known
emulator fault, harness.evidence.infra) or the kernel's, with its first console report, so a
run of 30 boots measures how often a kernel fails to boot here and why.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path

from harness.errors import BootError
from harness.evidence.events import scan_console_file
from harness.evidence.infra import infrastructure_loss
from harness.run.boot import booted
from harness.run.testbed import Testbed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kernel", default="baseline")
    ap.add_argument("--boots", type=int, default=5)
    ap.add_argument("--accel", choices=["kvm", "tcg"])
    ap.add_argument("--image", default="debian-bookworm")
    ap.add_argument("--cmdline", default="", help="extra kernel command line")
    args = ap.parse_args()
    bed = Testbed([args.kernel], image=args.image, accel=args.accel).prepare()
    boots, shutdowns = [], []
    failed: Counter[str] = Counter()
    for _ in range(args.boots):
        with tempfile.TemporaryDirectory() as td:
            try:
                with booted(bed, args.kernel, Path(td), disks=["nvme:1G", "virtio:1G"], cmdline=args.cmdline) as vm:
                    boots.append(vm.boot_seconds)
                    t0 = time.monotonic()
                shutdowns.append(time.monotonic() - t0)
            except BootError as e:
                events = scan_console_file(Path(td) / "console.log") if (Path(td) / "console.log").exists() else []
                why = infrastructure_loss("boot-failed", [str(e)], events, bed.accel_name)
                first = events[0].title if events else str(e).splitlines()[0]
                failed[f"{'host' if why else 'kernel'}: {first}"] += 1
    if boots:
        q = statistics.quantiles(boots, n=4) if len(boots) > 1 else [boots[0]] * 3
        print(f"boot to SSH ({args.kernel}, {args.image}, {bed.accel_name}, {len(boots)} of {args.boots} boots): "
              f"median {statistics.median(boots):.1f}s, quartiles {q[0]:.1f}-{q[2]:.1f}s, min {min(boots):.1f}s, "
              f"max {max(boots):.1f}s")
        print("every boot: " + " ".join(f"{b:.1f}" for b in sorted(boots)))
        print(f"shutdown: median {statistics.median(shutdowns):.1f}s")
    print(f"failed boots: {sum(failed.values())} of {args.boots}" +
          "".join(f"\n  {n} x {what}" for what, n in failed.most_common()))


if __name__ == "__main__":
    main()
