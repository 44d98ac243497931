"""`kharness sysrq parse`: sysrq dumps and kernel reports out of any console log or dmesg."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rich.markup import escape

from .common import console, out


def _sysrq_parse(args: argparse.Namespace) -> int:
    from ..errors import HarnessError
    from ..evidence.events import scan_console
    from ..evidence.summary import summarize, to_json
    from ..evidence.sysrq import parse_dumps
    path = Path(args.log)
    try:
        text = path.read_text(errors="replace")
    except OSError as e:
        raise HarnessError(f"cannot read {path}: {e.strerror}") from None
    dumps = parse_dumps(text)
    events = scan_console(text)
    if args.json:
        json.dump({"dumps": [to_json(d) for d in dumps], "events": [e.__dict__ for e in events]},
                  sys.stdout, indent=1, default=str)
        sys.stdout.write("\n")
        return 0
    if not dumps and not events:
        console.print(escape(f"{path}: no sysrq dumps or kernel events found"))
        return 1
    for i, d in enumerate(dumps):
        out.print(f"[bold]dump {i + 1}[/bold] (sysrq-{d.kind}, {len(d.tasks)} tasks, "
                  f"{len(d.workqueues)} busy workqueues)")
        for line in summarize(d):
            out.print(f"  {escape(line)}")
    if events:
        out.print("[bold]events[/bold]")
        for e in events:
            out.print(f"  {escape(e.title)}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register `sysrq parse`."""
    s = sub.add_parser("sysrq", help="sysrq evidence").add_subparsers(dest="sub", required=True)
    p = s.add_parser("parse", help="parse a console log or dmesg into tasks and workqueues")
    p.add_argument("log")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_sysrq_parse)
