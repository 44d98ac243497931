"""Carry out specs: one fresh run directory and one boot each, records into the results store.

The executor seam: :func:`execute` runs specs here, one after another. A boot that leaves work
undone (a hang killed its VM, or the guest died) is followed by a fresh boot for what remains,
with a narrowed spec and a run directory of its own, so no boot's console or evidence is ever
overwritten. Every record is written to the store as soon as it arrives.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, Iterable, Protocol

from ..results.rundir import new_run_dir
from ..run.boot import run_boot
from ..run.records import BootRecord
from ..run.spec import FioWorkload, RunSpec, XfstestsWorkload

Say = Callable[[str], None]


class RecordSink(Protocol):
    """Where records go (the results store has this method)."""

    def add_run(self, record: dict) -> str: ...


def narrow(spec: RunSpec, remaining: Iterable[str]) -> RunSpec:
    """``spec`` with only the cells (fio) or tests (xfstests) named in ``remaining``."""
    keep = set(remaining)
    wl = spec.workload
    if isinstance(wl, FioWorkload):
        wl = dataclasses.replace(wl, cells=tuple(c for c in wl.cells if c.id in keep))
    elif isinstance(wl, XfstestsWorkload):
        wl = dataclasses.replace(wl, tests=tuple(t for t in wl.tests if t in keep))
    return dataclasses.replace(spec, workload=wl)


def execute(specs: Iterable[RunSpec], root: Path, *, sink: RecordSink | None = None, say: Say = print,
            group: str | None = None, front_end: str = "cli", reproduces: str | None = None,
            tests_source: Path | None = None, max_boots_per_spec: int = 10) -> list[BootRecord]:
    """Run every spec (and the rest of any boot cut short) here; return the records in order."""
    records: list[BootRecord] = []
    for spec in specs:
        current: RunSpec | None = spec
        boots = 0
        while current is not None and boots < max_boots_per_spec:
            boots += 1
            run_dir = new_run_dir(root, current.label)
            say(f"boot {run_dir.name}: {current.kernel.name}, {', '.join(d.kind for d in current.disks)}")
            rec = run_boot(current, run_dir, say=say, group=group, front_end=front_end,
                           reproduces=reproduces, tests_source=tests_source)
            records.append(rec)
            if sink is not None:
                sink.add_run(rec.to_json())
            progressed = rec.status not in ("boot-failed",) and (
                rec.measurements or rec.xfstests or len(rec.remaining) < _work_count(current))
            current = narrow(current, rec.remaining) if rec.remaining and progressed else None
    return records


def _work_count(spec: RunSpec) -> int:
    wl = spec.workload
    return len(wl.cells) if isinstance(wl, FioWorkload) else len(wl.tests) if isinstance(wl, XfstestsWorkload) else 1
