#!/usr/bin/env python3
"""Per metric: noise split into a boot part and a within-boot part, and the minimum detectable
effects they imply, from one real matrix run whose every boot measures every cell more than once.

The run is the suite's driver (``MatrixRun``) over a profile's matrix, ``--boots`` boots a side,
``--runs-per-boot`` runs of every cell in each boot, no adaptive repeats and no evidence boots.
Its baseline side is an A/A measurement (the baseline kernel against itself, boot after boot)
and its kernel side the A/B's other half. Per metric and cell the two-level model
(``harness.results.noise.components``: one-way random effects on the logs) gives the boot SD and
the within-boot SD; the table shows their medians over the cells that measured the metric, and
the median minimum detectable effect at 3 and at 8 boots a side of one run each
(``noise.mde_pct``: Welch's t on the boots' log means, 80% power); the A/A columns use the
baseline's components on both sides, the A/B columns the two sides pooled.

    .venv/bin/python -m benchmarks.noise_table --kernel patched --baseline baseline \\
        [--profile full] [--boots 3] [--runs-per-boot 2] [--out FILE.json]
    .venv/bin/python -m benchmarks.noise_table --table FILE.json
    .venv/bin/python -m benchmarks.noise_table --records RESULTS_DIR     # a run's directories

The run's values go to ``--out`` (default ``~/.cache/kharness/bench/noise-table.json``): per
cell, metric and side the values grouped by boot, so the table can be recomputed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from harness.paths import cache_dir
from harness.results.metrics import METRICS
from harness.results.noise import Components, components, mde_pct, pooled
from harness.results.verdict import by_boot


def run(args: argparse.Namespace) -> dict:
    """One matrix run, every cell ``--runs-per-boot`` times a boot; the values grouped by boot."""
    from harness.drivers.matrix import MatrixRun, make_profile
    from harness.procs import install_signal_handlers
    install_signal_handlers()
    prof = make_profile(args.profile, runs=args.boots, max_runs=args.boots, runs_per_boot=args.runs_per_boot)
    results = cache_dir("bench") / "noise-table" / time.strftime("%Y%m%d-%H%M%S")
    t0 = time.monotonic()
    m = MatrixRun(args.kernel, args.baseline, prof, results, front_end="benchmark", accel=args.accel)
    m.run()
    values: dict = {}
    for cid, o in m.outcomes.items():
        for mt in METRICS:
            sides = {"base": by_boot(o.base, mt.key, o.base_boots), "new": by_boot(o.new, mt.key, o.new_boots)}
            if any(sides.values()):
                values.setdefault(cid, {})[mt.key] = sides
    return {"kernel": args.kernel, "baseline": args.baseline, "profile": args.profile, "boots": args.boots,
            "runs_per_boot": args.runs_per_boot, "wall_s": round(time.monotonic() - t0), "results": str(results),
            "boot_seconds": m.boot_seconds, "values": values}


def from_records(results: Path) -> dict:
    """The same values from the run directories of a matrix run (one left unfinished, too):
    every base and new boot's ``record.json`` under ``results``."""
    values: dict = {}
    for rec in sorted(results.glob("*/record.json")):
        r = json.loads(rec.read_text())
        side = (r.get("spec") or {}).get("role")
        if side not in ("base", "new"):
            continue
        runs: dict = {}
        for m in r.get("measurements") or []:
            if m.get("status") != "ok":
                continue
            for mt in METRICS:
                v = m.get(mt.key)
                if isinstance(v, (int, float)):
                    runs.setdefault((m["cell"], mt.key), []).append(float(v))
        for (cell, key), vs in runs.items():
            sides = values.setdefault(cell, {}).setdefault(key, {"base": [], "new": []})
            sides[side].append(vs)
    return {"results": str(results), "values": values}


def _med(xs: list[float]) -> str:
    return f"{100 * statistics.median(xs):.1f}%" if xs else "-"


def _mde(cs: list[Components], boots: int) -> str:
    got = [x for c in cs if (x := mde_pct(c, boots)) is not None]
    return f"{statistics.median(got):.0f}%" if got else "-"


def table(data: dict) -> str:
    """The per-metric table (module docstring)."""
    lines = ["| metric | cells | A/A: boot SD | within SD | MDE 3 boots | MDE 8 boots | "
             "A/B: boot SD | within SD | MDE 3 boots | MDE 8 boots |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for mt in METRICS:
        aa, ab = [], []
        for per in data["values"].values():
            sides = per.get(mt.key)
            if not sides:
                continue
            b, n = components(sides["base"]), components(sides["new"])
            if b is not None:
                aa.append(b)
            if (p := pooled(b, n)) is not None:
                ab.append(p)
        if not aa and not ab:
            continue
        cols = []
        for cs in (aa, ab):
            cols += [_med([c.boot_sd for c in cs]), _med([c.within_sd for c in cs if c.within_sd is not None]),
                     _mde(cs, 3), _mde(cs, 8)]
        lines.append(f"| {mt.label} | {max(len(aa), len(ab))} | " + " | ".join(cols) + " |")
    return "\n".join(lines)


def flagged(results: Path) -> str:
    """What the run's own verdicts flagged (``comparison.json``, the matrix's one rule over all its
    cells): per metric, the comparisons flagged a regression or an improvement, of those decided.
    In an A/A run (the kernel against itself) every one is a false alarm, and each is named.
    Empty without the file."""
    f = results / "comparison.json"
    if not f.is_file():
        return ""
    doc = json.loads(f.read_text())
    rows = [r for r in doc.get("rows", []) if isinstance(r, dict)]
    what = "false alarms (A/A)" if doc.get("aa") else "flagged"
    lines = [f"| metric | gates | comparisons | {what} |", "|---|---|---|---|"]
    for mt in METRICS:
        mine = [r for r in rows if r.get("metric") == mt.label]
        if mine:
            hit = [f"{r.get('cell')} {r.get('verdict')} {r.get('pct_change') or 0:+.0f}%" for r in mine
                   if r.get("verdict") in ("regression", "improvement")]
            lines.append(f"| {mt.label} | {'yes' if mt.gates else 'no'} | {len(mine)} | {len(hit)}"
                         + (f": {'; '.join(hit)}" if hit and doc.get("aa") else "") + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kernel", default="patched")
    ap.add_argument("--baseline", default="baseline")
    ap.add_argument("--profile", default="full")
    ap.add_argument("--boots", type=int, default=3)
    ap.add_argument("--runs-per-boot", type=int, default=2)
    ap.add_argument("--accel", choices=["kvm", "tcg"])
    ap.add_argument("--out", type=Path, default=cache_dir("bench") / "noise-table.json")
    ap.add_argument("--table", type=Path, help="print the table of a saved run and stop")
    ap.add_argument("--records", type=Path, help="print the table of a matrix run's directory and stop")
    args = ap.parse_args()
    if args.table or args.records:
        data = json.loads(args.table.read_text()) if args.table else from_records(args.records)
    else:
        data = run(args)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(data))
        print(f"{data['wall_s'] / 60:.0f} min, {len(data['boot_seconds'])} boots; values in {args.out}")
    print(table(data))
    print(flagged(Path(data["results"])))


if __name__ == "__main__":
    main()
