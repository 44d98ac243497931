#!/usr/bin/env python3
"""Benchmark how fio's between-boot noise depends on runtime and file size, to choose the
shortest settings whose noise still lets 3-5 runs a side detect the effects we care about.

For each (runtime, size) variant of one cell, BOOTS fresh boots (interleaved across variants, so
host drift spreads over all of them) each measure RUNS fio runs. Prints per variant: the median
IOPS, the between-boot coefficient of variation (of the per-boot medians), the within-boot CV,
the seconds a boot took, and the minimum detectable effect with 3 and 5 runs a side
(harness.results.effects.mde_from_cv of the between-boot CV).

    .venv/bin/python benchmarks/fio_noise.py [--cell ext4/nvme/unwritten-convert/libaio]
        [--runtimes 3,5,10] [--sizes 16m,64m] [--boots 4] [--runs 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from harness.results.effects import mde_from_cv
from harness.run.execute import execute
from harness.run.plan import fio_cell, fio_spec
from harness.run.testbed import Testbed


def cv(xs: list[float]) -> float:
    return statistics.stdev(xs) / statistics.mean(xs) * 100 if len(xs) > 1 else 0.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kernel", default="baseline")
    ap.add_argument("--cell", default="ext4/nvme/unwritten-convert/libaio")
    ap.add_argument("--runtimes", default="3,5,10")
    ap.add_argument("--sizes", default="16m,64m")
    ap.add_argument("--boots", type=int, default=4)
    ap.add_argument("--runs", type=int, default=2)
    args = ap.parse_args()
    fs, disk, pattern, engine = args.cell.split("/")
    variants = [(int(r), s) for r in args.runtimes.split(",") for s in args.sizes.split(",")]
    bed = Testbed([args.kernel]).prepare()
    per_boot: dict[tuple[int, str], list[list[float]]] = {v: [] for v in variants}
    secs: dict[tuple[int, str], list[float]] = {v: [] for v in variants}
    with tempfile.TemporaryDirectory() as td:
        for b in range(args.boots):
            for v in variants:
                cell = fio_cell(fs, disk, pattern, engine, size=v[1], runtime=v[0], runs=args.runs)
                spec = fio_spec(bed, args.kernel, [cell], disk_size="2G", label=f"noise-{v[0]}s-{v[1]}-b{b}")
                t0 = time.monotonic()
                (rec,) = execute([spec], Path(td), say=lambda _m: None, max_boots_per_spec=1)
                secs[v].append(time.monotonic() - t0)
                per_boot[v].append([m.iops for m in rec.measurements if m.status == "ok" and m.iops])
    print(f"{args.cell} on {args.kernel} ({bed.accel_name}), {args.boots} boots x {args.runs} runs per variant")
    print(f"{'runtime':>7} {'size':>5} {'median IOPS':>11} {'CV boots':>8} {'CV in boot':>10} "
          f"{'s/boot':>6} {'MDE 3v3':>7} {'MDE 5v5':>7}")
    for v in variants:
        medians = [statistics.median(xs) for xs in per_boot[v] if xs]
        within = statistics.mean(cv(xs) for xs in per_boot[v] if len(xs) > 1) if args.runs > 1 else 0.0
        c = cv(medians)
        print(f"{v[0]:>6}s {v[1]:>5} {statistics.median(medians):>11.0f} {c:>7.1f}% {within:>9.1f}% "
              f"{statistics.median(secs[v]):>6.0f} {mde_from_cv(c, c, 3, 3):>6.0f}% {mde_from_cv(c, c, 5, 5):>6.0f}%")


if __name__ == "__main__":
    main()
