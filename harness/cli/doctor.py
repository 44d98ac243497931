"""`kharness doctor`: what a run needs from this machine, each check with its fix."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.markup import escape
from rich.table import Table

from .common import out

_STYLE = {"ok": "green", "warn": "yellow", "fail": "red"}


def _doctor(args: argparse.Namespace) -> int:
    from ..doctor import FAIL, Where, run_checks  # heavy (every stage's probes): loaded only for this verb
    rows = run_checks(Where(store=Path(args.store) if args.store else None,
                            results=Path(args.results_dir) if args.results_dir else None))
    table = Table(show_lines=False, header_style="bold")
    for col in ("check", "status", "detail", "fix"):
        table.add_column(col, overflow="fold")
    for r in rows:
        style = _STYLE.get(r.status, "")
        table.add_row(escape(r.name), f"[{style}]{r.status}[/{style}]", escape(r.detail), escape(r.fix))
    out.print(table)
    failed = [r.name for r in rows if r.status == FAIL]
    warned = [r.name for r in rows if r.status == "warn"]
    out.print(escape(f"{len(rows)} checks: {len(rows) - len(failed) - len(warned)} ok, "
                     f"{len(warned)} warn, {len(failed)} fail"
                     + (f" ({', '.join(failed)})" if failed else "")))
    return 1 if failed else 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register `doctor`."""
    p = sub.add_parser("doctor", help="check what a run needs (tools, KVM, sources, disk, store) "
                       "and say how to fix each")
    p.add_argument("--results-dir", default=None, metavar="DIR",
                   help="the results directory to check (default $KHARNESS_RESULTS or ./results)")
    p.set_defaults(func=_doctor)
