#!/usr/bin/env python3
"""Where a finished matrix run's noise comes from: each IOPS value's log distance from its cell's
mean (per side), split into a boot effect (the mean distance of every cell in that boot: a slow
or fast boot as a whole) and what is left within the boot; then the left-over by the cell's
position in its filesystem's group (a warm-up after mkfs would show as a trend). Measures
nothing: reads every boot's record.json under RESULTS_DIR (evidence boots are skipped).

    .venv/bin/python -m benchmarks.noise_sources RESULTS_DIR
"""

from __future__ import annotations

import argparse
import json
import math
import statistics as st
from collections import defaultdict
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("results", type=Path)
    args = ap.parse_args()
    rows = []   # (boot, side, cell, position in its filesystem's group, log IOPS)
    for rec in sorted(args.results.glob("*/record.json")):
        r = json.loads(rec.read_text())
        side = r["spec"].get("role")
        if side not in ("base", "new"):
            continue
        last, k = None, 0
        for m in r["measurements"]:   # in the order the boot ran them
            fs = m["cell"].split("/")[0]
            k, last = (k + 1 if fs == last else 0), fs
            if m["status"] == "ok" and m.get("iops"):
                rows.append((rec.parent.name, side, m["cell"], k, math.log(m["iops"])))
    if not rows:
        raise SystemExit(f"{args.results}: no measured boots")
    by_cell = defaultdict(list)
    for _b, side, c, _, v in rows:
        by_cell[(side, c)].append(v)
    mean = {key: st.mean(v) for key, v in by_cell.items()}
    dev = [(b, c, k, v - mean[(side, c)]) for b, side, c, k, v in rows]
    by_boot = defaultdict(list)
    for b, _, _, d in dev:
        by_boot[b].append(d)
    boot = {b: st.mean(v) for b, v in by_boot.items()}
    left = [(c, k, d - boot[b]) for b, c, k, d in dev]
    pc = lambda x: f"{100 * x:.1f}%"   # noqa: E731 (log units: 0.01 is about 1%)
    print(f"{len(by_boot)} boots, {len(rows)} values, {len(by_cell)} cells x sides")
    print(f"all noise (sd of log IOPS about each cell's mean): {pc(st.pstdev([d for *_, d in dev]))}")
    print(f"boot effect (sd of the boots' means):              {pc(st.pstdev(boot.values()))} "
          f"(from {100 * min(boot.values()):+.1f}% to {100 * max(boot.values()):+.1f}%)")
    print(f"left within a boot (after the boot effect):        {pc(st.pstdev([d for *_, d in left]))}")
    print("mean left-over by position in the filesystem's group (0 = first cell after mkfs):")
    for fs in sorted({c.split("/")[0] for c, _, _ in left}):
        pos = defaultdict(list)
        for c, k, d in left:
            if c.startswith(fs + "/"):
                pos[k].append(d)
        print(f"  {fs:6} " + " ".join(f"{k}:{100 * st.mean(v):+.0f}%" for k, v in sorted(pos.items())))


if __name__ == "__main__":
    main()
