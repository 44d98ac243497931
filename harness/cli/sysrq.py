"""`kharness sysrq parse`: sysrq dumps and kernel reports out of any console log or dmesg.

The log is read once, a line at a time: each cleaned line goes to the dump parser and to the event
watcher, and each dump is printed (or written as JSON) as soon as it ends, so memory stays bounded
by the largest single dump however long the log is.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from rich.markup import escape

from ..evidence.console import console_file_lines, open_console
from ..evidence.events import EventWatcher
from ..evidence.summary import summarize_dump, to_json
from ..evidence.sysrq import DumpParser
from .common import console, out


def _walk(path: Path, events: list) -> Iterator:
    """The dumps of the log at ``path`` as they end; its events are appended to ``events``."""
    parser, watcher = DumpParser(), EventWatcher()
    for line in console_file_lines(path):
        yield from parser.feed(line)
        watcher.feed_line(line)
    yield from parser.close()
    watcher.flush()
    events += sorted(watcher.events, key=lambda e: e.offset)


def _json_items(fh: TextIO, items: Iterator[dict]) -> None:
    """Write a list as json.dump(..., indent=1) writes it as a member of the top-level object."""
    first = True
    for item in items:
        body = json.dumps(item, indent=1, default=str).replace("\n", "\n  ")
        fh.write(("[\n  " if first else ",\n  ") + body)
        first = False
    fh.write("[]" if first else "\n ]")


def _write_json(fh: TextIO, path: Path) -> None:
    """{"dumps": [...], "events": [...]} as json.dump(..., indent=1) would write it, one dump at
    a time."""
    events: list = []
    fh.write('{\n "dumps": ')
    _json_items(fh, (to_json(d) for d in _walk(path, events)))
    fh.write(',\n "events": ')
    _json_items(fh, (e.__dict__ for e in events))
    fh.write("\n}\n")


def _sysrq_parse(args: argparse.Namespace) -> int:
    path = Path(args.log)
    open_console(path).close()  # HarnessError now, before any output, if it cannot be read
    if args.json:
        _write_json(sys.stdout, path)
        return 0
    events: list = []
    count = 0
    for d in _walk(path, events):
        count += 1
        out.print(f"[bold]dump {count}[/bold] (sysrq-{d.kind}, {len(d.tasks)} tasks, "
                  f"{len(d.workqueues)} busy workqueues)")
        for line in summarize_dump(d):
            out.print(f"  {escape(line)}")
    if not count and not events:
        console.print(escape(f"{path}: no sysrq dumps or kernel events found"))
        return 1
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
