"""The store's public types: its error, and the rows it hands back (plain frozen values)."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import HarnessError


class StoreError(HarnessError):
    """The results store cannot be opened, migrated, read or written; names the file."""


@dataclass(frozen=True)
class RunRow:
    """One run: its columns, plus the spec and the whole record decoded from JSON."""

    run_id: str
    run_dir: str
    group: str | None
    front_end: str | None
    label: str | None
    role: str | None
    status: str
    started: str | None
    finished: str | None
    kernel: str | None
    kernel_key: str | None
    kernel_commit: str | None
    image_key: str | None
    accel: str | None
    workload: str | None
    boot_seconds: float | None
    reproduces: str | None
    spec: dict
    record: dict


@dataclass(frozen=True)
class MeasurementRow:
    """One fio measurement of a cell with its counted metrics, the run's kernel and role joined in."""

    run_id: str
    cell: str
    fs: str | None
    disk: str | None
    pattern: str | None
    engine: str | None
    run_index: int
    status: str | None
    iops: float | None
    bw_kib_s: float | None
    clat_p50_us: float | None
    clat_p99_us: float | None
    clat_p999_us: float | None
    fio_json: str | None
    dev_writes_per_kwrite: float | None
    flushes_per_kwrite: float | None
    jbd2_commits_per_kwrite: float | None
    xfs_log_writes_per_kwrite: float | None
    xfs_log_forces_per_kwrite: float | None
    ctxsw_per_kwrite: float | None
    dio_wq_items_per_kwrite: float | None
    dio_wq_peak_concurrency: float | None
    dio_wq_mean_us: float | None
    counters: dict                  # the raw counts over the job ({} before counters were kept)
    calib_iops: float | None        # the guest's speed just before the job (schema 4; None before)
    host_free: float | None         # the host CPU share other processes left while it ran (schema 4)
    kernel: str | None
    role: str | None


@dataclass(frozen=True)
class XfstestRow:
    """One xfstests result; ``artifacts`` is relative to the run directory."""

    run_id: str
    section: str
    test: str
    status: str
    duration_s: float | None
    message: str | None
    artifacts: str | None


@dataclass(frozen=True)
class EventRow:
    """A console event (hang, lockup, oops...); ``data`` is the event as recorded."""

    run_id: str
    seq: int
    kind: str
    title: str | None
    data: dict


@dataclass(frozen=True)
class EvidenceRow:
    """An evidence file of a run, relative to its run directory."""

    run_id: str
    seq: int
    path: str
    what: str | None


@dataclass(frozen=True)
class VerdictRow:
    """A stored base-versus-new verdict for one cell and metric of a group."""

    group: str
    cell: str
    metric: str
    base_kernel: str
    new_kernel: str
    verdict: str
    base_median: float | None
    new_median: float | None
    pct_change: float | None
    p_value: float | None
    n_base: int | None
    n_new: int | None
    detail: dict
