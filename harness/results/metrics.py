"""The metrics kharness compares between kernels: each fio number and each counted mechanism
metric with its label, unit, which way is better, and whether it gates a verdict or only explains
one. Light on purpose (no scipy), so
front ends can list and check metric names without loading the statistics; the rules that use
them are in :mod:`.verdict`."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ..errors import HarnessError


@dataclass(frozen=True)
class Metric:
    """A number compared between kernels (fio's, or one counted in the guest around the job):
    its measurement field, how it is labelled, its unit, which way is better, and whether it
    gates a verdict or only explains one."""

    key: str
    label: str
    unit: str
    higher_is_better: bool
    gates: bool


METRICS: tuple[Metric, ...] = (
    Metric("iops", "IOPS", "I/O per second", True, True),
    Metric("bw_kib_s", "bandwidth KiB/s", "KiB/s", True, False),
    Metric("clat_p50_us", "p50 latency us", "us", False, False),
    Metric("clat_p99_us", "p99 latency us", "us", False, True),
    Metric("clat_p999_us", "p99.9 latency us", "us", False, False),
    # Counted in the guest around the measured job (harness.workloads.counters): they say what
    # the kernel did, and only explain a verdict (docs/workloads.md#counted-metrics).
    Metric("dev_writes_per_kwrite", "device writes/kwrite", "write requests per 1000 writes", False, False),
    Metric("flushes_per_kwrite", "flushes/kwrite", "flush requests per 1000 writes", False, False),
    Metric("jbd2_commits_per_kwrite", "jbd2 commits/kwrite", "journal transactions per 1000 writes", False, False),
    Metric("xfs_log_writes_per_kwrite", "xfs log writes/kwrite", "log writes per 1000 writes", False, False),
    Metric("xfs_log_forces_per_kwrite", "xfs log forces/kwrite", "log forces per 1000 writes", False, False),
    Metric("ctxsw_per_kwrite", "context switches/kwrite", "context switches per 1000 writes", False, False),
    Metric("dio_wq_items_per_kwrite", "dio wq items/kwrite", "work items per 1000 writes", False, False),
    Metric("dio_wq_peak_concurrency", "dio wq peak concurrency", "work items executing at once", True, False),
    Metric("dio_wq_mean_us", "dio wq item us", "us from start to end of a work item", False, False),
)
GATING: tuple[Metric, ...] = tuple(m for m in METRICS if m.gates)
COUNTED: tuple[Metric, ...] = METRICS[5:]
_BY_KEY = {m.key: m for m in METRICS}
_BY_LABEL = {m.label: m for m in METRICS}


def by_label(label: str) -> Metric | None:
    """The metric a comparison's label names (``IOPS``, ``p99 latency us``), or None."""
    return _BY_LABEL.get(label)


def gates(label: str) -> bool:
    """Whether the metric a comparison's label names gates a verdict (a label kharness does not
    know is treated as gating: never silently explanatory)."""
    m = _BY_LABEL.get(label)
    return m is None or m.gates


class MetricError(HarnessError):
    """A metric key kharness does not compare; names the known keys."""


def metric(key: str) -> Metric:
    """The metric of a measurement field (``iops``, ``clat_p99_us``, ...); MetricError otherwise."""
    try:
        return _BY_KEY[key]
    except KeyError:
        raise MetricError(f"unknown metric {key!r} (known: {', '.join(_BY_KEY)})") from None


def selected(keys: Iterable[str] = ()) -> tuple[Metric, ...]:
    """The gating metrics and the metrics ``keys`` names, in table order (each key checked)."""
    want = {metric(k).key for k in keys}
    return tuple(m for m in METRICS if m.gates or m.key in want)
