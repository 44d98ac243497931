#!/usr/bin/env python3
"""What the counted metrics cost: IOPS with and without the workqueue trace, in the same boot.

    .venv/bin/python -m benchmarks.counter_overhead [--kernel baseline] [--pairs 4] [--out DIR]

One boot with an NVMe scratch disk. On ext4 and then XFS, for the patterns that take the
completion workqueue's slow path (unwritten-convert) and its fast one (randwrite-overwrite), it
runs ``harness.run.fio.measure`` in pairs, trace on then off and the next pair off then on (so a
drift within the boot cancels), with the suite's job (libaio, 4k, iodepth 32, 32 MiB, runtime
3 s). The snapshots are taken either way; only the tracefs events differ. Prints each run's IOPS
and counters, then per filesystem and pattern the median IOPS of each arm and their ratio. The
run directory keeps every ``counters/*.txt`` (the fixtures of tests/unit/test_counters.py were
copied from such runs). The guest kernel needs event tracing (CONFIG_EVENT_TRACING).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from harness.run.boot import booted
from harness.run.fio import measure
from harness.run.plan import fio_cell
from harness.run.spec import MOUNTPOINT
from harness.run.testbed import Testbed
from harness.workloads.fs import get_filesystem, make_and_mount, unmount

PATTERNS = ("unwritten-convert", "randwrite-overwrite")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kernel", default="baseline")
    ap.add_argument("--pairs", type=int, default=4)
    ap.add_argument("--fs", action="append", choices=["ext4", "xfs"])
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="counter-overhead-"))
    bed = Testbed([args.kernel]).prepare()
    rows: list[dict] = []
    with booted(bed, args.kernel, out / "vm", disks=["nvme:1G"]) as vm:
        for fs in args.fs or ["ext4", "xfs"]:
            make_and_mount(vm, get_filesystem(fs), vm.device_for(vm.cfg.disks[0]), MOUNTPOINT)
            for pattern in PATTERNS:
                cell = fio_cell(fs, "nvme", pattern, "libaio", iodepth=32, size="32m", runtime=3)
                for i in range(2 * args.pairs):
                    trace = (i % 2 == 0) == (i // 2 % 2 == 0)     # on,off, off,on, on,off, ...
                    m, _, _ = measure(vm, cell, len(rows), out / "run", trace=trace)
                    row = {"fs": fs, "pattern": pattern, "trace": trace, "iops": m.iops, "status": m.status,
                           **{k: getattr(m, k) for k in ("jbd2_commits_per_kwrite", "flushes_per_kwrite",
                                                         "xfs_log_forces_per_kwrite", "ctxsw_per_kwrite",
                                                         "dio_wq_items_per_kwrite", "dio_wq_peak_concurrency",
                                                         "dio_wq_mean_us")}}
                    rows.append(row)
                    print(json.dumps(row), flush=True)
            unmount(vm, MOUNTPOINT)
    (out / "rows.json").write_text(json.dumps(rows, indent=1))
    print(f"| kernel | fs | pattern | IOPS trace on | IOPS trace off | on/off | runs a side |  ({out})")
    print("|---|---|---|---|---|---|---|")
    for fs in args.fs or ["ext4", "xfs"]:
        for pattern in PATTERNS:
            arm = {t: [r["iops"] for r in rows if (r["fs"], r["pattern"], r["trace"], r["status"]) ==
                       (fs, pattern, t, "ok")] for t in (True, False)}
            if arm[True] and arm[False]:
                on, off = statistics.median(arm[True]), statistics.median(arm[False])
                print(f"| {args.kernel} | {fs} | {pattern} | {on:.0f} | {off:.0f} | {on / off:.3f} | "
                      f"{len(arm[True])} |")


if __name__ == "__main__":
    main()
