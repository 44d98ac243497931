"""Carry out specs here: one fresh run directory and one boot each, records into the results store.

:class:`LocalExecutor` runs specs on this host, one after another. A boot that leaves work
undone (a hang killed its VM, or the guest died) is followed by a fresh boot for what remains,
with a narrowed spec and a run directory of its own, so no boot's console or evidence is ever
overwritten; a boot the host lost (harness.evidence.infra) is replaced by a fresh one. Every
record is written to the sink as soon as it arrives.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path

from ..evidence.infra import infrastructure_loss
from ..results.rundir import new_run_dir
from ..run.boot import run_boot
from ..run.records import BootRecord
from ..run.spec import RunSpec
from ..util import write_json
from .base import RunContext


def progressed(rec: BootRecord, spec: RunSpec) -> bool:
    """Whether a boot of ``spec`` got anywhere (so a fresh boot for what remains is worth it)."""
    return rec.status != "boot-failed" and bool(
        rec.measurements or rec.xfstests or len(rec.remaining) < len(spec.workload.work()))


def lost_to_host(rec: BootRecord) -> BootRecord:
    """``rec`` with ``lost`` set, and its record.json rewritten, when the host lost the boot
    (harness.evidence.infra: QEMU killed, a known emulator fault); else ``rec`` unchanged."""
    why = infrastructure_loss(rec.status, rec.failures, rec.events, rec.spec.accel,
                              did_work=bool(rec.measurements or rec.xfstests))
    if not why:
        return rec
    rec = dataclasses.replace(rec, lost=why)
    if Path(rec.run_dir).is_dir():
        write_json(Path(rec.run_dir) / "record.json", rec.to_json(), indent=1, sort_keys=False)
    return rec


def execute(specs: Iterable[RunSpec], ctx: RunContext) -> list[BootRecord]:
    """Run every spec (and the rest of any boot cut short) here; return the records in order.
    A boot lost to the host is recorded as lost and replaced by a fresh boot of the same spec,
    up to ``ctx.max_replacements`` times."""
    records: list[BootRecord] = []
    for spec in specs:
        current: RunSpec | None = spec
        boots = replaced = 0
        while current is not None and boots < ctx.max_boots_per_spec:
            boots += 1
            run_dir = new_run_dir(ctx.root, current.label)
            ctx.say(f"boot {run_dir.name}: {current.kernel.name}, {', '.join(d.kind for d in current.disks)}")
            rec = run_boot(current, run_dir, say=ctx.say, group=ctx.group, front_end=ctx.front_end,
                           reproduces=ctx.reproduces, tests_source=ctx.tests_source)
            if replaced < ctx.max_replacements:
                rec = lost_to_host(rec)
            records.append(rec)
            if ctx.sink is not None:
                ctx.sink.add_run(rec.to_json())
            if rec.lost:
                replaced, boots = replaced + 1, boots - 1
                ctx.say(f"boot {run_dir.name} lost to the host ({rec.lost}): a fresh boot replaces it")
                continue
            current = current.narrowed(rec.remaining) if rec.remaining and progressed(rec, current) else None
    return records


class LocalExecutor:
    """The default executor: every boot here, one after another."""

    name = "local"

    def execute(self, specs: Iterable[RunSpec], ctx: RunContext) -> list[BootRecord]:
        return execute(specs, ctx)

    def slots(self) -> int:
        return 1

    def close(self) -> None:
        pass

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
