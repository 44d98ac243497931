#!/usr/bin/env python3
"""Noise per metric, measured from finished runs: between boots, within a boot, and between sessions.

Measures nothing itself: reads every boot's ``record.json`` under the given directories (any depth;
evidence, sysrq-sampling, hang and frozen-filesystem boots and failed measurements are skipped) and,
with ``--store``, the runs of results stores (opened read-only; a run whose ``run_dir`` was already
read from disk is not counted twice). All figures are standard deviations of natural logarithms,
which for small values read as a coefficient of variation (0.10 = 10%).

A **condition** is one session (the directory the boot's run dir sits in: one suite run, one
nightly, one benchmark), one kernel (its cache key), the VM (CPUs, icount) and fio job size and
length, and one cell: boots of one condition ran the same thing under the same conditions. Per
metric:

* ``run``: between-run noise with **one run a boot**, as a night measures it (the first run of each
  boot; the pooled SD of the logs within each condition, Bessel-corrected, from conditions with at
  least 2 boots). Also its spread over conditions (median and max of the per-condition SDs).
* ``within``: between runs of the same cell inside one boot (boots that ran a cell more than once).
* ``boot``: the part of ``run`` shared by every cell of a boot (boots that ran several cells: the
  boot's mean log distance over its cells, less what within-cell noise alone would give).
* ``session``: the shift of a whole session: the same kernel and cell measured in several sessions,
  one-way random effects on the session means (``(MS_between - MS_within) / n0``, floored at 0).
* ``slow``: the share of boots more than 3 robust SDs (1.4826 x MAD) from their condition's mean
  (conditions with at least 3 boots and more than 1% noise: a heavy tail, e.g. a boot at half speed).

    .venv/bin/python -m benchmarks.noise_by_metric DIR... [--store FILE.sqlite ...] [--json OUT]

The output feeds ``benchmarks/history_detector.py --noise-json OUT``; the figures measured on this
machine are in docs/benchmarks.md ("Nightly history detector").
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sqlite3
import statistics as st
import sys
from collections import defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path

from harness.results.metrics import METRICS

KEYS = tuple(m.key for m in METRICS)
SKIP_LABEL = re.compile(r"^(evidence|sampled|frozen|hang|ray-kill|nightly-x|nightly-evidence)")


def _boot(record: dict, where: str) -> dict | None:
    """One boot as {session, cond, label, values: {(cell, key): [per-run values in run order]}}."""
    label = str(record.get("label") or "")
    spec = record.get("spec") or {}
    if SKIP_LABEL.match(label) or not record.get("measurements"):
        return None
    if not re.match(r"\d{4}-\d\d-\d\d", str(record.get("started") or "")):
        return None   # a made-up record of a unit test (started "t0"), not a boot
    vm = spec.get("vm") or {}
    if vm.get("icount_shift") is not None:   # deterministic-time boots are a different noise regime
        return None
    kernel = (spec.get("kernel") or {})
    cells = (spec.get("workload") or {}).get("cells") or [{}]
    job = cells[0].get("job") or {}
    cond = (kernel.get("key") or kernel.get("name"), vm.get("cpus"), job.get("runtime"), job.get("size"))
    values: dict[tuple[str, str], list[float]] = defaultdict(list)
    for m in sorted(record["measurements"], key=lambda m: m.get("run_index") or 0):
        if m.get("status") != "ok":
            continue
        for k in KEYS:
            v = m.get(k)
            if isinstance(v, (int, float)) and v > 0:
                values[(m["cell"], k)].append(float(v))
    if not values:
        return None
    return dict(session=where, cond=cond, label=label, run_dir=str(record.get("run_dir") or ""), values=values)


def boots_from_dirs(dirs: Iterable[Path]) -> Iterator[dict]:
    for d in dirs:
        for rec in sorted(Path(d).rglob("record.json")):
            try:
                r = json.loads(rec.read_text())
            except (OSError, ValueError):
                continue
            if not isinstance(r, dict):
                continue
            r.setdefault("run_dir", str(rec.parent))
            b = _boot(r, str(rec.parent.parent))
            if b:
                yield b


def boots_from_store(path: Path) -> Iterator[dict]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        for rj, sj in conn.execute("SELECT record_json, spec_json FROM runs ORDER BY started"):
            try:
                r = json.loads(rj)
                r.setdefault("spec", json.loads(sj))
            except ValueError:
                continue
            rd = str(r.get("run_dir") or "")
            b = _boot(r, f"{path}:{r.get('group') or Path(rd).parent}")
            if b:
                yield b
    finally:
        conn.close()


def _pooled_sd(groups: Iterable[list[float]]) -> tuple[float | None, int, int]:
    """Pooled within-group SD of the values (Bessel per group), number of groups and of values."""
    ss = df = n = g = 0
    for xs in groups:
        if len(xs) < 2:
            continue
        mu = st.fmean(xs)
        ss += sum((x - mu) ** 2 for x in xs)
        df += len(xs) - 1
        n += len(xs)
        g += 1
    return (math.sqrt(ss / df) if df else None), g, n


def analyse(boots: list[dict]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for k in KEYS:
        by_cond: dict[tuple, list[float]] = defaultdict(list)      # first run of each boot, logs
        within: list[list[float]] = []
        by_boot: dict[int, dict[str, float]] = defaultdict(dict)  # boot -> cell -> first-run log
        for i, b in enumerate(boots):
            for (cell, key), xs in b["values"].items():
                if key != k:
                    continue
                by_cond[(b["session"], b["cond"], cell)].append(math.log(xs[0]))
                by_boot[i][cell] = math.log(xs[0])
                if len(xs) >= 2:
                    within.append([math.log(x) for x in xs])
        run_sd, run_g, run_n = _pooled_sd(by_cond.values())
        if run_sd is None:
            continue
        per_cond = sorted(st.stdev(v) for v in by_cond.values() if len(v) >= 2)
        conditions = [dict(session=s, cell=cell, boots=len(v), sd=st.stdev(v), mean=math.exp(st.fmean(v)))
                      for (s, _c, cell), v in sorted(by_cond.items()) if len(v) >= 2]
        per_cell: dict[str, list[float]] = defaultdict(list)
        for (_s, _c, cell), v in by_cond.items():
            if len(v) >= 2:
                per_cell[cell.split("/")[0] + "/" + cell.split("/")[2]].append(st.stdev(v))
        within_sd, within_g, within_n = _pooled_sd(within)
        # boot effect: each boot's mean residual over its cells (conditions with >= 2 boots)
        means = {c: st.fmean(v) for c, v in by_cond.items() if len(v) >= 2}
        boot_means, cells_per_boot = [], []
        for i, cells in by_boot.items():
            res = [cells[c] - means[(boots[i]["session"], boots[i]["cond"], c)]
                   for c in cells if (boots[i]["session"], boots[i]["cond"], c) in means]
            if len(res) >= 2:
                boot_means.append(st.fmean(res))
                cells_per_boot.append(len(res))
        boot_sd = None
        if len(boot_means) >= 3:
            var = st.fmean(m * m for m in boot_means) - run_sd ** 2 / st.fmean(cells_per_boot)
            boot_sd = math.sqrt(max(var, 0.0))
        # session shifts: the same kernel, VM, job and cell in several sessions
        sess: dict[tuple, list[list[float]]] = defaultdict(list)
        for (_s, c, cell), v in by_cond.items():
            if len(v) >= 2:
                sess[(c, cell)].append(v)
        num = den = 0.0
        n_sess = n_series = 0
        for groups in sess.values():
            if len(groups) < 2:
                continue
            a = len(groups)
            ns = [len(g) for g in groups]
            N = sum(ns)
            grand = st.fmean(x for g in groups for x in g)
            msb = sum(len(g) * (st.fmean(g) - grand) ** 2 for g in groups) / (a - 1)
            msw = sum((x - st.fmean(g)) ** 2 for g in groups for x in g) / (N - a)
            n0 = (N - sum(n * n for n in ns) / N) / (a - 1)
            num += (a - 1) * (msb - msw) / n0
            den += a - 1
            n_sess += a
            n_series += 1
        session_sd = math.sqrt(max(num / den, 0.0)) if den else None
        # slow or fast boots: far from their condition's mean
        resid = [x - st.fmean(v) for v in by_cond.values() if len(v) >= 3 and st.stdev(v) > 0.01 for x in v]
        slow = None
        if len(resid) >= 10:
            mad = 1.4826 * st.median(abs(r - st.median(resid)) for r in resid)
            slow = (sum(1 for r in resid if mad and abs(r) > 3 * mad) / len(resid), len(resid))
        out[k] = dict(run=run_sd, run_conditions=run_g, run_boots=run_n,
                      run_median=st.median(per_cond), run_max=per_cond[-1], run_per_cond=per_cond,
                      conditions=conditions,
                      run_by_fs_pattern={c: st.median(v) for c, v in sorted(per_cell.items())},
                      within=within_sd, within_boots=within_g, within_runs=within_n,
                      boot=boot_sd, boot_boots=len(boot_means),
                      session=session_sd, session_series=n_series, session_sessions=n_sess,
                      slow=slow[0] if slow else None, slow_n=slow[1] if slow else 0)
    return out


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dirs", nargs="*", type=Path, help="directories holding run dirs (searched recursively)")
    ap.add_argument("--store", action="append", type=Path, default=[], help="a results store (read-only)")
    ap.add_argument("--json", type=Path, help="write the figures here (for history_detector --noise-json)")
    a = ap.parse_args(argv)
    boots, seen = [], set()
    for b in boots_from_dirs(a.dirs):
        seen.add(Path(b["run_dir"]).name)
        boots.append(b)
    for s in a.store:
        for b in boots_from_store(s):
            if Path(b["run_dir"]).name not in seen:
                seen.add(Path(b["run_dir"]).name)
                boots.append(b)
    if not boots:
        print("no measured boots found", file=sys.stderr)
        return 1
    res = analyse(boots)
    sessions = len({b["session"] for b in boots})
    print(f"{len(boots)} boots in {sessions} sessions (SDs of logs; 0.10 ~ 10% CV)")
    print(f"{'metric':28s} {'run (1 a boot)':>15s} {'median..max':>15s} {'cond/boots':>10s} {'within':>7s} "
          f"{'n':>5s} {'boot':>6s} {'n':>3s} {'session':>7s} {'series/sess':>11s} {'slow':>6s}")
    for k, r in res.items():
        print(f"{k:28s} {_pct(r['run']):>15s} {_pct(r['run_median']) + '..' + _pct(r['run_max']):>15s} "
              f"{r['run_conditions']:>4d}/{r['run_boots']:<5d} {_pct(r['within']):>7s} {r['within_runs']:>5d} "
              f"{_pct(r['boot']):>6s} {r['boot_boots']:>3d} {_pct(r['session']):>7s} "
              f"{r['session_series']:>5d}/{r['session_sessions']:<5d} {_pct(r['slow']):>6s}")
        print(f"{'':28s} by fs/pattern: " + ", ".join(f"{c} {_pct(v)}" for c, v in r["run_by_fs_pattern"].items()))
    if a.json:
        a.json.write_text(json.dumps(res, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
