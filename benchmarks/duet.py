#!/usr/bin/env python3
"""Duet runs against alternating boots (issue 20, item 3): do two guests running the same fio
cell at the same moment cancel what the host does better than two boots one after the other?

Bulej et al. ("Duet Benchmarking", 2020) run the two versions side by side on a noisy cloud host
and compare them pair by pair: whatever the host does during the pair, it does to both. The
harness's paired rule already takes one ratio per *round* of two adjacent boots (reference, then
kernel: ``verdict.paired_rule``, the rule of `kharness check` and a bisect's endpoints). This
benchmark measures both designs on the same cell, the same kernels and the same stretch of the
host:

* ``duet``: one pair is two boots (``--baseline``, ``--kernel``) started together, in two threads
  of this process, each the harness's own unit of work (``run.boot.run_boot``: its own QEMU, its
  own overlay and scratch disk, ``--runs`` fio runs of ``--runtime`` seconds);
* ``alternate``: the same two boots one after the other.

The modes take turns pair by pair (the first mode of a pair alternates too), so a slow stretch of
the host falls on both. With ``--hog I`` the host runs one CPU-bound process a core during the
I-th pair of each mode. Per pair: the ratio of the kernel's median IOPS to the baseline's. Per
mode: the spread of the pairs' log ratios (what the paired rule's noise is), their geometric
mean, the paired rule's verdict, the minimum detectable effect of 3 and 8 pairs (paired t, 80%
power) and the wall time a pair.

    flock /tmp/kharness-real.lock .venv/bin/python -m benchmarks.duet --kernel patched --baseline baseline \\
        [--pairs 6] [--hog 2] [--cell ext4/nvme/unwritten-convert/libaio] [--out FILE.jsonl]
    .venv/bin/python -m benchmarks.duet --table FILE.jsonl

One JSON line per pair goes to ``--out`` (default ``~/.cache/kharness/bench/duet.jsonl``), with
the run directories; the table reads them back.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import statistics
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from scipy.stats import t as student_t

from harness.paths import cache_dir
from harness.results.verdict import measured, metric, paired_rule, round_logs
from harness.run.boot import run_boot
from harness.run.plan import fio_cell, fio_spec
from harness.run.records import BootRecord
from harness.run.testbed import DEFAULT_IMAGE, Testbed

MODES = ("duet", "alternate")


def mde_pct(sd: float, pairs: int, alpha: float = 0.05, power: float = 0.8) -> float | None:
    """The smallest change a paired t-test on ``pairs`` log ratios of spread ``sd`` detects with
    the given power (two-sided alpha), in percent."""
    if pairs < 2:
        return None
    df = pairs - 1
    d = (student_t.ppf(1 - alpha / 2, df) + student_t.ppf(power, df)) * sd / math.sqrt(pairs)
    return (1 - math.exp(-d)) * 100


def iops(rec: BootRecord) -> list[float]:
    return [v for v in measured(rec.measurements, [metric("iops")]).get("iops", []) if v]


@contextlib.contextmanager
def hogged(on: bool) -> Iterator[None]:
    if not on:
        yield
        return
    from tests.helpers.hog import Hog
    with Hog():
        yield


def one_pair(bed: Testbed, args: argparse.Namespace, mode: str, index: int, root: Path) -> dict:
    """One pair of boots in ``mode``; its line."""
    fs, disk, pattern, engine = args.cell.split("/")
    cell = fio_cell(fs, disk, pattern, engine, iodepth=32, size=args.size, runtime=args.runtime, runs=args.runs)
    specs = {side: fio_spec(bed, k, [cell], disk_size="2G", label=f"duet-{mode}-{index}-{side}", role=side)
             for side, k in (("base", args.baseline), ("new", args.kernel))}
    stamp = time.strftime("%Y%m%d-%H%M%S")
    dirs = {side: root / f"{stamp}-{mode}{index}-{side}" for side in specs}
    for d in dirs.values():
        d.mkdir(parents=True)

    def boot(side: str) -> BootRecord:
        return run_boot(specs[side], dirs[side], say=lambda s: None, group=f"duet-{stamp}", front_end="benchmark")

    t0 = time.monotonic()
    with hogged(index in args.hog):
        if mode == "duet":
            with ThreadPoolExecutor(2) as pool:
                recs = dict(zip(specs, pool.map(boot, specs)))
        else:
            recs = {side: boot(side) for side in specs}
    wall = time.monotonic() - t0
    vals = {side: iops(r) for side, r in recs.items()}
    line = {"mode": mode, "pair": index, "hog": index in args.hog, "kernel": args.kernel,
            "baseline": args.baseline, "cell": args.cell, "base": vals["base"], "new": vals["new"],
            "wall_s": round(wall, 1), "run_dirs": {s: str(d) for s, d in dirs.items()},
            "failures": [f for r in recs.values() for f in r.failures]}
    ratio = (statistics.median(vals["new"]) / statistics.median(vals["base"])
             if vals["new"] and vals["base"] else None)
    print(f"{mode} pair {index}{' (hogged)' if line['hog'] else ''}: base {_fmt(vals['base'])}, "
          f"new {_fmt(vals['new'])}, ratio {ratio if ratio is None else round(ratio, 3)}, {wall:.0f} s", flush=True)
    return line


def _fmt(xs: list[float]) -> str:
    return "/".join(f"{x:.0f}" for x in xs) or "-"


def table(lines: list[dict]) -> str:
    """Per mode: pairs, the log ratios' spread, the change, the paired rule, MDE, wall time."""
    out = ["| mode | pairs | IOPS a boot, baseline (median, range) | spread of a pair's log ratio | "
           "change | paired rule (10%) | MDE 3 pairs | MDE 8 pairs | wall a pair |",
           "|---|---|---|---|---|---|---|---|---|"]
    for mode in MODES:
        mine = [x for x in lines if x["mode"] == mode and x["base"] and x["new"]]
        if len(mine) < 2:
            continue
        rounds = [(x["base"], x["new"]) for x in mine]
        logs = round_logs(rounds)
        sd = statistics.stdev(logs)
        step = paired_rule(rounds, min_effect_pct=10)
        base = [statistics.median(x["base"]) for x in mine]
        m3, m8 = mde_pct(sd, 3), mde_pct(sd, 8)
        out.append(f"| {mode} | {len(mine)} | {statistics.median(base):.0f} ({min(base):.0f}-{max(base):.0f}) | "
                   f"{sd * 100:.1f}% | {step.pct:+.1f}% | {step.outcome} (p={step.p_value:.2g}) | "
                   f"{m3:.0f}% | {m8:.0f}% | {statistics.median(x['wall_s'] for x in mine):.0f} s |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kernel", default="patched")
    ap.add_argument("--baseline", default="baseline")
    ap.add_argument("--cell", default="ext4/nvme/unwritten-convert/libaio")
    ap.add_argument("--pairs", type=int, default=6, help="pairs of boots in each mode")
    ap.add_argument("--runs", type=int, default=3, help="fio runs a boot")
    ap.add_argument("--runtime", type=int, default=4, help="seconds a fio run")
    ap.add_argument("--size", default="32m")
    ap.add_argument("--hog", type=int, action="append", default=[], help="pair index to run on a busy host")
    ap.add_argument("--accel", choices=["kvm", "tcg"])
    ap.add_argument("--out", type=Path, default=cache_dir("bench") / "duet.jsonl")
    ap.add_argument("--table", type=Path, help="print the table of saved pairs and stop")
    args = ap.parse_args()
    if args.table:
        print(table([json.loads(x) for x in args.table.read_text().splitlines() if x.strip()]))
        return
    from harness.procs import install_signal_handlers
    install_signal_handlers()
    bed = Testbed([args.baseline, args.kernel], image=DEFAULT_IMAGE, accel=args.accel, say=print).prepare()
    root = cache_dir("bench") / "duet"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(args.pairs):
        for mode in (MODES if i % 2 == 0 else MODES[::-1]):
            line = one_pair(bed, args, mode, i, root)
            lines.append(line)
            with open(args.out, "a") as fh:
                fh.write(json.dumps(line) + "\n")
    print(table(lines))


if __name__ == "__main__":
    main()
