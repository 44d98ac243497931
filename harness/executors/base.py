"""Executors: where a plan's boots run. Same plan, same records, same results store.

An :class:`Executor` takes the specs a front end planned and returns one BootRecord per boot, in
plan order (a boot cut short by a hang is followed by a fresh boot for what remains, right after
it). Every record is written to the sink by the calling process as it arrives, so the results
store is a local file of the driver and no worker ever needs to reach it.

- :class:`LocalExecutor` (the default): :func:`harness.executors.local.execute`, one boot after
  another on this host. Needs nothing beyond kharness.
- :class:`harness.executors.ray.RayExecutor`: each boot is a Ray task on a host of a Ray
  cluster that offers the ``vm`` resource (``kvm`` too for a KVM spec). Needs ``pip install
  'kharness[ray]'``; Ray is imported only when this executor is chosen.

Front ends pick one with :func:`executor_for` (``--ray ADDRESS``) and pass it down; the
composition layer calls ``executor.execute(...)`` where it called ``execute(...)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable, Protocol, runtime_checkable

from .local import RecordSink, execute
from ..run.records import BootRecord
from ..run.spec import RunSpec

Say = Callable[[str], None]


@runtime_checkable
class Executor(Protocol):
    """Runs specs, one fresh run directory under ``root`` per boot, records to ``sink``."""

    name: str

    def execute(self, specs: Iterable[RunSpec], root: Path, *, sink: RecordSink | None = None,
                say: Say = print, group: str | None = None, front_end: str = "cli",
                reproduces: str | None = None, tests_source: Path | None = None,
                max_boots_per_spec: int = 10) -> list[BootRecord]: ...

    def slots(self) -> int:
        """How many boots can run at once (a planner divides its time estimate by this)."""
        ...

    def close(self) -> None: ...

    def __enter__(self) -> Any: ...

    def __exit__(self, *exc: object) -> None: ...


class LocalExecutor:
    """Today's executor: every boot here, one after another."""

    name = "local"

    def execute(self, specs: Iterable[RunSpec], root: Path, *, sink: RecordSink | None = None,
                say: Say = print, group: str | None = None, front_end: str = "cli",
                reproduces: str | None = None, tests_source: Path | None = None,
                max_boots_per_spec: int = 10) -> list[BootRecord]:
        return execute(specs, root, sink=sink, say=say, group=group, front_end=front_end,
                       reproduces=reproduces, tests_source=tests_source,
                       max_boots_per_spec=max_boots_per_spec)

    def slots(self) -> int:
        return 1

    def close(self) -> None:
        pass

    def __enter__(self) -> "LocalExecutor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def executor_for(address: str | None, **options: Any) -> Executor:
    """The executor a front end's ``--ray ADDRESS`` asks for: None or '' -> LocalExecutor; an
    address (``auto``, ``HOST:6379``, ``ray://HOST:10001``) -> RayExecutor connected to that
    cluster (``options`` go to RayExecutor). HarnessError naming ``pip install 'kharness[ray]'``
    when Ray is not installed."""
    if not address:
        return LocalExecutor()
    from .ray import RayExecutor
    return RayExecutor(address, **options)
