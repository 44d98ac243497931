"""KCIDB (schema v5) export of a night: checkouts (each kernel reference at its commit), builds
(each kernel as built), and tests (each fio cell and metric with its median and verdict, each
xfstest with its outcome over the night's attempts), validated with ``kcidb-io``.

IDs are ``kharness:<night>:...``; log URLs are ``file://`` URLs of console logs on this host (a
publisher rewrites them when it uploads the files).
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Any

import jsonschema

from ...errors import HarnessError
from ...results.store import Store
from ...vocab import CellId
from .fold import NightResult, kernel_name

ORIGIN = "kharness"
_PATH_PART = re.compile(r"[^A-Za-z0-9_-]+")


class KcidbError(HarnessError):
    """The export does not validate against the KCIDB schema; names the offending key."""


def _schema():
    from kcidb_io.schema import V5_3  # heavy (every KCIDB schema version): loaded only to export a night
    return V5_3


def _time(s: str | None) -> str | None:
    """The store's ``%Y-%m-%dT%H:%M:%S%z`` as RFC 3339."""
    if not s:
        return None
    try:
        return datetime.strptime(s, "%Y-%m-%dT%H:%M:%S%z").isoformat()
    except ValueError:
        return None


def _part(s: str) -> str:
    return _PATH_PART.sub("_", s).strip("_") or "x"


def _id(*parts: str) -> str:
    return ":".join([ORIGIN, *parts])


def _drop_none(d: dict) -> dict:
    return {k: v for k, v in d.items() if v is not None}


def night_kcidb(res: NightResult, store: Store) -> dict[str, Any]:
    """The night as a KCIDB v5 document (validated)."""
    runs = store.runs(group=res.group)
    by_kref: dict[str, list] = {}
    for r in res.runs:
        if r["kref"]:
            by_kref.setdefault(r["kref"], []).append(r)
    specs = {r.run_id: r for r in runs}
    checkouts, builds, tests = [], [], []
    for kref, commit in res.commits.items():
        co_id = _id(res.night, _part(kref))
        krun = next((specs[r["run_id"]] for r in by_kref.get(kref, []) if r["run_id"] in specs), None)
        kspec = (krun.spec.get("kernel") or {}) if krun else {}
        checkouts.append(_drop_none({
            "id": co_id, "origin": ORIGIN, "tree_name": _part(kernel_name(kref)),
            "git_commit_hash": commit if re.fullmatch(r"[0-9a-f]{40}", commit or "") else None,
            "git_commit_name": kref, "start_time": _time(krun.started) if krun else None, "valid": True,
            "patchset_hash": None, "misc": {"night": res.night, "plan": res.plan, "kernel_ref": kref,
                                            "patches": [p.get("subject") for p in kspec.get("patches") or []]}}))
        builds.append(_drop_none({
            "id": _id(res.night, _part(kref), "build"), "origin": ORIGIN, "checkout_id": co_id,
            "architecture": "x86_64", "config_name": kspec.get("config_base") or None,
            "status": "PASS" if krun else "MISS",
            "misc": {"kernel_key": kspec.get("key"), "release": kspec.get("release")}}))
    build_of = {k: _id(res.night, _part(k), "build") for k in res.commits}
    for row in res.fio:
        run = specs.get(row.run_ids[0]) if row.run_ids else None
        status = "FAIL" if row.flagged else ("DONE" if row.values else "MISS")
        test: dict[str, Any] = {"id": _id(res.night, _part(row.kref), "fio", _part(row.cell), row.metric_key),
                "origin": ORIGIN, "build_id": build_of[row.kref],
                "path": ".".join(["kharness", "fio", *(_part(p) for p in _cell_parts(row.cell)), row.metric_key]),
                "status": status, "start_time": _time(run.started) if run else None,
                "log_url": Path(run.run_dir, "console.log").resolve().as_uri() if run else None,
                "comment": f"{row.metric} {row.verdict}: baseline {row.baseline.verdict}, "
                           f"history {row.history.verdict}",
                "misc": {"baseline": _decision(row.baseline), "history": _decision(row.history),
                         "values": row.values, "bisect": row.bisect, "reproduce": row.reproduce,
                         "explains": row.explains}}
        value = row.baseline.now if row.baseline.now is not None else row.history.now
        if value is not None:
            test["number"] = {"value": float(value),
                              "unit": "IO/s" if row.metric_key == "iops" else "us"}
        tests.append(_drop_none(test))
    for kref, diff in res.xfstests.items():
        for d in diff:
            status = {"pass": "PASS", "notrun": "SKIP"}.get(d.tonight, "FAIL")
            tests.append(_drop_none({
                "id": _id(res.night, _part(kref), "xfstests", _part(d.section), _part(d.test)),
                "origin": ORIGIN, "build_id": build_of[kref],
                "path": ".".join(["kharness", "xfstests", _part(d.section), *(_part(p) for p in d.test.split("/"))]),
                "status": status, "comment": f"{d.category}: {d.tonight}",
                "misc": {"category": d.category, "last_good": d.last_good, "baseline": d.baseline}}))
    doc = {"version": {"major": 5, "minor": 3}, "checkouts": checkouts, "builds": builds, "tests": tests}
    validate(doc)
    return doc


def _cell_parts(cell: str) -> tuple[str, str, str, str]:
    c = CellId.parse(cell)
    return c.fs, c.disk, c.pattern, c.engine


def _decision(d) -> dict:
    return _drop_none({"method": d.method, "verdict": d.verdict, "then": d.then, "now": d.now, "pct": d.pct,
                       "p_value": d.p_value, "reference": d.reference or None, "change_night": d.change_night})


def validate(doc: dict) -> dict:
    """Validate against KCIDB v5 (kcidb-io); KcidbError naming the key otherwise."""
    try:
        _schema().validate(doc)
    except jsonschema.exceptions.ValidationError as e:
        where = "/".join(str(p) for p in e.absolute_path) or "(top level)"
        raise KcidbError(f"KCIDB export invalid at {where}: {e.message}") from None
    return doc
