"""`kharness reproduce RUN_DIR|RUN_ID [--cell CELL]`: redo a recorded run, figures side by side."""

from __future__ import annotations

import argparse

from rich.markup import escape
from rich.table import Table

from ..image.xfstests import configured_source, resolve
from .common import console, open_store, out, results_root_from_args, say


def _reproduce(args: argparse.Namespace) -> int:
    from ..drivers.reproduce import reproduce, side_by_side  # heavy (testbed, executor, scipy): only for this verb
    with open_store(args) as store:
        where = configured_source(None, None)
        tests_source = resolve(*where).tree if where else None
        recorded, records = reproduce(args.run, results_root_from_args(args), cell=args.cell, store=store, sink=store,
                                      from_cache=args.from_cache, say=say, tests_source=tests_source)
    table = Table("cell / test", "figure", f"recorded ({recorded.run_id})", "reproduced", "change")
    for row in side_by_side(recorded, records):
        table.add_row(*(escape(c) for c in row))
    out.print(table)
    for rec in records:
        for f in rec.failures:
            console.print(f"[red]{escape(rec.status)}:[/red] {escape(f)}")
        if rec.sysrq_summary:
            out.print("sysrq evidence of the reproduction:")
            for line in rec.sysrq_summary[:20]:
                out.print(f"  {escape(line)}")
        out.print(escape(f"reproduction {rec.run_id}: {rec.status}; results: {rec.run_dir}"))
    return 0 if all(r.status in ("done", "hang") for r in records) else 1


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register `reproduce`."""
    r = sub.add_parser("reproduce", help="redo a recorded run exactly (same kernel, image, disks, workload)")
    r.add_argument("run", help="a run directory (holding spec.json) or a run id (or unique prefix) in the store")
    r.add_argument("--cell", help="only this fio cell (e.g. ext4/nvme/unwritten-convert/libaio) or xfstest")
    r.add_argument("--from-cache", action="store_true",
                   help="when the definition changed since, reuse the recorded kernel if it is still cached")
    r.add_argument("--results-dir", help="where the new run directory goes")
    r.set_defaults(func=_reproduce)
