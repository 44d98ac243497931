#!/usr/bin/env python3
"""The nightly control cells' false-alarm rate under the one verdict rule, on simulated nights.

Each night of a plan (``nightly/default.yaml``, ``nightly/full.yaml``) is planned exactly as
``kharness nightly run`` plans it (``planned_units``: the plan's cells, control cells and runs a
side); every fio unit is one simulated boot whose measurements are written to a real results
store and whose units go into a real nightly book; the night is then folded by the real
``fold_night``, which decides every same-night comparison of the night together
(``harness.results.verdict.night_vs_baseline``). Only the numbers are synthetic:

* per boot a log-normal *boot effect* shared by every cell the boot measures, and per
  measurement a log-normal *within-boot* term (IOPS divided and p99 latency multiplied by the
  same boot effect, each metric its own within-boot term);
* the baseline and the control sides at this host's A/A noise (``--aa 6.5,10.8``: boot effect
  and within a boot, percent), the tested kernel at its A/B noise (``--ab 10.0,16.0``);
* scenarios: ``aa`` (the tested kernel is the baseline, A/A noise everywhere), ``ab`` (no change
  but A/B noise on the tested kernel) and ``patch`` (A/B noise, and the ext4 unwritten-extent and
  O_SYNC cells and the XFS O_SYNC cells at ``--effect`` -65% IOPS, as the shipped patch).

Reported per plan and scenario: control comparisons flagged (regression or improvement) and
nights with any control flag, under the unified rule and, on the same numbers, under the old
nightly rule (each comparison alone: no adjustment); tested-kernel comparisons flagged where
nothing changed; and in ``patch`` the share of the changed cells' IOPS found.

    .venv/bin/python -m benchmarks.nightly_false_alarms [--nights 60] [--plans default,full]
        [--scenarios aa,ab,patch] [--seed 1]
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from harness.drivers.nightly.book import NightlyDB
from harness.drivers.nightly.fold import fold_night, group_of
from harness.drivers.nightly.plans import Plan, load_plan
from harness.drivers.nightly.units import fio_units
from harness.results.stats import compare
from harness.results.store import Store
from harness.results.verdict import GATING, Metric

FLAGS = ("regression", "improvement")
CHANGED = ("ext4/*/unwritten-convert/*", "ext4/*/randwrite-osync/*", "xfs/*/randwrite-osync/*")


def changed_cells(plan: Plan) -> set[str]:
    import fnmatch
    return {c for c in plan.cells() if any(fnmatch.fnmatchcase(c, p) for p in CHANGED)}


def record(run_id: str, night: str, unit, kernel: str, ms: list[dict]) -> dict:
    return {"run_id": run_id, "run_dir": f"/sim/{run_id}", "group": group_of(night), "front_end": "nightly",
            "label": unit.label, "role": unit.role, "status": "done", "started": "2026-12-01T01:00:00+0000",
            "finished": "2026-12-01T01:01:00+0000", "remaining": [],
            "spec": {"kernel": {"name": kernel, "key": f"k-{kernel}", "commit": "a" * 40},
                     "image": {"key": "img"}, "accel": "tcg", "workload": {"kind": "fio", "cells": []}},
            "measurements": ms}


def night(store: Store, db: NightlyDB, plan: Plan, name: str, rng: np.random.Generator, scenario: str,
          aa: tuple[float, float], ab: tuple[float, float], effect: float, levels: dict[str, float]):
    """Simulate and fold one night; (its NightResult, the raw values by (role, kref, cell, key))."""
    commits = {k: "a" * 40 for k in (plan.baseline, *plan.kernels)}
    db.start(name, plan.name, "sim", commits)
    units = fio_units(plan)
    db.record_units(name, {u.label: u.info() for u in units})
    changed = changed_cells(plan) if scenario == "patch" else set()
    raw: dict[tuple, list[float]] = {}
    for n, u in enumerate(units):
        boot_sd, within_sd = (ab if u.role == "new" and scenario != "aa" else aa)
        boot = rng.normal(0.0, boot_sd)
        ms = []
        for cell in u.cells:
            eff = effect if u.role == "new" and cell in changed else 0.0
            iops = levels[cell] * (1 + eff) * math.exp(-boot + rng.normal(0.0, within_sd))
            p99 = 1e6 / levels[cell] / (1 + eff) * math.exp(boot + rng.normal(0.0, within_sd))
            fs, disk, pattern, engine = cell.split("/")
            ms.append({"cell": cell, "fs": fs, "disk": disk, "pattern": pattern, "engine": engine,
                       "run_index": u.run_index, "status": "ok", "iops": iops, "clat_p99_us": p99})
            raw.setdefault((u.role, u.kref, cell, "iops"), []).append(iops)
            raw.setdefault((u.role, u.kref, cell, "clat_p99_us"), []).append(p99)
        kernel = u.kref.split("@")[0]
        store.add_run(record(f"{name}-{n:04d}", name, u, kernel, ms))
    return fold_night(store, db, plan, name, commits), raw


def alone(plan: Plan, raw: dict, role: str, kref: str, cell: str, m: Metric) -> str:
    """The old nightly rule on the same numbers: each comparison on its own, no adjustment."""
    return compare(raw[("base", plan.baseline, cell, m.key)], raw[(role, kref, cell, m.key)], metric=m.label,
                   higher_is_better=m.higher_is_better, min_effect_pct=plan.history.min_effect_pct).verdict


def run(plan: Plan, scenario: str, nights: int, seed: int, aa, ab, effect: float) -> dict:
    rng = np.random.default_rng(seed)
    levels = {c: float(math.exp(rng.uniform(math.log(300), math.log(8000)))) for c in plan.cells()}
    changed = changed_cells(plan) if scenario == "patch" else set()
    out = dict(ctl=0, ctl_flag=0, ctl_nights=0, old_flag=0, old_nights=0, new_null=0, new_null_flag=0,
               null_nights=0, old_null_flag=0, old_null_nights=0, found=0, changed=0)
    shm = Path("/dev/shm")  # the store's fsyncs, not the rule, would take most of the time on a disk
    with tempfile.TemporaryDirectory(dir=shm if shm.is_dir() else None) as tmp, \
            Store(Path(tmp) / "s.sqlite") as store, NightlyDB(Path(tmp) / "n.sqlite") as db:
        for i in range(nights):
            res, raw = night(store, db, plan, f"sim-{i:04d}", rng, scenario, aa, ab, effect, levels)
            flags = sum(d.verdict in FLAGS for _, _, d in res.control)
            old = sum(alone(plan, raw, "control", plan.baseline, cell, m) in FLAGS
                      for cell in plan.control_cells() for m in GATING)
            old_null = [alone(plan, raw, "new", k, cell, m) for k in plan.kernels for cell in plan.cells()
                        if cell not in changed for m in GATING]
            out["old_null_flag"] += sum(v in FLAGS for v in old_null)
            out["old_null_nights"] += "regression" in old_null
            out["ctl"] += len(res.control)
            out["ctl_flag"] += flags
            out["ctl_nights"] += flags > 0
            out["old_flag"] += old
            out["old_nights"] += old > 0
            null = [r for r in res.fio if r.cell not in changed]
            out["new_null"] += len(null)
            out["new_null_flag"] += sum(r.baseline.verdict in FLAGS for r in null)
            out["null_nights"] += any(r.baseline.verdict == "regression" for r in null)
            hit = [r for r in res.fio if r.cell in changed and r.metric_key == "iops"]
            out["changed"] += len(hit)
            out["found"] += sum(r.baseline.verdict == "regression" for r in hit)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nights", type=int, default=60)
    ap.add_argument("--plans", default="default,full")
    ap.add_argument("--scenarios", default="aa,ab,patch")
    ap.add_argument("--aa", default="6.5,10.8", help="A/A noise: boot effect, within a boot (percent)")
    ap.add_argument("--ab", default="10.0,16.0", help="A/B noise of the tested kernel (percent)")
    ap.add_argument("--effect", type=float, default=-0.65, help="the patch scenario's IOPS change")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    aa = tuple(float(x) / 100 for x in a.aa.split(","))
    ab = tuple(float(x) / 100 for x in a.ab.split(","))
    print(f"{a.nights} simulated nights per line; noise A/A {a.aa}%, A/B {a.ab}% (boot effect, within a boot); "
          f"the real planned units, store, book and fold_night")
    for name in a.plans.split(","):
        plan = load_plan(name)
        n_ctl = len(plan.control_cells())
        print(f"plan {name}: {len(plan.cells())} cells x {len(plan.kernels)} kernel(s), {n_ctl} control cells, "
              f"{plan.fio.repeats} runs a side, minimum effect {plan.history.min_effect_pct:g}%")
        for sc in a.scenarios.split(","):
            t0 = time.monotonic()
            r = run(plan, sc, a.nights, a.seed, aa, ab, a.effect)
            line = (f"  {sc:5} control: {r['ctl_flag'] / r['ctl']:.2%} of {r['ctl']} comparisons flagged, "
                    f"{r['ctl_nights'] / a.nights:.0%} of nights with any (old unadjusted rule: "
                    f"{r['old_flag'] / r['ctl']:.2%}, {r['old_nights'] / a.nights:.0%}); unchanged tested cells: "
                    f"{r['new_null_flag'] / r['new_null']:.2%} of {r['new_null']} flagged, "
                    f"{r['null_nights'] / a.nights:.0%} of nights with a false regression (old rule: "
                    f"{r['old_null_flag'] / r['new_null']:.2%}, {r['old_null_nights'] / a.nights:.0%})")
            if r["changed"]:
                line += f"; changed cells' IOPS found {r['found'] / r['changed']:.0%}"
            print(line + f" ({time.monotonic() - t0:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
