"""`kharness results list|show|compare|export`: what the results store holds, read back.

Every recorded string (labels, patch subjects, xfstests messages, event titles) is printed as
plain text, never interpreted as rich markup.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table

from ..errors import HarnessError
from ..results.export import export_json, export_junit
from ..results.metrics import COUNTED, GATING, METRICS
from ..results.store import StoreError
from . import common
from .common import open_store

_STATUS_STYLE = {"done": "green", "ok": "green", "pass": "green", "regression": "red", "improvement": "green",
                 "hang": "red", "error": "red", "boot-failed": "red", "fail": "red", "inconclusive": "yellow"}


class ResultsError(HarnessError):
    """A `results` verb was asked for something it cannot do (nothing to export, unwritable file)."""


def _e(value: Any) -> str:
    """A recorded value as escaped plain text; None is '-'."""
    return "-" if value is None else escape(str(value))


def _styled(value: Any) -> str:
    style = _STATUS_STYLE.get(str(value))
    return f"[{style}]{_e(value)}[/{style}]" if style else _e(value)


def _num(x: float | None, fmt: str = ".0f") -> str:
    return "-" if x is None else format(x, fmt)


def _d(v: Any) -> dict:
    return v if isinstance(v, dict) else {}


def _l(v: Any) -> list:
    return v if isinstance(v, list) else []


def _by_run(rows: Iterable[Any]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for r in rows:
        out.setdefault(r.run_id, []).append(r)
    return out


# list

def _list(args: argparse.Namespace) -> int:
    limit = None if args.limit == 0 else args.limit
    with open_store(args) as store:
        runs = store.runs(group=args.group, kernel=args.kernel, front_end=args.front_end,
                          limit=None if limit is None else limit + 1)
        more = limit is not None and len(runs) > limit
        runs = runs[:limit] if limit is not None else runs
        ids = [r.run_id for r in runs]
        n_meas = Counter(m.run_id for m in store.measurements(ids))
        n_xfs = Counter(x.run_id for x in store.xfstests(ids))
    if not runs:
        common.console.print("no runs recorded" + (" matching the filters" if args.group or args.kernel
                                                   or args.front_end else ""))
        return 0
    table = Table("run", "started", "kernel", "workload", "role", "status", "fio/xfstests", "front end", "group")
    for r in runs:
        table.add_row(_e(r.run_id), _e((r.started or "").replace("T", " ")[:19] or None), _e(r.kernel),
                      _e(r.workload), _e(r.role), _styled(r.status), f"{n_meas[r.run_id]}/{n_xfs[r.run_id]}",
                      _e(r.front_end), _e(r.group))
    common.out.print(table)
    if more:
        common.console.print(f"(the newest {limit} runs shown; --limit 0 for all)")
    return 0


# show

def _spec_lines(spec: dict) -> list[str]:
    """The spec in brief, as plain (unescaped) lines."""
    k = _d(spec.get("kernel"))
    lines = [f"kernel:    {k.get('name', '?')} (key {k.get('key', '?')}, commit {str(k.get('commit') or '?')[:12]}"
             + (f", release {k['release']}" if k.get("release") else "") + ")"]
    for p in _l(k.get("patches")):
        p = _d(p)
        lines.append(f"  patch:   {p.get('file', '?')}: {p.get('subject', '')} "
                     f"(sha256 {str(p.get('sha256') or '?')[:12]})")
    img = _d(spec.get("image"))
    lines.append(f"image:     {img.get('recipe') or img.get('name') or '?'} (key {img.get('key', '?')})")
    lines.append(f"accel:     {spec.get('accel', '?')}")
    for d in _l(spec.get("disks")):
        d = _d(d)
        lines.append(f"disk:      {d.get('kind', '?')} {d.get('size', '?')}"
                     + (f" serial {d['serial']}" if d.get("serial") else ""))
    w = _d(spec.get("workload"))
    kind = w.get("kind", "?")
    if kind == "fio":
        cells = _l(w.get("cells"))
        lines.append(f"workload:  fio, {len(cells)} cell{'s' * (len(cells) != 1)}")
        for c in cells:
            c = _d(c)
            fs, job = _d(c.get("fs")), _d(c.get("job"))
            cell = f"{fs.get('fstype', '?')}/{c.get('disk', '?')}/{job.get('pattern', '?')}/{job.get('engine', '?')}"
            params = " ".join(f"{key}={v}" for key, v in job.items() if key not in ("pattern", "engine", "rendered"))
            mkfs = " ".join(str(a) for a in _l(fs.get("mkfs")))
            lines.append(f"  cell:    {cell} x{c.get('runs', 1)}: {params}")
            lines.append(f"           mkfs: {mkfs or '-'}; mount options: {fs.get('mount_options') or '-'}")
        if w.get("sampling"):
            s = _d(w.get("sampling"))
            lines.append(f"  sysrq sampling: keys {s.get('keys')} after {s.get('delay')}s, every {s.get('interval')}s")
        for argv in _l(w.get("setup")):
            lines.append(f"  setup:   {' '.join(str(a) for a in _l(argv))}")
    elif kind == "xfstests":
        tests = [str(t) for t in _l(w.get("tests"))]
        lines.append(f"workload:  xfstests, section {w.get('section', '?')} ({w.get('fstype', '?')}, "
                     f"mkfs options {w.get('mkfs_options') or '-'}), {len(tests)} test{'s' * (len(tests) != 1)}")
        lines.append(f"  tests:   {' '.join(tests) or '-'}")
        for x in _l(w.get("expunged")):
            test, reason = (list(x) + ["", ""])[:2] if isinstance(x, list) else (x, "")
            lines.append(f"  expunged: {test}" + (f" ({reason})" if reason else ""))
    elif kind == "command":
        lines.append(f"workload:  command {' '.join(str(a) for a in _l(w.get('argv')))} "
                     f"(timeout {w.get('timeout_s', '?')}s)")
    else:
        lines.append(f"workload:  {kind}")
    return lines


def _show(args: argparse.Namespace) -> int:
    with open_store(args) as store:
        run = store.run(args.run)
        if args.json:
            common.write_stdout(json.dumps(export_json(store, [run.run_id]), indent=2) + "\n")
            return 0
        ids = [run.run_id]
        meas, xfs = store.measurements(ids), store.xfstests(ids)
        events, evidence = store.events(ids), store.evidence(ids)
    out = common.out
    out.print(f"[bold]{_e(run.run_id)}[/bold]  {_styled(run.status)}")
    for key, value in (("label", run.label), ("group", run.group), ("role", run.role), ("front end", run.front_end),
                       ("started", run.started), ("finished", run.finished), ("run dir", run.run_dir),
                       ("boot", None if run.boot_seconds is None else f"{run.boot_seconds:.1f}s")):
        if value is not None:
            out.print(escape(f"{key + ':':<10} {value}"))
    for line in _spec_lines(run.spec):
        out.print(escape(line))
    if meas:
        table = Table("cell", "run", "IOPS", "MiB/s", "p50 us", "p99 us", "p99.9 us", "status", title="fio")
        for m in meas:
            table.add_row(_e(m.cell), str(m.run_index), _num(m.iops),
                          _num(None if m.bw_kib_s is None else m.bw_kib_s / 1024, ".1f"), _num(m.clat_p50_us),
                          _num(m.clat_p99_us), _num(m.clat_p999_us), _styled(m.status))
        out.print(table)
        counted = [mt for mt in COUNTED if any(getattr(m, mt.key, None) is not None for m in meas)]
        if counted:   # what the kernel did around each run (docs/workloads.md#counted-metrics)
            table = Table("cell", "run", *(mt.label for mt in counted), title="counted in the guest")
            for m in meas:
                table.add_row(_e(m.cell), str(m.run_index), *(_num(getattr(m, mt.key, None)) for mt in counted))
            out.print(table)
    if xfs:
        table = Table("section", "test", "status", "time", "message", title="xfstests")
        for x in xfs:
            first = (x.message or "").strip().splitlines()
            table.add_row(_e(x.section), _e(x.test), _styled(x.status), _num(x.duration_s, ".1f"),
                          _e(first[0][:120] if first else None))
        out.print(table)
    for ev in events:
        line = ev.data.get("line")
        out.print(escape(f"event:     {ev.kind}: {ev.title or ''}" + (f" (console line {line})" if line else "")))
    for ev in evidence:
        out.print(escape(f"evidence:  {os.path.join(run.run_dir, ev.path)}" + (f" ({ev.what})" if ev.what else "")))
    for f in _l(run.record.get("failures")):
        out.print(f"[red]failure:[/red]   {escape(str(f))}")
    if run.reproduces:
        out.print(escape(f"reproduces: {run.reproduces}"))
    return 0


# compare

def _side(store: Any, ref: str) -> tuple[str, list[Any]]:
    """A label and the runs of one side: a run ref, ``group:NAME`` or ``group:NAME@KERNEL``."""
    if not ref.startswith("group:"):
        run = store.run(ref)
        return run.run_id, [run]
    name, at, kernel = ref[len("group:"):].rpartition("@")
    if not at:
        name, kernel = kernel, ""
    if not name:
        raise ResultsError(f"{ref!r}: expected group:NAME or group:NAME@KERNEL")
    runs = store.runs(group=name, kernel=kernel or None)
    if not runs and kernel and store.runs(group=f"{name}@{kernel}", limit=1):  # a group named with an '@'
        name, kernel = f"{name}@{kernel}", ""
        runs = store.runs(group=name)
    if not runs:
        raise StoreError(f"{store.path}: no runs in group {name!r}" + (f" with kernel {kernel!r}" if kernel else ""))
    return ref[len("group:"):], runs[::-1]


def _by_cell(measurements: Iterable[Any]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for m in measurements:
        out.setdefault(m.cell, []).append(m)
    return out


def _statuses(rows: Iterable[Any]) -> dict[tuple[str, str], Counter]:
    out: dict[tuple[str, str], Counter] = {}
    for x in rows:
        out.setdefault((x.section, x.test), Counter())[x.status] += 1
    return out


def _status_text(c: Counter) -> str:
    if len(c) == 1:
        return next(iter(c))
    return ", ".join(f"{s} x{n}" for s, n in sorted(c.items(), key=lambda i: (-i[1], i[0])))


def _fmt_value(x: float) -> str:
    if not math.isfinite(x):
        return str(x)
    return f"{x:.0f}" if abs(x) >= 100 else f"{x:.3g}"


def _fmt_p(p: float | None) -> str:
    """A p- or q-value for the table."""
    return "n/a" if p is None else "<0.001" if p < 0.001 else f"{p:.3f}"


def _finite(x: float | None) -> float | None:
    return x if x is None or math.isfinite(x) else None


def _compare(args: argparse.Namespace) -> int:
    from ..results.verdict import cell_values, decide_cells, metric  # heavy: scipy, only for this verb
    shown = list(dict.fromkeys(args.metric or [m.key for m in GATING]))
    with open_store(args) as store:
        (a_label, a_runs), (b_label, b_runs) = _side(store, args.a), _side(store, args.b)
        a_ids, b_ids = [r.run_id for r in a_runs], [r.run_id for r in b_runs]
        a_meas, b_meas = store.measurements(a_ids), store.measurements(b_ids)
        a_xfs, b_xfs = _statuses(store.xfstests(a_ids)), _statuses(store.xfstests(b_ids))
    out, console = common.out, common.console
    a_cells_all = {m.cell for m in a_meas if m.status == "ok"}
    b_cells_all = {m.cell for m in b_meas if m.status == "ok"}
    a_by, b_by = _by_cell(a_meas), _by_cell(b_meas)
    both_cells = sorted(a_cells_all & b_cells_all)
    # every cell compared here is decided together (the gating metrics always; the verdict module)
    decided = decide_cells({cell: cell_values(a_by[cell], b_by[cell]) for cell in both_cells}, shown)
    found = []
    for cell in both_cells:
        by_label = {c.metric: c for c in decided[cell]}
        found += [(cell, key, by_label[metric(key).label]) for key in shown if metric(key).label in by_label]
    if args.json:
        common.write_stdout(json.dumps({"a": a_label, "b": b_label, "rows": [
            {"cell": cell, "metric": key, "verdict": c.verdict, "base_median": c.base.median,
             "new_median": c.new.median, "pct_change": _finite(c.pct_change), "p_value": c.p_value,
             "q_value": c.q_value, "n_base": c.base.n, "n_new": c.new.n, "calibrated": c.calibrated}
            for cell, key, c in found]},
            indent=2) + "\n")
        return 0
    for side, label, runs in (("A", a_label, a_runs), ("B", b_label, b_runs)):
        kernels = ", ".join(dict.fromkeys(r.kernel or "?" for r in runs))
        out.print(escape(f"{side}: {label}: {len(runs)} run{'s' * (len(runs) != 1)}, kernel {kernels}"))
    table = Table("cell", "metric", "A median", "B median", "change", "p", "q", "runs a/b", "verdict")
    for cell, key, c in found:
        pct = f"{c.pct_change:+.1f}%" if math.isfinite(c.pct_change) else "n/a"
        table.add_row(_e(cell), key, _fmt_value(c.base.median), _fmt_value(c.new.median), pct,
                      _fmt_p(c.p_value), _fmt_p(c.q_value), f"{c.base.n}/{c.new.n}",
                      _styled(c.verdict) + (" (calibrated)" if c.calibrated else ""))
    if found:
        out.print(table)
    elif a_meas or b_meas:
        console.print("no fio cell has successful measurements on both sides")
    for side, only in (("A", a_cells_all - b_cells_all), ("B", b_cells_all - a_cells_all)):
        if only:
            console.print(escape(f"cells only in {side}: {', '.join(sorted(only))}"))
    both = sorted(set(a_xfs) & set(b_xfs))
    changed = [k for k in both if set(a_xfs[k]) != set(b_xfs[k])]
    if changed:
        xt = Table("section", "test", "A", "B", title="xfstests whose status differs")
        for key in changed:
            xt.add_row(_e(key[0]), _e(key[1]), _styled(_status_text(a_xfs[key])), _styled(_status_text(b_xfs[key])))
        out.print(xt)
    elif both:
        out.print(f"xfstests: the {len(both)} tests run on both sides have the same status")
    one_sided = len(set(a_xfs) ^ set(b_xfs))
    if one_sided:
        console.print(f"{one_sided} xfstests ran on one side only (not compared)")
    return 0


# export

def _export(args: argparse.Namespace) -> int:
    refs = list(args.runs)
    with open_store(args) as store:
        if args.group:
            group_runs = store.runs(group=args.group)
            if not group_runs:
                raise StoreError(f"{store.path}: no runs in group {args.group!r}")
            refs += [r.run_id for r in reversed(group_runs)]
        if not refs:
            raise ResultsError("nothing to export: name runs and/or --group GROUP")
        if args.format == "json":
            text = json.dumps(export_json(store, refs), indent=2) + "\n"
        else:
            text = export_junit(store, refs)
    if args.output is None:
        common.write_stdout(text)
        return 0
    path = Path(args.output)
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as e:
        raise ResultsError(f"cannot write {path}: {e.strerror or e}") from None
    common.console.print(escape(f"wrote {args.format} for {len(set(refs))} run(s) to {path}"))
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register `results list|show|compare|export`."""
    r = sub.add_parser("results", help="the results store: list, show, compare, export runs")
    rs = r.add_subparsers(dest="sub", required=True)

    ls = rs.add_parser("list", help="recorded runs, newest first")
    ls.add_argument("--group", help="only runs of this group")
    ls.add_argument("--kernel", help="only runs of this kernel (definition name or cache key)")
    ls.add_argument("--front-end", help="only runs recorded by this front end (cli, pytest, ...)")
    ls.add_argument("--limit", type=int, default=50, metavar="N", help="at most N runs (default 50; 0: all)")
    ls.set_defaults(func=_list)

    sh = rs.add_parser("show", help="one run: its spec, measurements, xfstests, events and evidence")
    sh.add_argument("run", help="a run id, a unique prefix of one, or its run directory")
    sh.add_argument("--json", action="store_true", help="print the run's JSON export instead")
    sh.set_defaults(func=_show)

    cp = rs.add_parser("compare", help="A (base) against B (new): fio medians with verdicts, xfstests changes")
    for name in ("a", "b"):
        cp.add_argument(name, metavar=name.upper(),
                        help="a run ref, group:NAME, or group:NAME@KERNEL (that group's runs of one kernel)")
    cp.add_argument("--metric", action="append", choices=[m.key for m in METRICS],
                    help=f"a metric to show (repeatable; default: {' and '.join(m.key for m in GATING)}, which "
                         "are always decided; the others only explain a verdict)")
    cp.add_argument("--json", action="store_true", help="print the fio verdicts as JSON instead (p and q in full)")
    cp.set_defaults(func=_compare)

    ex = rs.add_parser("export", help="runs as one JSON document or as JUnit XML")
    ex.add_argument("runs", nargs="*", metavar="RUN", help="run ids, unique prefixes or run directories")
    ex.add_argument("--group", help="also every run of this group")
    ex.add_argument("--format", required=True, choices=("json", "junit"))
    ex.add_argument("-o", "--output", metavar="FILE", help="write here (default: stdout)")
    ex.set_defaults(func=_export)
