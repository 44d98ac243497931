"""`kharness nightly run|plan|list|report|accept|flaky`: nightly regression runs of a plan.

`nightly run PLAN` needs no terminal (a systemd timer or cron starts it): progress goes to stderr
and to ``<night>/nightly.log`` beside the report. Exit codes: 0 nothing regressed, 1 a regression
or a new xfstests failure, 2 the harness failed (or another night holds the lock).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import IO

from rich.markup import escape
from rich.table import Table

from ..errors import HarnessError, LockTimeout
from .common import console, open_store, out, results_root_from_args, say


def nights_root(args: argparse.Namespace) -> Path:
    """--results-dir, else $KHARNESS_RESULTS/nightly, else ./results/nightly."""
    return Path(args.results_dir) if getattr(args, "results_dir", None) else results_root_from_args(args) / "nightly"


def _db(store):
    # heavy (the nightly drivers, scipy): loaded only for this verb
    from ..drivers.nightly.book import NightlyDB, default_path
    return NightlyDB(default_path(store.path))


def _run(args: argparse.Namespace) -> int:
    # heavy (the nightly drivers, scipy): loaded only for this verb
    from ..drivers.nightly.html import write_reports
    from ..drivers.nightly.night import run_night
    from ..drivers.nightly.plans import load_plan
    from ..executors.choose import executor_for
    plan = load_plan(args.plan)          # validated before the lock or any slow step
    root = nights_root(args)
    root.mkdir(parents=True, exist_ok=True)
    log: dict[str, IO[str] | None] = {"fh": None}

    def tee(msg: str) -> None:
        say(msg)
        fh = log["fh"]
        if fh is not None:
            fh.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {msg}\n")
            fh.flush()

    def opened(night_dir: Path) -> None:
        night_dir.mkdir(parents=True, exist_ok=True)
        log["fh"] = open(night_dir / "nightly.log", "a")  # noqa: SIM115 (closed after the night)

    with open_store(args) as store, _db(store) as db, executor_for(args.ray) as executor:
        try:
            outcome = run_night(plan, root, store, db, night=args.night, say=tee, accel=args.accel, wait=args.wait,
                                report=lambda res, d: write_reports(res, d, store, db), on_open=opened,
                                executor=executor)
        except LockTimeout as e:
            console.print(f"[red]error:[/red] another night is running: {escape(str(e))}")
            return 2
        finally:
            fh = log["fh"]
            if fh is not None:
                fh.close()
    res = outcome.result
    if res is not None:
        for r in res.regressions:
            d = r.history if r.history.flagged else r.baseline
            out.print(escape(f"REGRESSION {r.kref} {r.cell}: {r.metric} {d.pct:+.1f}% ({d.then:.0f} -> {d.now:.0f}, "
                             f"{d.method})"))
            for line in r.explains:
                out.print(escape(f"  counted: {line}"))
            for line in (res.evidence.get((r.kref, r.cell)) or {}).get("summary", [])[:5]:
                out.print(escape(f"  sysrq: {line}"))
            if r.bisect:
                out.print(escape(f"  bisect: {r.bisect}"))
            if r.reproduce:
                out.print(escape(f"  reproduce: {r.reproduce}"))
        for t in res.new_failures:
            out.print(escape(f"NEW FAILURE {t.section} {t.test}: {t.tonight}"))
        for h in res.hangs:
            out.print(escape(f"HANG {h}"))
        for u in res.not_run:
            out.print(escape(f"not run: {u['unit']} ({', '.join(u['work'])}): {u['why']}"))
        out.print(escape(f"night {outcome.night}: {res.verdict}; report {outcome.report}"))
    else:
        out.print(escape(f"night {outcome.night}: harness failure: {'; '.join(outcome.messages)}"))
    return outcome.exit_code


def _plan(args: argparse.Namespace) -> int:
    # heavy (the nightly drivers, scipy): loaded only for this verb
    from ..drivers.nightly.plans import load_plan
    from ..drivers.nightly.units import estimate, estimate_night, planned_units
    plan = load_plan(args.plan)
    units = planned_units(plan)
    for i, u in enumerate(units):  # plain lines: the labels are long and scripts read them
        out.print(escape(f"{i:3d} {estimate(u, plan):5.0f}s {u.label}  {u.kref}: {', '.join(u.work)}"))
    total = estimate_night(plan)
    out.print(escape(f"{len(units)} boots (xfstests retries and evidence boots come on top when needed); "
                     f"estimate {total / 60:.0f} min incl. builds; budget {plan.budget_s / 60:.0f} min"))
    return 0


def _list(args: argparse.Namespace) -> int:
    with open_store(args) as store, _db(store) as db:
        table = Table("night", "plan", "started", "status", "verdict", "exit", "commits")
        for n in reversed(db.nights(args.plan)):
            table.add_row(escape(n.night), escape(n.plan), escape(n.started), escape(n.status),
                          escape((n.verdict or "-") + (" (accepted)" if n.accepted else "")), str(n.exit_code),
                          escape(" ".join(f"{k}={c[:12]}" for k, c in n.commits.items())))
        out.print(table)
    return 0


def _report(args: argparse.Namespace) -> int:
    """Rebuild a night's reports from the store (no boots)."""
    # heavy (the nightly drivers, scipy): loaded only for this verb
    from ..drivers.nightly.fold import fold_night
    from ..drivers.nightly.html import write_reports
    from ..drivers.nightly.night import night_ranges
    from ..drivers.nightly.plans import load_plan_file
    with open_store(args) as store, _db(store) as db:
        n = db.night(args.night)
        if n is None:
            raise HarnessError(f"no night {args.night!r} in {db.path}")
        d = nights_root(args) / n.night
        plan = load_plan_file(d / "plan.yaml", name=n.plan)
        res = fold_night(store, db, plan, n.night, n.commits)
        res.ranges = night_ranges(plan, db, n.night, n.commits)
        path = write_reports(res, d, store, db)
    out.print(escape(f"night {n.night}: {res.verdict}; report {path}"))
    return 0


def _accept(args: argparse.Namespace) -> int:
    with open_store(args) as store, _db(store) as db:
        db.accept(args.night)
    out.print(escape(f"night {args.night} accepted: later nights compare against it"))
    return 0


def _flaky(args: argparse.Namespace) -> int:
    from ..results.history import expunge_lines  # heavy (the nightly drivers, scipy): loaded only for this verb
    with open_store(args) as store, _db(store) as db:
        rates = db.flaky_rates(args.plan, last=args.nights)
    table = Table("section", "test", "failed attempts", "flaky nights", "kernels")
    for r in rates:
        if r.failures:
            table.add_row(escape(r.section), escape(r.test), f"{r.failures}/{r.attempts}",
                          f"{r.flaky_nights}/{r.nights}", escape(", ".join(sorted(r.kernels))))
    out.print(table)
    lines = expunge_lines(rates, min_flaky_nights=args.min_nights, source=f"kharness nightly {args.plan}")
    if lines:
        out.print("expunge entries for fstests-configs/*.yaml:")
        for line in lines:
            out.print(escape(line))
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register `nightly run|plan|list|report|accept|flaky`."""
    n = sub.add_parser("nightly", help="nightly regression runs of a plan (nightly/*.yaml)").add_subparsers(
        dest="sub", required=True)
    r = n.add_parser("run", help="run (or resume) tonight's night of a plan; exit 0 good, 1 regression, 2 error")
    r.add_argument("plan", help="a plan name (nightly/NAME.yaml) or a path to a plan file")
    r.add_argument("--night", help="night id (default: resume the plan's unfinished night, else PLAN-YYYYMMDD)")
    r.add_argument("--results-dir", help="where nights go (default: $KHARNESS_RESULTS/nightly or ./results/nightly)")
    r.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                   help="wait this long for another night to finish (default: fail at once)")
    r.add_argument("--accel", choices=["kvm", "tcg"])
    r.add_argument("--ray", metavar="ADDRESS", default=None,
                   help="run the night's boots on a Ray cluster (auto, HOST:6379, ray://HOST:10001), as many "
                        "at once as it has vm slots; needs pip install 'kharness[ray]'")
    r.set_defaults(func=_run)
    p = n.add_parser("plan", help="print a plan's boots in order and the time estimate")
    p.add_argument("plan")
    p.set_defaults(func=_plan)
    ls = n.add_parser("list", help="nights in the nightly book")
    ls.add_argument("--plan", default=None)
    ls.set_defaults(func=_list)
    rp = n.add_parser("report", help="rebuild a night's reports from the store")
    rp.add_argument("night")
    rp.add_argument("--results-dir")
    rp.set_defaults(func=_report)
    a = n.add_parser("accept", help="accept a night as good (the new reference for later nights)")
    a.add_argument("night")
    a.set_defaults(func=_accept)
    f = n.add_parser("flaky", help="flaky xfstests of a plan and expunge entries")
    f.add_argument("plan")
    f.add_argument("--nights", type=int, default=30, help="how many recent nights")
    f.add_argument("--min-nights", type=int, default=2, help="flaky on at least this many nights to expunge")
    f.set_defaults(func=_flaky)

