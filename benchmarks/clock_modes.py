#!/usr/bin/env python3
"""Benchmark guest clock modes under TCG: today's multi-threaded TCG against QEMU's ``-icount``
(single-threaded TCG, guest time from instructions executed) with sleep on and off.

For each mode, BOOTS fresh boots of the baseline and of the patched kernel (interleaved: boot b of
every mode and kernel before boot b+1, so host drift spreads over all of them), each running every
cell RUNS times. Per mode, kernel, cell and metric it prints the median, the boot effect and the
within-boot noise (two levels: the variance of the per-boot means less the within-boot variance
over RUNS), and per mode the patch's change (median of per-boot medians, Welch on the logs as the
suite decides) and how long a boot took.

    .venv/bin/python -m benchmarks.clock_modes [--modes mttcg,3,3:off] [--boots 3] [--runs 2]
        [--cells ext4/nvme/unwritten-convert/libaio,...] [--keep DIR]

A mode is ``mttcg`` or ``SHIFT[:off]`` (icount shift, sleep=off with ``:off``), each with an
optional ``/CPUS`` (default 2). Under icount a second vCPU is costly: bringing it up took 596 s of
guest time and 130 s of wall time with sleep=off, and did not finish in 4 minutes with sleep=on.
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from pathlib import Path

from harness.executors.base import RunContext
from harness.executors.local import execute
from harness.results.effects import mde_from_cv
from harness.results.verdict import CellValues, decide_cells
from harness.run.plan import fio_cell, fio_spec
from harness.run.spec import VMSpec
from harness.run.testbed import Testbed

METRICS = ("iops", "clat_p99_us", "jbd2_commits_per_kwrite", "dio_wq_peak_concurrency")


def vm_for(mode: str) -> VMSpec:
    """``mttcg`` or ``SHIFT[:off]``, each optionally ``/CPUS`` (default 2)."""
    mode, _, cpus = mode.partition("/")
    n = int(cpus) if cpus else 2
    if mode == "mttcg":
        return VMSpec(cpus=n)
    shift, _, sleep = mode.partition(":")
    return VMSpec(cpus=n, icount_shift=int(shift), icount_sleep=sleep != "off")


def two_level(per_boot: list[list[float]]) -> tuple[float, float, float]:
    """(mean, boot-effect CV %, within-boot CV %) of values grouped by boot."""
    boots = [xs for xs in per_boot if xs]
    means = [statistics.fmean(xs) for xs in boots]
    mean = statistics.fmean(means)
    within = [statistics.variance(xs) for xs in boots if len(xs) > 1]
    w = statistics.fmean(within) if within else 0.0
    n = statistics.fmean(len(xs) for xs in boots)
    between = statistics.variance(means) - w / n if len(means) > 1 else 0.0
    cv = lambda v: math.sqrt(max(0.0, v)) / mean * 100 if mean else 0.0  # noqa: E731
    return mean, cv(between), cv(w)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--modes", default="mttcg,3,3:off")
    ap.add_argument("--kernels", default="baseline,patched")
    ap.add_argument("--cells", default="ext4/nvme/unwritten-convert/libaio,xfs/nvme/randwrite-osync/libaio")
    ap.add_argument("--boots", type=int, default=3)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--runtime", type=int, default=3)
    ap.add_argument("--keep", type=Path, help="keep the run directories here (default: a temporary one)")
    args = ap.parse_args()
    modes, kernels, cell_ids = args.modes.split(","), args.kernels.split(","), args.cells.split(",")
    bed = Testbed(kernels).prepare()
    vals: dict[tuple[str, str, str, str], list[list[float]]] = {}
    secs: dict[tuple[str, str], list[float]] = {}
    boot_s: dict[str, list[float]] = {m: [] for m in modes}
    with tempfile.TemporaryDirectory() as tmp:
        td = args.keep or Path(tmp)
        for b in range(args.boots):
            for mode in modes:
                for k in kernels:
                    cs = [fio_cell(*c.split("/"), size="32m", runtime=args.runtime, runs=args.runs) for c in cell_ids]
                    tag = mode.replace(":", "-").replace("/", "-")
                    spec = fio_spec(bed, k, cs, disk_size="2G", label=f"clock-{tag}-{k}-b{b}", vm=vm_for(mode))
                    t0 = time.monotonic()
                    (rec,) = execute([spec], RunContext(Path(td), say=lambda _m: None, max_boots_per_spec=1))
                    secs.setdefault((mode, k), []).append(time.monotonic() - t0)
                    if rec.boot_seconds:
                        boot_s[mode].append(rec.boot_seconds)
                    for c in cell_ids:
                        ms = [m for m in rec.measurements if m.cell == c and m.status == "ok"]
                        for key in METRICS:
                            vals.setdefault((mode, k, c, key), []).append(
                                [float(v) for m in ms if (v := getattr(m, key)) is not None])
                    print(f"boot {b} {mode} {k}: {rec.status}, {secs[(mode, k)][-1]:.0f} s; IOPS "
                          + "; ".join(f"{c}: {' '.join(f'{v:.0f}' for v in vals[(mode, k, c, 'iops')][-1])}"
                                      for c in cell_ids), flush=True)
    print(f"\n{args.boots} boots x {args.runs} runs of {args.runtime} s a kernel and mode ({bed.accel_name}, "
          f"{len(cell_ids)} cells a boot)")
    print(f"{'mode':<8} {'boot s':>6} {'s/boot':>6}")
    for mode in modes:
        print(f"{mode:<8} {statistics.median(boot_s[mode]) if boot_s[mode] else float('nan'):>6.1f} "
              f"{statistics.median(s for (md, _), ss in secs.items() if md == mode for s in ss):>6.0f}")
    print(f"\n{'mode':<8} {'kernel':<9} {'cell':<36} {'metric':<24} {'mean':>9} {'boot CV':>7} {'in-boot CV':>10} "
          f"{'MDE 3v3':>7}")
    for mode in modes:
        for k in kernels:
            for c in cell_ids:
                for key in METRICS:
                    per_boot = vals[(mode, k, c, key)]
                    if not any(per_boot):
                        continue
                    mean, between, within = two_level(per_boot)
                    total = math.hypot(between, within / math.sqrt(args.runs))   # CV of a boot's mean
                    print(f"{mode:<8} {k:<9} {c:<36} {key:<24} {mean:>9.1f} {between:>6.1f}% {within:>9.1f}% "
                          f"{mde_from_cv(total, total, 3, 3):>6.0f}%")
    if len(kernels) == 2:
        print(f"\nthe patch ({kernels[1]} against {kernels[0]}), every run's value, decided as the suite decides")
        for mode in modes:
            for c in cell_ids:
                cv_ = {}
                for side, k in (("base", kernels[0]), ("new", kernels[1])):
                    cv_[side] = {key: [x for xs in vals[(mode, k, c, key)] for x in xs] for key in METRICS}
                decided = decide_cells({0: CellValues(cv_["base"], cv_["new"])}, list(METRICS))[0]
                for comp in decided:
                    p = "n/a" if comp.p_value is None else f"{comp.p_value:.3g}"
                    print(f"{mode:<8} {c:<36} {comp.metric:<24} {comp.pct_change:>+7.1f}% p={p} {comp.verdict}")


if __name__ == "__main__":
    main()
