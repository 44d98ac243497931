"""The metrics kharness compares between kernels: each fio number with its label, unit, which way
is better, and whether it gates a verdict or only explains one. Light on purpose (no scipy), so
front ends can list and check metric names without loading the statistics; the rules that use
them are in :mod:`.verdict`."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ..errors import HarnessError


@dataclass(frozen=True)
class Metric:
    """A fio number compared between kernels: its measurement field, how it is labelled, its
    unit, which way is better, and whether it gates a verdict or only explains one."""

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
)
GATING: tuple[Metric, ...] = tuple(m for m in METRICS if m.gates)
_BY_KEY = {m.key: m for m in METRICS}
_BY_LABEL = {m.label: m for m in METRICS}


def by_label(label: str) -> Metric | None:
    """The metric a comparison's label names (``IOPS``, ``p99 latency us``), or None."""
    return _BY_LABEL.get(label)


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
