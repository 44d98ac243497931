"""``kharness nightly run PLAN``: one night of a plan, resumable, within its budget.

A night: take the machine-wide nightly lock (two nights never overlap); pick the night id (given,
or the plan's unfinished night from the last 20 hours, or ``PLAN-YYYYMMDD``); on its first start
resolve every kernel reference to a commit and record them (a resumed night keeps them, whatever
the branches did since); build the kernels (``NAME@COMMIT``: incremental builds in the shared
source repository); record interrupted boots of an earlier session; run the units most important
first while the budget lasts, skipping what the store says is done; retry failed xfstests; run an
evidence boot (sysrq mid-run) on each flagged cell; fold the night from the store, store the
verdicts, write the reports and the index. Exit: 0 nothing regressed, 1 a regression or a new
failure, 2 the harness itself failed.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ...config.kernels import load_kernel
from ...errors import HarnessError
from ...executors.base import Executor, RunContext
from ...executors.local import LocalExecutor
from ...image.xfstests import configured_source, resolve
from ...kernel.build import resolve_commit
from ...kernel.source import import_source
from ...paths import cache_root
from ...results.store import Store
from ...run.plan import fio_cell, fio_spec, xfstests_spec, xfstests_tests
from ...run.spec import SysrqSampling
from ...run.testbed import XFSTESTS_IMAGE, Testbed
from ...util import file_lock, run, write_json
from ...vocab import CellId, KernelRef, Say
from .book import NightlyDB
from .fold import NightResult, fold_night, group_of, verdict_rows
from .plans import Plan, load_plan_file
from .units import (
    Budget,
    Unit,
    estimate,
    evidence_unit,
    kernel_roles,
    pending,
    planned_units,
    recover_orphans,
    runs_by_label,
    xfstests_units,
)

_NIGHT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
RESUME_HOURS = 20


@dataclass
class NightOutcome:
    night: str
    dir: Path
    exit_code: int
    result: NightResult | None = None
    report: Path | None = None
    messages: list[str] = field(default_factory=list)


def lock_path() -> Path:
    return cache_root() / "nightly.lock"


def plan_sha(plan: Plan) -> str:
    return hashlib.sha256(plan.path.read_bytes()).hexdigest()


def choose_night(db: NightlyDB, plan: Plan, night: str | None) -> str:
    """The night to run: the given id, the plan's unfinished recent night, or a new dated id."""
    if night:
        if not _NIGHT_ID.match(night):
            raise HarnessError(f"night id {night!r}: use letters, digits, '.', '_' and '-'")
        return night
    now = time.time()
    for n in reversed(db.nights(plan.name)):
        started = time.mktime(time.strptime(n.started[:19], "%Y-%m-%dT%H:%M:%S"))
        if n.status == "running" and now - started < RESUME_HOURS * 3600:
            return n.night
    base = f"{plan.name}-{time.strftime('%Y%m%d')}"
    taken = {n.night for n in db.nights()}
    if base not in taken:
        return base
    i = 2
    while f"{base}-{i}" in taken:
        i += 1
    return f"{base}-{i}"


def resolve_commits(plan: Plan, say: Say) -> dict[str, str]:
    """Each kernel reference's commit now: NAME@REF via the source repository, NAME its import."""
    out = {}
    for kref in dict.fromkeys([plan.baseline, *plan.kernels]):
        ref = KernelRef.parse(kref)
        out[kref] = resolve_commit(ref.name, ref.ref) if ref.ref else import_source(load_kernel(ref.name).source).commit
        say(f"kernel {kref}: commit {out[kref][:12]}")
    return out


def commit_range(kref: str, old: str | None, new: str, limit: int = 200) -> dict:
    """``git log --oneline OLD..NEW`` in the reference's source repository."""
    repo = import_source(load_kernel(KernelRef.parse(kref).name).source).repo
    out: dict = {"repo": str(repo), "old": old, "new": new, "log": []}
    if old and old != new:
        proc = run(["git", "-C", str(repo), "log", "--oneline", f"-{limit}", f"{old}..{new}"], check=False, timeout=120)
        out["log"] = (proc.stdout.splitlines() if proc.returncode == 0
                      else [f"(git log failed: {proc.stdout.strip()[:200]})"])
    return out


def night_ranges(plan: Plan, db: NightlyDB, night: str, commits: dict[str, str]) -> dict[str, dict]:
    """Per tested kernel: the commits since its last good night."""
    out = {}
    for kref in plan.kernels:
        prev = next((n for n in reversed(db.before(plan.name, night)) if n.good and kref in n.commits), None)
        out[kref] = commit_range(kref, prev.commits[kref] if prev else None, commits[kref])
        out[kref]["since_night"] = prev.night if prev else None
    return out


class Night:
    """One night of a plan: everything between taking the lock and writing the report."""

    def __init__(self, plan: Plan, root: Path, store: Store, db: NightlyDB, *, night: str | None = None,
                 say: Say = print, accel: str | None = None, executor: Executor | None = None):
        self.store, self.db, self.say, self.accel = store, db, say, accel
        self.executor: Executor = executor or LocalExecutor()
        self.slots = max(1, self.executor.slots())
        self.night = choose_night(db, plan, night)
        self.dir = root / self.night
        self.runs_root = self.dir / "runs"
        self.group = group_of(self.night)
        self.plan = plan
        self.not_run: list[dict] = []
        self.failures: list[str] = []
        self.beds: dict[str, Testbed] = {}

    # -- setup ------------------------------------------------------------------------------------
    def _state(self) -> dict:
        f = self.dir / "night.json"
        try:
            state = json.loads(f.read_text()) if f.exists() else {}
        except (OSError, ValueError):   # damaged (written before writes were atomic): start afresh
            state = {}
        return state if isinstance(state, dict) else {}

    def _save(self, **kw) -> None:
        write_json(self.dir / "night.json", {**self._state(), **kw})

    def open(self) -> None:
        """Start or resume: the plan snapshot and the commits are fixed at the first start."""
        self.dir.mkdir(parents=True, exist_ok=True)
        state = self._state()
        snap = self.dir / "plan.yaml"
        if state:
            self.say(f"night {self.night}: resuming (started {state.get('started')}, "
                     f"{state.get('spent_s', 0):.0f} s spent)")
            if plan_sha(self.plan) != state.get("plan_sha256"):
                self.say(f"  {self.plan.path} changed since the night started; using the night's copy {snap}")
            self.plan = load_plan_file(snap, name=self.plan.name)
            commits = state["commits"]
        else:
            shutil.copy(self.plan.path, snap)
            commits = resolve_commits(self.plan, self.say)
            self._save(night=self.night, plan=self.plan.name, plan_sha256=plan_sha(self.plan), commits=commits,
                       started=time.strftime("%Y-%m-%dT%H:%M:%S%z"), spent_s=0.0)
        self.commits: dict[str, str] = commits
        self.db.start(self.night, self.plan.name, plan_sha(self.plan), commits)
        self.budget = Budget(self.plan.budget_s, float(self._state().get("spent_s", 0.0)))

    def build_ref(self, kref: str) -> str:
        return str(KernelRef.parse(kref).at(self.commits[kref]))

    def bed(self, image: str | None = None) -> Testbed:
        key = image or "fio"
        if key not in self.beds:
            refs = [self.build_ref(k) for k in dict.fromkeys([self.plan.baseline, *self.plan.kernels])]
            kw = {"image": image} if image else {}
            self.beds[key] = Testbed(refs, accel=self.accel, say=self.say, **kw).prepare()
        return self.beds[key]

    # -- units ------------------------------------------------------------------------------------
    def _spec(self, unit: Unit, work: list[str], tests_source: Path | None):
        ref = self.build_ref(unit.kref)
        if unit.kind == "xfstests":
            bed = self.bed(XFSTESTS_IMAGE)
            return xfstests_spec(bed, ref, unit.section, work, disk_kind=self.plan.xfstests_disk, label=unit.label,
                                 role=unit.role, default_watchdog_s=self.plan.xfstests_watchdog)
        f = self.plan.fio
        assert f is not None
        ids = [CellId.parse(c) for c in work]
        cells = [fio_cell(c.fs, c.disk, c.pattern, c.engine, iodepth=f.iodepth, bs=f.bs, size=f.size, runtime=f.runtime)
                 for c in ids]
        sampling = SysrqSampling.evidence(f.runtime) if unit.kind == "evidence" else None
        return fio_spec(self.bed(), ref, cells, disk_size=f.disk_size, label=unit.label, role=unit.role,
                        run_index=unit.run_index, sampling=sampling)

    def run_units(self, units: list[Unit], tests_source: Path | None, xfstests_why: str | None) -> None:
        """Each unit's pending work, most important first, while the budget lasts. With an
        executor of N slots (a Ray cluster), N units run at once and a batch costs the wall
        time of its longest unit."""
        self.db.record_units(self.night, {u.label: u.info() for u in units})
        batch: list[tuple[Unit, list[str], float]] = []
        for unit in units:
            done = runs_by_label(self.store, self.group)
            work = list(unit.work)
            if unit.kind == "xfstests":
                if xfstests_why:
                    self.not_run.append({"unit": unit.label, "kref": unit.kref, "work": work, "why": xfstests_why})
                    continue
                work = xfstests_tests(work, tests_source) if unit.attempt == 0 else work
            todo = pending(unit, done.get(unit.label, []), work)
            if not todo:
                continue
            est = estimate(unit, self.plan, len(todo))
            if not self.budget.fits(max([est] + [e for _, _, e in batch])):
                self.not_run.append({"unit": unit.label, "kref": unit.kref, "work": todo,
                                     "why": f"budget: needs ~{est * self.budget.ratio:.0f} s, "
                                            f"{self.budget.total - self.budget.spent:.0f} s left"})
                continue
            batch.append((unit, todo, est))
            if len(batch) >= self.slots:
                self._run_batch(batch, tests_source)
                batch = []
        if batch:
            self._run_batch(batch, tests_source)

    def _run_batch(self, batch: list[tuple[Unit, list[str], float]], tests_source: Path | None) -> None:
        t0 = time.monotonic()
        for unit, todo, _ in batch:
            self.say(f"[{self.budget.spent / 60:.1f}/{self.budget.total / 60:.0f} min] {unit.label}: "
                     f"{unit.kref} {', '.join(todo)}")
        specs = [self._spec(unit, todo, tests_source) for unit, todo, _ in batch]
        ctx = RunContext(self.runs_root, sink=self.store, say=self.say, group=self.group, front_end="nightly",
                         tests_source=tests_source, max_boots_per_spec=3)
        recs = self.executor.execute(specs, ctx)
        self.budget.observe(max(e for _, _, e in batch), time.monotonic() - t0)
        self._save(spent_s=self.budget.spent)
        krefs = {s.label: u.kref for s, (u, _, _) in zip(specs, batch)}
        for r in recs:
            kref = krefs.get(r.spec.label, r.spec.kernel.name)
            if r.lost:   # replaced by a fresh boot: the host's failure, listed apart from the kernel's
                self.failures.append(f"{r.run_id} ({kref}): lost to the host, replaced: {r.lost}")
            elif r.status in ("boot-failed", "error"):
                self.failures += [f"{r.run_id} ({kref}): {r.status}: {f.splitlines()[0]}" for f in r.failures[:3]]

    def retry_units(self) -> list[Unit]:
        """Retry rounds for the xfstests that failed in the first round (deterministic from the store)."""
        done = runs_by_label(self.store, self.group)
        failed: dict[str, tuple[str, ...]] = {}
        for u in xfstests_units(self.plan):
            ids = [r.run_id for r in done.get(u.label, [])]
            bad = tuple(dict.fromkeys(x.test for x in self.store.xfstests(ids) if x.status in ("fail", "error")))
            if bad:
                failed[u.label] = bad
        return [u for a in range(1, self.plan.retries + 1) for u in xfstests_units(self.plan, a, failed)]

    # -- the night ----------------------------------------------------------------------------------
    def run(self) -> NightResult:
        self.open()
        self.say(f"night {self.night}: plan {self.plan.name}, budget {self.plan.budget_s / 60:.0f} min, "
                 f"results in {self.dir}")
        self.bed()
        recover_orphans(self.runs_root, self.store, self.group, self.say)
        tests_source, why = self._xfstests_source()
        units = planned_units(self.plan)
        self.run_units(units, tests_source, why)
        self.run_units(self.retry_units(), tests_source, why)
        res = self.fold()
        if self.plan.evidence:
            tags = {k: t for t, k in kernel_roles(self.plan)}
            ev = [evidence_unit(tags[k], k, c) for k, c in dict.fromkeys((r.kref, r.cell) for r in res.regressions)]
            if ev:
                self.run_units(ev, tests_source, why)
                res = self.fold()
        return res

    def _xfstests_source(self) -> tuple[Path | None, str | None]:
        if not self.plan.xfstests:
            return None, None
        where = configured_source(None, None)
        if where is None:
            return None, "no xfstests source configured (set KHARNESS_XFSTESTS)"
        try:
            return resolve(*where).tree, None
        except HarnessError as e:
            return None, f"xfstests source unusable: {e}"

    def fold(self) -> NightResult:
        res = fold_night(self.store, self.db, self.plan, self.night, self.commits)
        self.store.add_verdicts(self.group, verdict_rows(res, self.plan))
        res.not_run = list(self.not_run)
        res.failures = list(self.failures)
        res.ranges = night_ranges(self.plan, self.db, self.night, self.commits)
        for r in res.runs:
            if r["role"] == "evidence":
                c = self.store.run(r["run_id"]).spec["workload"]["cells"][0]
                cid = str(CellId(c["fs"]["fstype"], c["disk"], c["job"]["pattern"], c["job"]["engine"]))
                res.evidence[(r["kref"], cid)] = {"run_id": r["run_id"], "run_dir": r["run_dir"],
                                                  "summary": r["sysrq_summary"],
                                                  "files": [e.path for e in self.store.evidence([r["run_id"]])]}
        broken = [r for r in res.runs if r["status"] in ("boot-failed", "error")
                  and not any(f.startswith("interrupted:") for f in r["failures"])]
        res.harness_failed = bool(res.runs) and len(broken) > len(res.runs) / 2
        return res


def run_night(plan: Plan, root: Path, store: Store, db: NightlyDB, *, night: str | None = None, say: Say = print,
              accel: str | None = None, wait: float = 0.0, executor: Executor | None = None,
              report: Callable[[NightResult, Path], Path] | None = None,
              on_open: Callable[[Path], None] | None = None) -> NightOutcome:
    """Run (or resume) one night under the nightly lock; returns the exit code and the report.
    ``on_open`` is told the night's directory first (the CLI opens its log there)."""
    with file_lock(lock_path(), timeout=wait, say=say):
        n = Night(plan, root, store, db, night=night, say=say, accel=accel, executor=executor)
        if on_open is not None:
            on_open(n.dir)
        try:
            res = n.run()
        except HarnessError as e:
            n.say(f"night {n.night}: harness failure: {e}")
            if db.night(n.night) is not None:
                db.finish(n.night, "failed", "error", 2, "")
            if n.dir.exists():
                (n.dir / "error.txt").write_text(traceback.format_exc())
            return NightOutcome(n.night, n.dir, 2, messages=[str(e)])
        path = report(res, n.dir) if report else None
        db.finish(n.night, "done", res.verdict, res.exit_code, str(path or ""))
        return NightOutcome(n.night, n.dir, res.exit_code, res, path)
