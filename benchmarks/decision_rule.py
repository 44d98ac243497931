#!/usr/bin/env python3
"""Simulate the suite's decision rule over a whole matrix, with adaptive repeats, to measure its
false alarms (A/A), its power and the runs it spends: the rule itself (harness.results.verdict:
decide_cells, cell_settled), only the measurements are synthetic (log-normal per-boot
values with a coefficient of variation drawn per cell from --cv).

Each matrix: CELLS comparisons start with RUNS a side; while any is open (not settled) and the
cap is not reached, every open one gets one more run a side; then the final verdicts.

    .venv/bin/python -m benchmarks.decision_rule [--trials 40] [--cells 96] [--cv 0.05,0.09]
        [--runs 3] [--cap 8]
"""

from __future__ import annotations

import argparse
import math
import random
import statistics

from harness.results.verdict import CellValues, cell_settled, decide_cells


def matrix(rng: random.Random, effects: list[float], cvs: list[float], runs: int, cap: int):
    """Final comparisons and runs a side per cell of one simulated matrix."""
    def draw(i: int, scale: float) -> float:
        return scale * math.exp(rng.gauss(0.0, cvs[i]))
    base = [[draw(i, 1000.0) for _ in range(runs)] for i in range(len(effects))]
    new = [[draw(i, 1000.0 * (1 + effects[i])) for _ in range(runs)] for i in range(len(effects))]
    n = runs
    while True:
        per_cell = decide_cells({i: CellValues({"iops": b}, {"iops": v}) for i, (b, v) in enumerate(zip(base, new))})
        decided = [per_cell[i][0] for i in range(len(base))]
        still = [i for i in range(len(base)) if not cell_settled(per_cell[i])]
        if not still or n >= cap:
            return decided, [len(b) for b in base]
        for i in still:
            base[i].append(draw(i, 1000.0))
            new[i].append(draw(i, 1000.0 * (1 + effects[i])))
        n += 1


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=40)
    ap.add_argument("--cells", type=int, default=96, help="comparisons in a matrix (48 cells x 2 metrics)")
    ap.add_argument("--cv", default="0.05,0.09", help="per-cell noise drawn uniformly from this range")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--cap", type=int, default=8)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    lo, hi = (float(x) for x in args.cv.split(","))
    rng = random.Random(args.seed)
    print(f"{args.cells} comparisons a matrix, noise CV {lo:.0%}-{hi:.0%}, {args.runs} runs a side, "
          f"up to {args.cap}; {args.trials} matrices per line")
    for label, effect, k in (("A/A (no change anywhere)", 0.0, 0), ("-10% in 10 cells", -0.10, 10),
                             ("-70% in 2 cells", -0.70, 2)):
        flags, anyf, runs, found, found_runs = 0, 0, [], [], []
        for _ in range(args.trials):
            effects = [effect if i < k else 0.0 for i in range(args.cells)]
            cvs = [rng.uniform(lo, hi) for _ in range(args.cells)]
            decided, n = matrix(rng, effects, cvs, args.runs, args.cap)
            flagged = [c.verdict in ("regression", "improvement") for c in decided]
            false = sum(f for i, f in enumerate(flagged) if effects[i] == 0.0)
            flags += false
            anyf += false > 0
            runs += n
            found += [flagged[i] for i in range(k)]
            found_runs += [n[i] for i in range(k) if flagged[i]]
        line = (f"{label:26} false alarms {flags / args.trials:.2f} a matrix "
                f"({flags / max(1, args.trials * (args.cells - k)):.2%} of comparisons), matrices with any: "
                f"{anyf / args.trials:.0%}; mean runs a side {statistics.mean(runs):.1f}")
        if k:
            line += (f"; found {statistics.mean(found):.0%}"
                     + (f" at {statistics.mean(found_runs):.1f} runs" if found_runs else ""))
        print(line, flush=True)


if __name__ == "__main__":
    main()
