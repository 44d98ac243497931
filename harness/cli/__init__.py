"""The `kharness` command. A front end: each verb group composes harness.run and owns no logic."""

from __future__ import annotations

import argparse
import errno
import sys

from rich.markup import escape

from ..errors import HarnessError, Terminated
from ..procs import install_signal_handlers
from . import bisect, doctor, kernel, nightly, reproduce, results, run, sysrq, try_, vm
from .common import console


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kharness", description=__doc__)
    p.add_argument("--store", default=None, metavar="PATH",
                   help="results store (SQLite); default $KHARNESS_STORE or ~/.local/share/kharness/results.sqlite")
    sub = p.add_subparsers(dest="cmd", required=True)
    for module in (kernel, vm, run, try_, sysrq, results, reproduce, bisect, nightly, doctor):
        module.add_commands(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run one verb. SIGINT, SIGTERM and SIGHUP unwind through the same cleanup (locks,
    temporary entries, child process groups, VMs): exit 130 for Ctrl-C, 128+N for signal N."""
    install_signal_handlers()
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except HarnessError as e:
        console.print(f"[red]error:[/red] {escape(str(e))}")
        return 2
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        # Disk full: say where, not a traceback; what was written before stays on disk.
        where = e.filename or "the cache or results directory"
        console.print(f"[red]error:[/red] {escape(f'disk full writing {where}: {e.strerror}')}; free space "
                      "there (results already collected are kept) and run the command again")
        return 2
    except Terminated as e:
        console.print(escape(f"{e}: stopped"))
        return 128 + e.signum
    except KeyboardInterrupt:
        console.print("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
