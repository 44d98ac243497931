"""Executors: where a plan's boots run. Same plan, same records, same results store.

An :class:`Executor` takes the specs a front end planned and a :class:`RunContext` (where run
directories go, the sink, progress, and what the records say about who ran them) and returns
one BootRecord per boot, in plan order (a boot cut short by a hang is followed by a fresh boot for
what remains, right after it). Every record is written to the sink by the calling process as it
arrives, so the results store is a local file of the driver and no worker ever needs to reach it.

- :class:`harness.executors.local.LocalExecutor` (the default): one boot after another on this
  host. Needs nothing beyond kharness.
- :class:`harness.executors.ray.RayExecutor`: each boot is a Ray task on a host of a Ray
  cluster that offers the ``vm`` resource (``kvm`` too for a KVM spec). Needs ``pip install
  'kharness[ray]'``; Ray is imported only when this executor is chosen.

Front ends pick one with :func:`harness.executors.choose.executor_for` (``--ray ADDRESS``), build the context once and
pass both down; drivers call ``executor.execute(specs, ctx)``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from ..run.records import BootRecord
from ..run.spec import RunSpec
from ..vocab import Say


class RecordSink(Protocol):
    """Where records go (the results store has this method)."""

    def add_run(self, record: dict) -> str: ...


@dataclass(frozen=True)
class RunContext:
    """What every boot of one execute call shares: run directories go under ``root``, records to
    ``sink`` (if any), progress to ``say``; ``group``, ``front_end`` and ``reproduces`` are
    recorded with each run; ``tests_source`` is an xfstests tree to run from; a spec cut short
    gets at most ``max_boots_per_spec`` boots in all."""

    root: Path
    sink: RecordSink | None = None
    say: Say = print
    group: str | None = None
    front_end: str = "cli"
    reproduces: str | None = None
    tests_source: Path | None = None
    max_boots_per_spec: int = 10
    max_replacements: int = 2       # fresh boots for boots lost to the host, per spec

    def but(self, **changes: Any) -> RunContext:
        """This context with ``changes`` (e.g. ``max_boots_per_spec=1`` for an evidence boot)."""
        return dataclasses.replace(self, **changes)


@runtime_checkable
class Executor(Protocol):
    """Runs specs, one fresh run directory under ``ctx.root`` per boot, records to ``ctx.sink``."""

    name: str

    def execute(self, specs: Iterable[RunSpec], ctx: RunContext) -> list[BootRecord]: ...

    def slots(self) -> int:
        """How many boots can run at once (a planner divides its time estimate by this)."""
        ...

    def close(self) -> None: ...

    def __enter__(self) -> Any: ...

    def __exit__(self, *exc: object) -> None: ...
