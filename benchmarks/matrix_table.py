#!/usr/bin/env python3
"""A matrix run's comparison.json as the README's Markdown: one row per cell and metric (medians,
change with its interval, q, minimum detectable effect, runs a side, verdict), then what the run
spent: runs per cell, boots, boot seconds, and for an A/A run the false alarms.

    .venv/bin/python -m benchmarks.matrix_table RESULTS_DIR [--metric IOPS]
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import Counter
from pathlib import Path


def pct(x: float | None) -> str:
    return "-" if x is None else f"{x:+.0f}%"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("results", type=Path)
    ap.add_argument("--metric", action="append", help="only these metrics (default: all)")
    args = ap.parse_args()
    j = json.loads((args.results / "comparison.json").read_text())
    rows = [r for r in j["rows"] if not args.metric or r["metric"] in args.metric]
    print(f"{j['kernel']} vs {j['baseline']}, profile {j['profile']['name']} "
          f"({j['profile']['runtime']} s runs, {j['profile']['size']} files, {j['profile']['runs']}-"
          f"{j['profile']['max_runs']} runs a side), seed {j['seed']}{', A/A' if j.get('aa') else ''}\n")
    print("| cell | metric | baseline | kernel | change (HL) | interval | q | MDE | runs | verdict |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        ci = (f"{pct(r['ci_low'])}..{pct(r['ci_high'])} ({r['ci_confidence']:.0%})"
              if r.get("ci_low") is not None else "-")
        verdict = r["verdict"]
        if verdict == "no change" and r.get("ci_low") is not None:
            verdict += f" (within ±{max(abs(r['ci_low']), abs(r['ci_high'])):.0f}%)"
        if verdict in ("regression", "improvement"):
            verdict = f"**{verdict}**"
        q = "-" if r.get("q_value") is None else f"{r['q_value']:.3g}"
        mde = "-" if r.get("mde_pct") is None else f"{r['mde_pct']:.0f}%"
        print(f"| {r['cell']} | {r['metric']} | {r['base_median']:.0f} | {r['new_median']:.0f} | "
              f"{pct(r.get('hl_pct'))} | {ci} | {q} | {mde} | {r['n_base']}/{r['n_new']} | {verdict} |")
    cells = {r["cell"]: r["n_base"] for r in rows}
    per = Counter(cells.values())
    verdicts = Counter(r["verdict"] for r in rows)
    boots = j.get("boot_seconds") or []
    print("\nruns a side per cell: " + ", ".join(f"{n} runs: {k} cells" for n, k in sorted(per.items()))
          + f" (mean {statistics.mean(cells.values()):.1f})")
    print(f"rounds: {len(j['rounds'])}, cells measured per round: {[len(r) for r in j['rounds']]}")
    print("verdicts: " + ", ".join(f"{v} {k}" for v, k in verdicts.most_common()))
    if boots:
        q = statistics.quantiles(boots, n=4) if len(boots) > 1 else [boots[0]] * 3
        print(f"boots: {len(boots)}, boot to SSH median {statistics.median(boots):.1f} s "
              f"(quartiles {q[0]:.1f}-{q[2]:.1f}, max {max(boots):.1f})")
    mdes = [r["mde_pct"] for r in rows if r.get("mde_pct") is not None]
    if mdes:
        over = sorted({r["cell"] + " " + r["metric"] for r in rows if (r.get("mde_pct") or 0) > 10})
        print(f"minimum detectable effect: median {statistics.median(mdes):.1f}%, max {max(mdes):.1f}%; "
              f"above 10%: {len(over)} of {len(mdes)}")
    if j.get("aa"):
        flagged = [r for r in rows if r["verdict"] in ("regression", "improvement")]
        print(f"A/A: {len(flagged)} of {len(rows)} comparisons flagged (every one a false alarm)"
              + "".join(f"\n  {r['line']}" for r in flagged))
    if j.get("failures"):
        print("failures: " + "; ".join(f"{c}: {len(f)}" for c, f in j["failures"].items()))


if __name__ == "__main__":
    main()
