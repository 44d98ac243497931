"""Calibrated boots against today's verdicts, on real VMs: does each run's calibration (how much
of the host its guest had, harness.results.calibration) explain the boots' variance, and does a
boot slowed by a busy host still leave a clear change clear?

Each repeat is one real matrix run (the suite's driver, quick sizes, no adaptive repeats, so
every repeat has the same runs) of --kernel against --baseline; with --hog I, the I-th boot of
the plan (0: the first baseline boot) runs while the host is kept busy (one CPU-bound process
per core, tests/helpers/hog.py). For every repeat it prints, per cell: the IOPS verdict from the
raw values and from the calibrated ones (change, p, minimum detectable effect), each side's
between-boot CV raw and normalised, and the fit (slope, R^2, p, used or not and why).

    .venv/bin/python -m benchmarks.calibration [--kernel patched] [--baseline baseline]
        [--fs ext4,xfs] [--runs 3] [--hog 0] [--repeats 1] [--json out.jsonl]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

from harness.drivers.matrix import MatrixRun, make_profile
from harness.executors.base import RunContext
from harness.executors.local import LocalExecutor
from harness.results.calibration import TIMED
from harness.results.verdict import CellValues, calibrated, decide_cells, metric
from harness.run.records import BootRecord
from harness.run.spec import RunSpec
from tests.helpers.hog import Hog


class HoggingExecutor(LocalExecutor):
    """The local executor, with the host kept busy during the boots whose plan index is in ``hog``."""

    def __init__(self, hog: set[int]):
        self.hog, self.index = hog, 0

    def execute(self, specs: Iterable[RunSpec], ctx: RunContext) -> list[BootRecord]:
        out: list[BootRecord] = []
        for spec in specs:
            if self.index in self.hog:
                with Hog():
                    out += super().execute([spec], ctx)
            else:
                out += super().execute([spec], ctx)
            self.index += 1
        return out


def cv(xs: list[float]) -> float:
    return statistics.stdev(xs) / statistics.mean(xs) * 100 if len(xs) > 1 else 0.0


def one(args: argparse.Namespace, results: Path) -> dict:
    prof = make_profile("quick", filesystems=args.fs.split(","), runs=args.runs, max_runs=args.runs)
    t0 = time.monotonic()
    m = MatrixRun(args.kernel, args.baseline, prof, results, say=lambda s: None,
                  executor=HoggingExecutor(set(args.hog)), front_end="benchmark")
    m.run()
    values: dict[str, CellValues] = {cid: o.cell_values() for cid, o in m.outcomes.items()}
    raw = decide_cells(values, calibrate=False)
    cal = decide_cells(values)
    norm, fits = calibrated(values, [metric(k) for k in TIMED])
    cells = {}
    for cid in values:
        r = next(c for c in raw[cid] if c.metric == "IOPS")
        c = next(c for c in cal[cid] if c.metric == "IOPS")
        v, nv = values[cid], norm[cid]
        cells[cid] = {
            "raw": [r.verdict, round(r.pct_change, 1), r.p_value, r.mde_pct],
            "calibrated": [c.verdict, round(c.pct_change, 1), c.p_value, c.mde_pct],
            "base_iops": v.base["iops"], "new_iops": v.new["iops"],
            "base_host_free": v.base_host_free.get("iops"), "new_host_free": v.new_host_free.get("iops"),
            "cv_raw": [round(cv(list(v.base["iops"])), 1), round(cv(list(v.new["iops"])), 1)],
            "cv_norm": [round(cv(list(nv.base["iops"])), 1), round(cv(list(nv.new["iops"])), 1)],
        }
    return {"kernel": args.kernel, "baseline": args.baseline, "runs": args.runs, "hog": args.hog,
            "minutes": round((time.monotonic() - t0) / 60, 1), "cells": cells,
            "fits": {k: [f.__dict__ for f in pair] for k, pair in fits.items()}}


def show(res: dict) -> None:
    print(f"\n{res['kernel']} vs {res['baseline']}, {res['runs']} runs a side, hogged boots {res['hog']}, "
          f"{res['minutes']} min (TCG, 2 cores)")
    for k, pair in res["fits"].items():
        for f in pair:
            print(f"  fit {k} {f['side']}: slope {f['slope']:.2f}, R2 {f['r2']:.2f}, p {f['p_value']:.2g}, "
                  f"n {f['n']}: {'used' if f['applied'] else 'not used: ' + f['why']}")
    def fmt(x: list) -> str:
        p = "n/a" if x[2] is None else f"{x[2]:.4f}"
        return f"{x[0]} {x[1]:+.0f}% p={p} MDE {x[3] and round(x[3])}%"

    for cid, c in res["cells"].items():
        print(f"  {cid}: raw {fmt(c['raw'])} | calibrated {fmt(c['calibrated'])}")
        print(f"    IOPS base {[round(x) for x in c['base_iops']]} new {[round(x) for x in c['new_iops']]}")
        free = [[round(x, 2) for x in c[k] or []] for k in ("base_host_free", "new_host_free")]
        print(f"    host free base {free[0]} new {free[1]}")
        print(f"    between-boot CV raw {c['cv_raw']}%, normalised {c['cv_norm']}%")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kernel", default="patched")
    ap.add_argument("--baseline", default="baseline")
    ap.add_argument("--fs", default="ext4,xfs")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--hog", type=int, action="append", default=[], help="plan index of a boot to slow (repeatable)")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--json", type=Path, help="append each repeat's figures here, one JSON line each")
    args = ap.parse_args()
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            res = one(args, Path(tmp))
        show(res)
        if args.json:
            with args.json.open("a") as fh:
                fh.write(json.dumps(res) + "\n")


if __name__ == "__main__":
    main()
