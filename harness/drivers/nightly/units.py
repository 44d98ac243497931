"""A night as a deterministic list of units (one boot's work each), the budget, and resume.

Units are planned from the plan alone, in a fixed order: by priority (highest first), then for
fio by run index with the baseline, each tested kernel and the control interleaved (the suite's
drift-cancelling order), then by disk. Each unit's label is stable and unique within the night
and is the run label in the results store, so a resumed night asks the store what each unit
already did: a unit with runs whose last record left nothing ``remaining`` is done; otherwise its
remaining cells or tests run in a fresh boot. A boot cut short by SIGKILL or a host reboot left a
run directory without ``record.json``: :func:`recover_orphans` records it from what it wrote
(``spec.json``, ``measurements.jsonl``, the console), marks it interrupted, and lists its undone
cells as remaining, so no finished measurement is lost and none is measured twice. A directory
that cannot be read back is recorded as a failed boot with the reason, and the night goes on.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ...errors import HarnessError
from ...evidence.events import scan_console
from ...results.store import Store
from ...run.records import BootRecord, MeasurementRecord
from ...run.spec_read import read_spec
from ...util import read_bytes_capped, read_text_capped, write_json
from ...vocab import CellId, Say
from .plans import Plan

INTERRUPTED = "interrupted: kharness was killed during this boot; what it finished is kept"
DAMAGED = "damaged run directory"
MAX_RECORD_BYTES = 64 << 20     # record.json, measurements.jsonl: far above what a boot writes
MAX_CONSOLE_BYTES = 64 << 20    # the tail of console.log scanned for events


@dataclass(frozen=True)
class Unit:
    """One boot's work in a night. ``kref`` is the plan's kernel reference; ``role`` is base (the
    baseline), new (a tested kernel), control (the baseline again), or evidence."""

    label: str
    kind: str                       # fio | xfstests | evidence
    role: str
    kref: str
    priority: int
    run_index: int = 0
    disk: str = ""
    cells: tuple[str, ...] = ()
    section: str = ""
    tests: tuple[str, ...] = ()
    attempt: int = 0

    @property
    def work(self) -> tuple[str, ...]:
        return self.cells if self.kind != "xfstests" else self.tests

    def info(self) -> dict:
        """What the results side needs to know about the unit (plain values)."""
        return {"kind": self.kind, "role": self.role, "kref": self.kref, "attempt": self.attempt,
                "priority": self.priority, "section": self.section}


def kernel_roles(plan: Plan) -> list[tuple[str, str]]:
    """(role tag, kernel reference): ``base`` then ``new0``, ``new1``..."""
    return [("base", plan.baseline)] + [(f"new{i}", k) for i, k in enumerate(plan.kernels)]


def _role(tag: str) -> str:
    return "base" if tag == "base" else "control" if tag == "control" else "new"


def fio_units(plan: Plan) -> list[Unit]:
    if plan.fio is None:
        return []
    cells = plan.cells()
    control = set(plan.control_cells())
    units = []
    for prio in sorted({plan.priority(c) for c in cells}, reverse=True):
        tier = [c for c in cells if plan.priority(c) == prio]
        for i in range(plan.fio.repeats):
            for tag, kref in kernel_roles(plan) + [("control", plan.baseline)]:
                mine = [c for c in tier if tag != "control" or c in control]
                for disk in plan.fio.disks:
                    cs = tuple(c for c in mine if CellId.parse(c).disk == disk)
                    if cs:
                        units.append(Unit(f"nightly-fio-p{prio}-r{i}-{tag}-{disk}", "fio", _role(tag), kref, prio,
                                          run_index=i, disk=disk, cells=cs))
    return units


def xfstests_units(plan: Plan, attempt: int = 0, tests: dict[str, tuple[str, ...]] | None = None) -> list[Unit]:
    """Round ``attempt`` of every selection; for a retry round, ``tests`` maps the first round's
    label to the tests that failed there (a unit without failures is not planned)."""
    units = []
    for sel in plan.xfstests:
        for tag, kref in kernel_roles(plan):
            first = f"nightly-xfs-{sel.section}-{tag}-a0"
            ts = sel.tests if attempt == 0 else (tests or {}).get(first, ())
            if ts:
                units.append(Unit(f"nightly-xfs-{sel.section}-{tag}-a{attempt}", "xfstests", _role(tag), kref,
                                  sel.priority, section=sel.section, tests=tuple(ts), attempt=attempt))
    return units


def planned_units(plan: Plan) -> list[Unit]:
    """Every first-round unit, most important first (fio before xfstests at equal priority)."""
    units = fio_units(plan) + xfstests_units(plan)
    order = {u.label: i for i, u in enumerate(units)}
    return sorted(units, key=lambda u: (-u.priority, u.kind != "fio", order[u.label]))


def evidence_unit(tag: str, kref: str, cell: str) -> Unit:
    cid = CellId.parse(cell)
    return Unit(f"nightly-evidence-{tag}-{cid.slug}", "evidence", "evidence", kref, 0, disk=cid.disk, cells=(cell,))


def estimate(unit: Unit, plan: Plan, n_work: int | None = None) -> float:
    """Seconds one unit should take (boot, mkfs per filesystem, each fio run or xfstest)."""
    e = plan.estimate
    n = len(unit.work) if n_work is None else n_work
    if unit.kind == "xfstests":
        return e.boot_s + 20.0 + n * e.xfstest_s
    runtime = plan.fio.runtime if plan.fio else 5
    filesystems = len({CellId.parse(c).fs for c in unit.cells})
    return e.boot_s + filesystems * e.mkfs_s + n * (runtime + e.fio_overhead_s)


def estimate_night(plan: Plan) -> float:
    """The whole first round, plus one kernel build per reference (incremental)."""
    refs = {plan.baseline, *plan.kernels}
    return sum(estimate(u, plan) for u in planned_units(plan)) + len(refs) * plan.estimate.build_s


class Budget:
    """Wall time left in a night: what earlier sessions spent plus this session, against the plan's
    budget; estimates are scaled by how long this session's units really took."""

    def __init__(self, total_s: float, spent_s: float = 0.0):
        self.total, self.spent0, self.t0 = total_s, spent_s, time.monotonic()
        self.est_sum = self.act_sum = 0.0

    @property
    def spent(self) -> float:
        return self.spent0 + time.monotonic() - self.t0

    @property
    def ratio(self) -> float:
        if self.est_sum < 30:
            return 1.0
        return min(3.0, max(0.5, self.act_sum / self.est_sum))

    def fits(self, est: float) -> bool:
        return self.spent + est * self.ratio <= self.total

    def observe(self, est: float, actual: float) -> None:
        self.est_sum += est
        self.act_sum += actual


def runs_by_label(store: Store, group: str) -> dict[str, list]:
    """The group's runs per label, oldest first."""
    out: dict[str, list] = {}
    for r in sorted(store.runs(group=group), key=lambda r: (r.started or "", r.run_id)):
        out.setdefault(r.label or "", []).append(r)
    return out


def pending(unit: Unit, runs: list, work: Iterable[str] | None = None) -> list[str]:
    """What of ``unit`` is still to do, given its recorded runs (oldest first)."""
    work = list(unit.work if work is None else work)
    if not runs:
        return work
    boot_failures = sum(1 for r in runs if r.status == "boot-failed")
    last = runs[-1]
    remaining = set(last.record.get("remaining") or [])
    if last.status == "boot-failed" and boot_failures < 2:
        remaining = set(work) - _done_work(runs)
    return [w for w in work if w in remaining]


def _done_work(runs: list) -> set[str]:
    done: set[str] = set()
    for r in runs:
        done |= {m.get("cell") for m in r.record.get("measurements") or []}
        done |= {x.get("test") for x in r.record.get("xfstests") or []}
    return done


def recover_orphans(runs_root: Path, store: Store, group: str, say: Say) -> list[str]:
    """Record the night's run directories that the store does not know (a killed session's).
    One that cannot be read back (a truncated spec.json) is recorded as a failed boot naming
    the reason, and told to ``say``; the resume goes on."""
    if not runs_root.is_dir():
        return []
    known = {r.run_id for r in store.runs(group=group)}
    recovered = []
    for d in sorted(p for p in runs_root.iterdir() if p.is_dir() and (p / "spec.json").exists()):
        if d.name in known:
            continue
        rec_file = d / "record.json"
        if rec_file.exists():
            try:
                store.add_run(json.loads(read_bytes_capped(rec_file, MAX_RECORD_BYTES, "run record")))
                recovered.append(d.name)
                continue
            except (HarnessError, OSError, ValueError):
                pass  # written by a killed process, or damaged since: recover from the rest
        try:
            record = _partial_record(d, group)
            write_json(d / "record.json", record.to_json(), indent=1, sort_keys=False)
            store.add_run(record.to_json())
        except (HarnessError, OSError, ValueError, TypeError) as e:
            # A damaged directory (a truncated spec.json, unreadable files) must not stop the
            # resume: it is recorded as a failed boot with the reason, and the night goes on.
            store.add_run(_damaged_record(d, group, str(e) or type(e).__name__))
            say(f"damaged run directory {d.name} recorded as a failed boot: {e}")
            recovered.append(d.name)
            continue
        say(f"recovered interrupted boot {d.name}: {len(record.measurements)} measurement(s) kept, "
            f"{len(record.remaining)} left to do")
        recovered.append(d.name)
    return recovered


def _damaged_record(d: Path, group: str, reason: str) -> dict:
    """The store's record of a run directory that cannot be read back: a failed boot, no spec."""
    now = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    return {"run_id": d.name, "run_dir": str(d), "spec": {}, "status": "boot-failed", "started": now,
            "finished": now, "failures": [f"{DAMAGED}: {reason}"[:2000]], "remaining": [], "group": group,
            "front_end": "nightly", "label": None, "role": None}


def _console_tail(console: Path) -> str:
    """The last MAX_CONSOLE_BYTES of a console log (a guest that printed without end wrote more)."""
    with open(console, "rb") as fh:
        fh.seek(0, 2)
        fh.seek(max(0, fh.tell() - MAX_CONSOLE_BYTES))
        return fh.read(MAX_CONSOLE_BYTES).decode("utf-8", errors="replace")


def _partial_record(d: Path, group: str) -> BootRecord:
    spec = read_spec(d)
    measurements = []
    mfile = d / "measurements.jsonl"
    if mfile.exists():
        for line in read_text_capped(mfile, MAX_RECORD_BYTES, "measurements", errors="replace").splitlines():
            try:
                measurements.append(MeasurementRecord(**json.loads(line)))
            except (ValueError, TypeError):
                continue  # the line being written when the process died
    remaining = spec.workload.undone(m.cell for m in measurements)
    try:
        meta = json.loads(read_bytes_capped(d / "metadata.json", MAX_RECORD_BYTES, "metadata"))
    except (HarnessError, OSError, ValueError):
        meta = {}
    meta = meta if isinstance(meta, dict) else {}
    console = d / "console.log"
    events = tuple(scan_console(_console_tail(console))) if console.exists() else ()
    return BootRecord(run_id=d.name, run_dir=str(d), spec=spec, status="error",
                      started=meta.get("started") or time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                      finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"), boot_seconds=meta.get("boot_seconds"),
                      measurements=tuple(measurements), events=events, failures=(INTERRUPTED,),
                      remaining=remaining, group=group, front_end="nightly")
