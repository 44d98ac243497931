#!/usr/bin/env python3
"""Replay a finished matrix run's measurements through the current decision rule, round by round,
as adaptive repeats would have: which round each cell would have been settled in and how many
boots-worth of cells that saves. Reads every boot's record.json under RESULTS_DIR (evidence
boots are skipped); measures nothing.

    .venv/bin/python -m benchmarks.replay_rule RESULTS_DIR
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

from harness.results.verdict import GATING, CellValues, cell_settled, decide_cells


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("results", type=Path)
    args = ap.parse_args()
    cap = json.loads((args.results / "comparison.json").read_text())["profile"]["max_runs"]
    runs: dict[str, dict[str, dict[int, dict]]] = {}
    for rec in args.results.glob("*/record.json"):
        r = json.loads(rec.read_text())
        role = r["spec"].get("role")
        if role not in ("base", "new"):
            continue
        for m in r["measurements"]:
            if m["status"] == "ok":
                runs.setdefault(m["cell"], {"base": {}, "new": {}})[role][m["run_index"]] = m
    settled_at: dict[str, int] = {}
    for k in range(3, cap + 1):
        def values(sides: dict, upto: int) -> CellValues:   # each side's values from the first ``upto`` runs
            def side(s: str) -> dict[str, list[float]]:
                return {mt.key: [m[mt.key] for i, m in sides[s].items() if i < upto and m.get(mt.key)] for mt in GATING}
            return CellValues(side("base"), side("new"))
        # every cell, as MatrixRun.decided(); a settled cell frozen at the runs it was settled with
        decided = decide_cells({cid: values(sides, settled_at.get(cid, k)) for cid, sides in runs.items()})
        for cid, comps in decided.items():
            if cid not in settled_at and cell_settled(comps):
                settled_at[cid] = k
    spent = {cid: settled_at.get(cid, cap) for cid in runs}
    print(f"{len(runs)} cells; runs a side under the current rule: "
          + ", ".join(f"{n}: {c} cells" for n, c in sorted(Counter(spent.values()).items()))
          + f" (mean {sum(spent.values()) / len(spent):.1f}); cell-runs a side {sum(spent.values())}")
    for cid in sorted(runs):
        print(f"  {cid}: {spent[cid]}")


if __name__ == "__main__":
    main()
