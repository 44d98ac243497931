#!/usr/bin/env python3
"""Benchmark how fio's between-boot noise depends on runtime and file size, to choose the
shortest settings whose noise still lets 3-5 runs a side detect the effects we care about.

For each (runtime, size) variant, BOOTS fresh boots (interleaved across variants, so host drift
spreads over all of them) each measure every cell RUNS times. Prints per cell and variant: the
median IOPS, the between-boot coefficient of variation (of the per-boot medians), the within-boot
CV (with --runs 2 or more), the seconds a boot took, and the minimum detectable effect with 3 and
5 runs a side (harness.results.effects.mde_from_cv of the between-boot CV).

    .venv/bin/python -m benchmarks.fio_noise [--cells ext4/nvme/randwrite-overwrite/libaio,...]
        [--runtimes 3,5,10] [--sizes 32m,256m] [--boots 4] [--runs 1]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from harness.executors.base import RunContext
from harness.executors.local import execute
from harness.results.effects import mde_from_cv
from harness.run.plan import fio_cell, fio_spec
from harness.run.testbed import Testbed


def cv(xs: list[float]) -> float:
    return statistics.stdev(xs) / statistics.mean(xs) * 100 if len(xs) > 1 else 0.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kernel", default="baseline")
    ap.add_argument("--cells", default="ext4/nvme/randwrite-overwrite/libaio,xfs/nvme/unwritten-convert/libaio")
    ap.add_argument("--runtimes", default="3,5,10")
    ap.add_argument("--sizes", default="32m,256m")
    ap.add_argument("--boots", type=int, default=4)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--keep", type=Path, help="keep the run directories here (default: a temporary one)")
    args = ap.parse_args()
    cell_ids = args.cells.split(",")
    variants = [(int(r), s) for r in args.runtimes.split(",") for s in args.sizes.split(",")]
    bed = Testbed([args.kernel]).prepare()
    # per (cell, variant): one list of IOPS per boot
    per_boot: dict[tuple[str, tuple[int, str]], list[list[float]]] = {}
    secs: dict[tuple[int, str], list[float]] = {v: [] for v in variants}
    with tempfile.TemporaryDirectory() as tmp:
        td = args.keep or Path(tmp)
        for b in range(args.boots):
            for v in variants:
                cs = [fio_cell(*c.split("/"), size=v[1], runtime=v[0], runs=args.runs) for c in cell_ids]
                spec = fio_spec(bed, args.kernel, cs, disk_size="2G", label=f"noise-{v[0]}s-{v[1]}-b{b}")
                t0 = time.monotonic()
                (rec,) = execute([spec], RunContext(Path(td), say=lambda _m: None, max_boots_per_spec=1))
                secs[v].append(time.monotonic() - t0)
                for c in cell_ids:
                    per_boot.setdefault((c, v), []).append(
                        [m.iops for m in rec.measurements if m.cell == c and m.status == "ok" and m.iops])
                print(f"boot {b} {v[0]}s {v[1]}: {secs[v][-1]:.0f} s; IOPS "
                      + "; ".join(f"{c}: {' '.join(f'{x:.0f}' for x in per_boot[(c, v)][-1])}" for c in cell_ids),
                      flush=True)
    print(f"on {args.kernel} ({bed.accel_name}), {args.boots} boots x {args.runs} runs per variant, "
          f"{len(cell_ids)} cells a boot")
    print(f"{'cell':<38} {'runtime':>7} {'size':>5} {'median IOPS':>11} {'CV boots':>8} {'CV in boot':>10} "
          f"{'s/boot':>6} {'MDE 3v3':>7} {'MDE 5v5':>7} {'MDE 8v8':>7}")
    for c in cell_ids:
        for v in variants:
            runs = per_boot[(c, v)]
            medians = [statistics.median(xs) for xs in runs if xs]
            within = statistics.mean(cv(xs) for xs in runs if len(xs) > 1) if args.runs > 1 else 0.0
            k = cv(medians)
            print(f"{c:<38} {v[0]:>6}s {v[1]:>5} {statistics.median(medians):>11.0f} {k:>7.1f}% "
                  f"{within:>9.1f}% {statistics.median(secs[v]):>6.0f} {mde_from_cv(k, k, 3, 3):>6.0f}% "
                  f"{mde_from_cv(k, k, 5, 5):>6.0f}% {mde_from_cv(k, k, 8, 8):>6.0f}%")


if __name__ == "__main__":
    main()
