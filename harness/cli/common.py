"""What every verb shares: the two consoles, plain-text escaping, the results store, progress."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.text import Text

from ..evidence.console import strip_controls
from ..paths import results_root
from ..results.store import Store
from ..vocab import Say


class _Console(Console):
    """A rich Console for recorded and guest text: no emoji codes (":x:" stays ":x:"), and every
    string it renders (table cells too) loses terminal escapes and control characters first."""

    def render_str(self, text: str, **kw: Any) -> Text:
        return super().render_str(strip_controls(text), **kw)


# Piped or logged output gets wide tables (rich would truncate cells to 80 columns).
_WIDE = None if sys.stdout.isatty() else 180
console = _Console(stderr=True, highlight=False, emoji=False,
                   width=None if sys.stderr.isatty() else 180)              # progress
out = _Console(highlight=False, soft_wrap=True, emoji=False, width=_WIDE)     # results


def say(message: str) -> None:
    """A progress line, printed as plain text (never as rich markup)."""
    console.print(escape(message))


def open_store(args: argparse.Namespace):
    """The results store named by --store (else $KHARNESS_STORE, else the default path)."""
    return Store(Path(args.store) if getattr(args, "store", None) else None)


def results_root_from_args(args: argparse.Namespace) -> Path:
    """Where run directories go: --results-dir, else $KHARNESS_RESULTS, else ./results."""
    return Path(args.results_dir) if getattr(args, "results_dir", None) else results_root()


def progress_builder(label: str) -> tuple[object, Say]:
    """A rich status line showing the compile step being run (plain lines when not a TTY)."""
    status = console.status(escape(f"{label}: starting"))
    count = {"n": 0}

    def update(line: str) -> None:
        if line.startswith("  ") and len(line.split()) >= 2:
            count["n"] += 1
            status.update(escape(f"{label}: {count['n']} steps, {line.strip()[:70]}"))
    return status, update


def write_stdout(text: str) -> None:
    sys.stdout.write(text)
