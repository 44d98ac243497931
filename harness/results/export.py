"""Exports of stored runs: one JSON document, or JUnit XML for CI dashboards.

Both take run references as :meth:`Store.run` understands them (ids, unique id prefixes, run
directories) and raise StoreError for one that matches nothing.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import asdict
from typing import Any

from .rows import RunRow
from .store import SCHEMA_VERSION, Store

# Characters XML 1.0 cannot carry at all (not even escaped): most C0 controls, surrogates, U+FFFE/F.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _xml_text(value: Any) -> str:
    """Text safe to put in an XML document: forbidden characters become visible \\xNN escapes."""
    return _NOT_XML.sub(lambda m: f"\\x{ord(m.group()):02x}", "" if value is None else str(value))


def _resolve(store: Store, run_ids: Iterable[str]) -> list[RunRow]:
    runs = [store.run(ref) for ref in run_ids]
    return list({r.run_id: r for r in runs}.values())


def _by_run(rows: list[Any]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for r in rows:
        out.setdefault(r.run_id, []).append(r)
    return out


def export_json(store: Store, run_ids: Iterable[str]) -> dict:
    """``{"schema": N, "runs": [...]}``: each run's columns, spec, failures and everything it produced."""
    runs = _resolve(store, run_ids)
    ids = [r.run_id for r in runs]
    meas, xfs = _by_run(store.measurements(ids)), _by_run(store.xfstests(ids))
    events, evidence = _by_run(store.events(ids)), _by_run(store.evidence(ids))
    out = []
    for run in runs:
        d = asdict(run)
        record = d.pop("record")
        d["failures"] = list(record.get("failures") or [])
        d["measurements"] = [{k: v for k, v in asdict(m).items() if k not in ("run_id", "kernel", "role")}
                             for m in meas.get(run.run_id, [])]
        d["xfstests"] = [{k: v for k, v in asdict(x).items() if k != "run_id"} for x in xfs.get(run.run_id, [])]
        d["events"] = [e.data or {"kind": e.kind, "title": e.title} for e in events.get(run.run_id, [])]
        d["evidence"] = [{"path": e.path, "what": e.what} for e in evidence.get(run.run_id, [])]
        out.append(d)
    return {"schema": SCHEMA_VERSION, "runs": out}


def _case(suite: ET.Element, classname: str, name: str, time: float | None = None) -> ET.Element:
    attrs = {"classname": _xml_text(classname), "name": _xml_text(name)}
    if time is not None:
        attrs["time"] = f"{time:.3f}"
    return ET.SubElement(suite, "testcase", attrs)


def _outcome(case: ET.Element, tag: str, message: str, text: str = "") -> None:
    first = message.strip().splitlines()[0] if message.strip() else tag
    el = ET.SubElement(case, tag, {"message": _xml_text(first[:500])})
    el.text = _xml_text(text or message)


def export_junit(store: Store, run_ids: Iterable[str]) -> str:
    """JUnit XML: a testsuite per run with a testcase per measurement, per xfstest and for the boot."""
    runs = _resolve(store, run_ids)
    ids = [r.run_id for r in runs]
    meas, xfs = _by_run(store.measurements(ids)), _by_run(store.xfstests(ids))
    events = _by_run(store.events(ids))
    root = ET.Element("testsuites", {"name": "kharness"})
    for run in runs:
        suite = ET.SubElement(root, "testsuite", {"name": _xml_text(run.run_id)})
        if run.started:
            suite.set("timestamp", _xml_text(run.started))
        props = ET.SubElement(suite, "properties")
        for key in ("kernel", "kernel_key", "kernel_commit", "image_key", "accel", "workload", "group",
                    "front_end", "label", "role", "status", "run_dir"):
            value = getattr(run, key)
            if value is not None:
                ET.SubElement(props, "property", {"name": key, "value": _xml_text(value)})
        boot = _case(suite, "boot", "boot", run.boot_seconds)
        if run.status != "done":
            lines = [str(f) for f in run.record.get("failures") or []]
            lines += [f"{e.kind}: {e.title}" for e in events.get(run.run_id, [])]
            _outcome(boot, "failure", f"run status: {run.status}", "\n".join(lines) or f"run status: {run.status}")
        for m in meas.get(run.run_id, []):
            case = _case(suite, m.cell, f"run{m.run_index}")
            metrics = {k: getattr(m, k) for k in ("iops", "bw_kib_s", "clat_p50_us", "clat_p99_us", "clat_p999_us")}
            ET.SubElement(case, "system-out").text = _xml_text(
                " ".join(f"{k}={v}" for k, v in metrics.items() if v is not None))
            if m.status != "ok":
                _outcome(case, "failure", f"fio status: {m.status}")
        for x in xfs.get(run.run_id, []):
            case = _case(suite, x.section, x.test, x.duration_s)
            if x.status in ("fail", "error"):
                _outcome(case, "failure" if x.status == "fail" else "error", x.message or x.status)
            elif x.status == "notrun":
                ET.SubElement(case, "skipped", {"message": _xml_text(x.message or "not run")})
            elif x.status != "pass":
                _outcome(case, "error", f"unknown xfstests status: {x.status}")
        cases = suite.findall("testcase")
        counts = {tag: sum(1 for c in cases if c.find(tag) is not None) for tag in ("failure", "error", "skipped")}
        suite.set("tests", str(len(cases)))
        suite.set("failures", str(counts["failure"]))
        suite.set("errors", str(counts["error"]))
        suite.set("skipped", str(counts["skipped"]))
    for attr in ("tests", "failures", "errors", "skipped"):
        root.set(attr, str(sum(int(s.get(attr, "0")) for s in root.findall("testsuite"))))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
