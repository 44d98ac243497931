"""`kharness try SERIES`: from a posted series to a verdict in one command (docs/try.md)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from rich.markup import escape

from .common import console, open_store, out, results_root_from_args, say


def _try(args: argparse.Namespace) -> int:
    # heavy (testbed, executor, scipy): imported only when this verb runs
    from ..drivers.series.run import parse_budget, plan_try, regressed_cells, run_try, selection_lines, write_selection
    from ..executors.choose import executor_for
    from ..results.report import comparison_table
    budget = None if args.full else parse_budget(args.budget)
    named = [t.strip() for t in (args.xfstests or "").split(",") if t.strip()]
    with open_store(args) as store:
        plan = plan_try(args.series, base_name=args.base, name=args.name, budget_s=budget, full=args.full,
                        dry_run=args.dry_run, store=store, xfstests=not args.no_xfstests,
                        xfstests_named=named)
        for line in selection_lines(plan):
            out.print(escape(line))
        results = results_root_from_args(args) / f"try-{time.strftime('%Y%m%d-%H%M%S')}-{plan.name}"
        if args.dry_run:
            out.print(escape(f"dry run: nothing built; selection: {write_selection(plan, results)}"))
            return 0
        executor = executor_for(None)
        try:
            m, xfs, text = run_try(plan, results, accel=args.accel, say=say, sink=store, executor=executor)
        finally:
            executor.close()
    out.print(comparison_table(m))
    for cid in regressed_cells(m):     # as the suite's failure says it: the numbers, then the evidence
        o = m.outcomes[cid]
        out.print(escape(f"{cid}: regression; sysrq evidence from an extra run on {m.kernel}:"))
        for line in o.evidence or ["(nothing blocked at capture time)"]:
            out.print(escape(f"  {line}"))
        if o.evidence_paths:
            out.print(escape("  artifacts: " + ", ".join(o.evidence_paths)))
    if args.text:
        out.print(escape(text))
    for line in m.lost:
        console.print(escape(f"lost to the host and replaced: {line}"))
    out.print(escape(f"results: {results} (selection.json, report.txt, comparison.json)"))
    for d in xfs.diffs:
        out.print(escape(f"xfstests {d.section}:{d.test}: {d.category} ({d.tonight}; base {d.baseline})"))
    if xfs.not_run:
        out.print(escape(f"xfstests not run: {xfs.not_run}"))
    if any(o.failures for o in m.outcomes.values()):
        return 2
    return 1 if regressed_cells(m) or xfs.new_failures else 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register `try`."""
    t = sub.add_parser("try", help="test a posted series: read it, keep its definition, run what it touches")
    t.add_argument("series", help="an mbox or maildir (b4 am, lore), a git format-patch directory, or NAME:A..B")
    t.add_argument("--base", help="the definition to apply it on (default: the one whose cached source holds "
                                  "the series' base-commit)")
    t.add_argument("--budget", default="15m", help="machine time for the selection (15m, 900s, 1h)")
    t.add_argument("--full", action="store_true", help="run every cell, whatever the series touches")
    t.add_argument("--name", help="the kept definition's name (default: from the series' subject)")
    t.add_argument("--no-xfstests", action="store_true", help="choose and run fio cells only")
    t.add_argument("--xfstests", metavar="TESTS", help="run these xfstests instead of the chosen ones: "
                   "generic/001,generic/013 (in the selected filesystems' sections) or SECTION:TEST")
    t.add_argument("--dry-run", action="store_true", help="read, base and select; build and run nothing")
    t.add_argument("--text", action="store_true", help="print the plain-text report (always in report.txt)")
    t.add_argument("--accel", choices=["kvm", "tcg"])
    t.add_argument("--results-dir", type=Path, help="where the run directory goes")
    t.set_defaults(func=_try)
