"""Redo a recorded run: same kernel, image, accelerator, disks and workload parameters.

The recorded spec is read from the run directory (or the results store), checked against
today's definitions (a changed patch or config is refused by name, see testbed), and run again
in a fresh run directory under ``<results>/``. ``--cell`` narrows a fio run to one cell, an
xfstests run to one test. The new record names the run it reproduces, and :func:`side_by_side`
lines up the recorded and new figures.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import HarnessError
from ..executors.base import Executor, RecordSink, RunContext
from ..executors.local import LocalExecutor
from ..results.stats import summarize
from ..run.records import BootRecord
from ..run.spec import RunSpec
from ..run.spec_checks import describe_spec
from ..run.spec_read import read_spec, spec_from_json
from ..run.testbed import prepare_for_spec
from ..util import read_bytes_capped
from ..vocab import Say

MAX_RECORD_BYTES = 64 << 20   # a record.json is a few hundred KB at most

FIGURES = (("iops", "IOPS"), ("bw_kib_s", "KiB/s"), ("clat_p50_us", "p50 us"), ("clat_p99_us", "p99 us"))


@dataclass(frozen=True)
class Recorded:
    """A recorded run: its id, spec, and what it measured (JSON form of its record)."""

    run_id: str
    spec: RunSpec
    record: dict


def load_recorded(ref: str, store: object | None = None) -> Recorded:
    """A run by directory (holding spec.json) or by id/prefix in the results store."""
    p = Path(ref)
    if p.is_dir():
        spec = read_spec(p)
        return Recorded(p.name, spec, _recorded_record(p / "record.json"))
    if store is None:
        raise HarnessError(f"{ref}: not a run directory, and no results store to look it up in")
    row = store.run(ref)  # type: ignore[attr-defined]
    return Recorded(row.run_id, spec_from_json(row.spec, f"store run {row.run_id}"), row.record)


def _recorded_record(path: Path) -> dict:
    """A run directory's record.json for the side-by-side figures: {} when absent; HarnessError
    naming the file when it is too large, unreadable or not a JSON object (a shared directory is
    untrusted input)."""
    if not path.exists():
        return {}
    try:
        record = json.loads(read_bytes_capped(path, MAX_RECORD_BYTES, "run record"))
    except (OSError, ValueError) as e:
        raise HarnessError(f"{path}: unreadable run record: {e}") from None
    if not isinstance(record, dict):
        raise HarnessError(f"{path}: want a JSON object, got {type(record).__name__}")
    return record


def narrowed(spec: RunSpec, cell: str | None) -> RunSpec:
    """The spec, or only ``cell`` (a fio cell id or an xfstests test name) of it."""
    if cell is None:
        return spec
    spec.workload.require(cell, spec.label)  # SpecError listing the cells or tests
    return spec.narrowed([cell])


def reproduce(ref: str, root: Path, *, cell: str | None = None, store: object | None = None,
              sink: RecordSink | None = None, from_cache: bool = False, say: Say = print,
              tests_source: Path | None = None,
              executor: Executor | None = None) -> tuple[Recorded, list[BootRecord]]:
    """Redo run ``ref`` (narrowed to ``cell``); return the recorded run and the new records."""
    recorded = load_recorded(ref, store)   # a spec the CLI would refuse is refused here (spec_checks)
    spec = narrowed(recorded.spec, cell)
    say(f"reproducing {recorded.run_id}:")
    for line in describe_spec(spec):       # what it will run, before anything is built or booted
        say(f"  {line}")
    prepare_for_spec(spec, from_cache=from_cache, say=say)  # refuses on changed definitions
    spec = dataclasses.replace(spec, label=f"repro-{spec.label}"[:80])
    ctx = RunContext(root, sink=sink, say=say, front_end="reproduce", reproduces=recorded.run_id,
                     tests_source=tests_source, max_boots_per_spec=1)
    records = (executor or LocalExecutor()).execute([spec], ctx)
    return recorded, records


def side_by_side(recorded: Recorded, records: list[BootRecord]) -> list[tuple[str, str, str, str, str]]:
    """Rows (what, figure, recorded, new, change) for every cell and xfstest of the new run."""
    rows: list[tuple[str, str, str, str, str]] = []
    old_ms = recorded.record.get("measurements", [])
    new_ms = [m for r in records for m in r.measurements]
    for cid in dict.fromkeys(m.cell for m in new_ms):
        for key, name in FIGURES:
            old = [m[key] for m in old_ms if m.get("cell") == cid and m.get("status") == "ok" and m.get(key)]
            new = [getattr(m, key) for m in new_ms if m.cell == cid and m.status == "ok" and getattr(m, key)]
            o = summarize(old).median if old else None
            n = summarize(new).median if new else None
            change = f"{(n - o) / o * 100:+.1f}%" if o and n else "-"
            rows.append((cid, name, _fmt(o, len(old)), _fmt(n, len(new)), change))
        old_status = [m.get("status") for m in old_ms if m.get("cell") == cid]
        new_status = [m.status for m in new_ms if m.cell == cid]
        if "hang" in old_status or "hang" in new_status:
            rows.append((cid, "status", ",".join(old_status), ",".join(new_status), ""))
    old_x = {x["test"]: x for x in recorded.record.get("xfstests", [])}
    for r in records:
        for x in r.xfstests:
            o = old_x.get(x.test, {})
            rows.append((f"{x.section} {x.test}", "status", o.get("status", "-"), x.status, ""))
    return rows


def _fmt(v: float | None, n: int) -> str:
    return "-" if v is None else f"{v:.0f}" + (f" (median of {n})" if n > 1 else "")
