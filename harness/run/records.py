"""Records: what one boot produced, as values that flow back up to the front ends and the store.

A record holds no reference to a VM, a lock or a front end's state, and has a JSON form, so a
boot can run in another process (or on another host) and hand back its record.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..evidence.events import Event
from .spec import RunSpec

STATUSES = ("done", "hang", "error", "boot-failed")


@dataclass(frozen=True)
class MeasurementRecord:
    """One fio run of one cell. Paths are relative to the run directory."""

    cell: str
    fs: str
    disk: str
    pattern: str
    engine: str
    run_index: int
    status: str                 # ok | error | hang
    iops: float | None = None
    bw_kib_s: float | None = None
    clat_p50_us: float | None = None
    clat_p99_us: float | None = None
    clat_p999_us: float | None = None
    fio_json: str | None = None
    error: str | None = None
    # counted metrics (harness.workloads.counters; None in records made before them or where
    # the counter is absent): per 1000 of the job's writes, and the dio workqueue's figures
    dev_writes_per_kwrite: float | None = None
    flushes_per_kwrite: float | None = None
    jbd2_commits_per_kwrite: float | None = None
    xfs_log_writes_per_kwrite: float | None = None
    xfs_log_forces_per_kwrite: float | None = None
    ctxsw_per_kwrite: float | None = None
    dio_wq_items_per_kwrite: float | None = None
    dio_wq_peak_concurrency: float | None = None
    dio_wq_mean_us: float | None = None
    counters: dict[str, float] | None = None    # the raw changes over the job, and fio's writes
    # the guest's speed just before the job (the calibration job's IOPS: buffered writes to
    # tmpfs, which no storage patch changes); None when the job had no calibration
    calib_iops: float | None = None
    # the share of the host's CPU that other processes left to this guest's QEMU while fio ran
    # (harness.vm.hostload); None where /proc cannot say
    host_free: float | None = None


@dataclass(frozen=True)
class XfstestRecord:
    """One xfstest's outcome; ``artifacts`` is relative to the run directory."""

    section: str
    test: str
    status: str                 # pass | fail | notrun | error
    duration_s: float | None = None
    message: str = ""
    artifacts: str | None = None
    output_diff: str | None = None
    dmesg: str | None = None


@dataclass(frozen=True)
class EvidenceRef:
    """A file of evidence (sysrq capture, hang summary), relative to the run directory."""

    path: str
    what: str


@dataclass(frozen=True)
class BootRecord:
    """Everything one boot produced. ``remaining`` lists the cells or tests a hang (or a dead
    guest) left undone; a composer runs them in a fresh boot with a spec of their own."""

    run_id: str
    run_dir: str
    spec: RunSpec
    status: str
    started: str
    finished: str | None = None
    boot_seconds: float | None = None
    measurements: tuple[MeasurementRecord, ...] = ()
    xfstests: tuple[XfstestRecord, ...] = ()
    events: tuple[Event, ...] = ()
    evidence: tuple[EvidenceRef, ...] = ()
    failures: tuple[str, ...] = ()
    remaining: tuple[str, ...] = ()
    sysrq_summary: tuple[str, ...] = ()
    command_status: int | None = None
    group: str | None = None
    front_end: str = "cli"
    reproduces: str | None = None
    # why the boot was lost to the host (harness.evidence.infra), set by the executor that
    # replaced it with a fresh boot; "" for a boot that counts
    lost: str = ""

    def to_json(self) -> dict[str, Any]:
        """The JSON form the results store and ``record.json`` take."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["spec"] = self.spec.to_json()
        d["label"] = self.spec.label
        d["role"] = self.spec.role
        for k in ("measurements", "xfstests", "events", "evidence"):
            d[k] = [dataclasses.asdict(x) for x in d[k]]
        for k in ("failures", "remaining", "sysrq_summary"):
            d[k] = list(d[k])
        return d

    def values(self, cell: str, metric: str) -> list[float]:
        """``metric`` of every successful measurement of ``cell``."""
        return [getattr(m, metric) for m in self.measurements
                if m.cell == cell and m.status == "ok" and getattr(m, metric) is not None]
