"""Incoming run records checked and turned into table rows for the store.

Each checker names the offending key in the StoreError it raises (``record key measurements[2].iops:
expected a number or null, got 'fast'``); strings are made storable (lone surrogates replaced).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from .rows import MeasurementRow, StoreError, VerdictRow, XfstestRow


def _str(m: Mapping, key: str, where: str, required: bool = False) -> str | None:
    v = m.get(key)
    if v is None and not required:
        return None
    if not isinstance(v, str) or (required and not v):
        raise StoreError(f"{where}{key}: expected a{' non-empty' if required else ''} string, got {v!r}")
    return v.encode("utf-8", "replace").decode("utf-8")  # lone surrogates cannot be stored


def _num(m: Mapping, key: str, where: str) -> float | None:
    v = m.get(key)
    if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
        raise StoreError(f"{where}{key}: expected a number or null, got {v!r}")
    return None if v is None else float(v)


def _int(m: Mapping, key: str, where: str, required: bool = False) -> int | None:
    v = m.get(key)
    if (v is not None or required) and (isinstance(v, bool) or not isinstance(v, int)):
        raise StoreError(f"{where}{key}: expected an integer, got {v!r}")
    return v


def _items(record: Mapping, key: str) -> list[Mapping]:
    v = record.get(key)
    if v is None:
        return []
    if not isinstance(v, (list, tuple)) or not all(isinstance(x, Mapping) for x in v):
        raise StoreError(f"record key {key}: expected a list of objects, got {type(v).__name__}")
    return list(v)


def _dig(spec: Mapping, *keys: str) -> str | None:
    v: Any = spec
    for k in keys:
        v = v.get(k) if isinstance(v, Mapping) else None
    return v if isinstance(v, str) else None


def _dumps(obj: Any, what: str) -> str:
    try:
        return json.dumps(obj, sort_keys=True, default=str)
    except (TypeError, ValueError) as e:
        raise StoreError(f"{what}: not JSON-serialisable: {e}") from None


def _loads(text: str | None) -> dict:
    try:
        v = json.loads(text) if text else {}
    except ValueError:
        return {}
    return v if isinstance(v, dict) else {}


# Column orders of the store's tables, as the tuples built here and the rows read back use them.
_RUN_COLS = ("id, run_dir, grp, front_end, label, role, status, started, finished, kernel, kernel_key, "
             "kernel_commit, image_key, accel, workload, boot_seconds, reproduces, spec_json, record_json")
_M_NUMS = ("iops", "bw_kib_s", "clat_p50_us", "clat_p99_us", "clat_p999_us")
# the counted metrics' columns (schema 3), in MeasurementRow's order; ``counters_json`` after them
_M_COUNTED = tuple(f.name for f in fields(MeasurementRow)[14:23])
_M_COLS = [f.name for f in fields(MeasurementRow)][:23] + ["counters_json", "calib_iops", "host_free"]
_X_COLS = [f.name for f in fields(XfstestRow)]
_V_COLS = [f.name for f in fields(VerdictRow)][1:12]


def _run_values(record: Mapping) -> tuple:
    """The ``runs`` row of a record, in ``_RUN_COLS`` order; raises StoreError naming a bad key."""
    if not isinstance(record, Mapping):
        raise StoreError(f"a run record must be a mapping, got {type(record).__name__}")
    w = "record key "
    spec = record.get("spec")
    if not isinstance(spec, Mapping):
        raise StoreError(f"record key spec: expected an object, got {spec!r:.80}")
    run_dir = record.get("run_dir")
    if isinstance(run_dir, os.PathLike):
        run_dir = os.fspath(run_dir)
    if not isinstance(run_dir, str) or not run_dir:
        raise StoreError(f"record key run_dir: expected a non-empty path string, got {run_dir!r}")
    head: tuple[str | None, ...] = (_str(record, "run_id", w, True), os.path.normpath(run_dir))
    head += tuple(_str(record, k, w) for k in ("group", "front_end", "label", "role"))
    head += (_str(record, "status", w, True), _str(record, "started", w), _str(record, "finished", w))
    spec_cols = (_dig(spec, "kernel", "name"), _dig(spec, "kernel", "key"), _dig(spec, "kernel", "commit"),
                 _dig(spec, "image", "key"), _dig(spec, "accel"), _dig(spec, "workload", "kind"))
    tail = (_num(record, "boot_seconds", w), _str(record, "reproduces", w),
            _dumps(spec, "record key spec"), _dumps(record, "record"))
    return head + spec_cols + tail


def _measurement_values(run_id: str, i: int, m: Mapping) -> tuple:
    w = f"record key measurements[{i}]."
    return (run_id, _str(m, "cell", w, True), *(_str(m, k, w) for k in ("fs", "disk", "pattern", "engine")),
            _int(m, "run_index", w, True), _str(m, "status", w),
            *(_num(m, k, w) for k in _M_NUMS), _str(m, "fio_json", w), *(_num(m, k, w) for k in _M_COUNTED),
            _counters(m, w), _num(m, "calib_iops", w), _num(m, "host_free", w))


def _counters(m: Mapping, where: str) -> str | None:
    """The raw counters of a measurement as stored JSON: a mapping of names to numbers, or null."""
    v = m.get("counters")
    if v is None:
        return None
    if not isinstance(v, Mapping):
        raise StoreError(f"{where}counters: expected an object or null, got {type(v).__name__}")
    return _dumps({str(k): _num(v, k, f"{where}counters.") for k in v}, f"{where}counters")


def _xfstest_values(run_id: str, i: int, x: Mapping) -> tuple:
    w = f"record key xfstests[{i}]."
    return (run_id, _str(x, "section", w, True), _str(x, "test", w, True), _str(x, "status", w, True),
            _num(x, "duration_s", w), _str(x, "message", w), _str(x, "artifacts", w))
