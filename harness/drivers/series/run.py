"""`kharness try`: read a series, find its base, keep its definition, select what to run, run it
with the matrix driver (harness.drivers.matrix: the suite's loop and verdicts), write
selection.json and report.txt into the run directory."""

from __future__ import annotations

import json
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from ...config.kernels import load_kernel
from ...errors import HarnessError
from ...executors.base import Executor, RecordSink
from ...util import run, write_json
from ...vocab import DISKS, ENGINES, FILESYSTEMS, NAME_RULE, PATTERNS, Say, valid_name
from ..matrix import PROFILES, CellOutcome, MatrixRun, Profile
from .base import Base, cached_repo, find_base, keep_definition
from .read import Series, is_range, range_definition, read_series
from .select import Costs, Selection, named_xfstests, select
from .text import ReportInput, render
from .xfstests import BaseXfstests, XfstestsOutcome, run_xfstests


@dataclass(frozen=True)
class TryPlan:
    """A series, its base, the definition kept for it and what will run (validated; nothing slow yet)."""

    series: Series
    base: Base
    name: str
    definition: Path | None     # None for a dry run (nothing written)
    selection: Selection
    structure: str = ""         # how the iomap / direct-io.c users were known

    @property
    def kernel(self) -> str:
        """The kernel tried: the kept definition, which builds the series on the base (at its
        commit, see harness.drivers.series.base)."""
        return self.name


def parse_budget(text: str) -> float:
    """'15m', '90s', '1h' or seconds as a number: seconds."""
    t = text.strip().lower()
    mult = {"s": 1, "m": 60, "h": 3600}.get(t[-1:], None)
    try:
        v = float(t[:-1]) * mult if mult else float(t)
    except ValueError:
        raise HarnessError(f"--budget {text!r}: want e.g. 15m, 900s or 1h") from None
    if v <= 0:
        raise HarnessError(f"--budget {text!r}: want more than 0")
    return v


def _grep_users(repo: Path | None, commit: str, *needles: str) -> list[str] | None:
    if repo is None:
        return None
    argv = ["git", "-C", str(repo), "grep", "-l"]
    for n in needles:
        argv += ["-e", n]
    # commit is refs/kharness/base or a full hash from rev-parse (never user text starting with '-')
    proc = run([*argv, commit, "--", *(f"fs/{f}" for f in FILESYSTEMS)], check=False, timeout=120)
    if proc.returncode not in (0, 1):
        return None
    return sorted({m.group(1) for m in re.finditer(r":fs/([^/\s]+)/", proc.stdout)})


def structure(base: Base) -> tuple[list[str], list[str], str]:
    """(filesystems calling iomap_dio_rw, filesystems on __blockdev_direct_IO, how it was known)
    in the base's cached tree; the 6.1 answer when the tree is not cached yet."""
    k = load_kernel(base.name)
    repo = cached_repo(k.source)
    commit = base.commit or "refs/kharness/base"
    iomap = _grep_users(repo, commit, "iomap_dio_rw")
    legacy = _grep_users(repo, commit, "__blockdev_direct_IO", "blockdev_direct_IO(")
    if iomap is None or legacy is None:
        return ["ext4", "xfs"], ["ocfs2"], "not cached yet: 6.1's (ext4, xfs on iomap; ocfs2 on direct-io.c)"
    return iomap, legacy, f"git grep in {base.ref}'s tree"


def measured_costs(store: object | None, runs: int, limit: int = 400) -> Costs:
    """Per-cell seconds from recent fio runs in the store (a boot's time, less its boot, over its
    cells), times 2 sides x runs; defaults where nothing was measured."""
    per: dict[str, list[float]] = {}
    if store is not None and hasattr(store, "runs"):
        for r in store.runs(limit=limit):
            cells = [m.get("cell") for m in (r.record.get("measurements") or []) if isinstance(m, dict)]
            if r.workload != "fio" or not cells or not r.started or not r.finished:
                continue
            try:
                spent = (datetime.fromisoformat(r.finished) - datetime.fromisoformat(r.started)).total_seconds()
            except ValueError:
                continue
            each = max(1.0, spent - (r.boot_seconds or 0.0)) / len(cells)
            for c in cells:
                if isinstance(c, str):
                    per.setdefault(c, []).append(each)
    return Costs({c: 2 * runs * statistics.median(v) for c, v in per.items()})


def plan_try(series_text: str, *, base_name: str | None = None, name: str | None = None,
             budget_s: float | None = 900.0, full: bool = False, dry_run: bool = False,
             store: object | None = None, profile: Profile = PROFILES["quick"], xfstests: bool = True,
             xfstests_named: Sequence[str] = ()) -> TryPlan:
    """Read, base, select and (unless dry_run) keep the definition: every check before a slow step.
    ``xfstests_named`` (``--xfstests``) replaces the chosen xfstests (see select.named_xfstests)."""
    if name is not None and not valid_name(name):
        raise HarnessError(f"--name {name!r}: use {NAME_RULE}")
    range_repo = None
    rname = (range_definition(series_text) or base_name) if is_range(series_text) else None
    if rname is not None:
        repo = cached_repo(load_kernel(rname).source)
        if repo is None:
            raise HarnessError(f"{series_text}: {rname}'s source is not cached yet: "
                               f"`kharness kernel build {rname}` first")
        range_repo = (rname, repo)
    series = read_series(series_text, range_repo=range_repo)
    base = find_base(series, base_name or series.range_of)
    kname = name or series.slug
    iomap, legacy, how = structure(base)
    costs = measured_costs(store, profile.runs)
    sel = select(series.touched, filesystems=FILESYSTEMS, disks=[d for d in DISKS if d in ("nvme", "virtio")],
                 patterns=PATTERNS, engines=ENGINES, iomap_users=iomap, direct_io_users=legacy,
                 costs=costs, budget_s=budget_s, full=full, xfstests=xfstests)
    if xfstests_named:
        try:
            sel = named_xfstests(sel, xfstests_named, costs)
        except ValueError as e:
            raise HarnessError(f"--xfstests: {e}") from None
    definition = None if dry_run else keep_definition(kname, series, base)
    return TryPlan(series, base, kname, definition, sel,
                   f"iomap_dio_rw: {', '.join(iomap) or 'none'}; __blockdev_direct_IO: {', '.join(legacy) or 'none'} "
                   f"({how})")


def selection_lines(plan: TryPlan) -> list[str]:
    """The selection as printed: reasons, then each chosen item with its weight and cost."""
    s = plan.selection
    lines = [f"series: {plan.series.subject} ({len(plan.series.patches)} patch(es), read by {plan.series.reader})",
             f"base: {plan.base.ref} ({plan.base.how}); kernel: {plan.kernel}"
             + (f" (definition {plan.definition})" if plan.definition else " (dry run: no definition written)"),
             "selection" + (" (--full)" if s.full else f" within {s.budget_s:.0f} s") + f", about {s.cost_s:.0f} s:"]
    lines += [f"  {r}" for r in s.reasons] + [f"  ({plan.structure})"]
    lines += [f"  run {c.item} (weight {c.weight:.2f}, ~{c.cost_s:.0f} s)" for c in s.cells + s.xfstests]
    if s.skipped:
        lines.append(f"  left out for the budget: {len(s.skipped)} (in selection.json)")
    return lines


def write_selection(plan: TryPlan, where: Path) -> Path:
    """selection.json: the series, base, kernel and the choice with its reasons."""
    where.mkdir(parents=True, exist_ok=True)
    path = where / "selection.json"
    write_json(path, {"series": plan.series.source, "subject": plan.series.subject, "reader": plan.series.reader,
                      "touched": list(plan.series.touched.files),
                      "functions": dict(plan.series.touched.functions),
                      "base": plan.base.ref, "base_how": plan.base.how, "kernel": plan.kernel,
                      "definition": str(plan.definition or ""), "structure": plan.structure,
                      **plan.selection.to_json()}, indent=1, sort_keys=False)
    return path


def profile_for(plan: TryPlan, profile: Profile = PROFILES["quick"]) -> Profile:
    """A profile whose matrix holds every selected cell (filesystems and disks chosen, all
    patterns and engines); ``matrix_for`` keeps only the selected cells of it."""
    chosen = [c.item for c in plan.selection.cells]
    return Profile("try", tuple(dict.fromkeys(i.split("/")[0] for i in chosen)),
                   tuple(dict.fromkeys(i.split("/")[1] for i in chosen)), PATTERNS, ENGINES, profile.runs,
                   profile.runtime, profile.size, profile.iodepth, profile.disk_size, max_runs=profile.cap,
                   runs_per_boot=profile.runs_per_boot)


def matrix_for(plan: TryPlan, results: Path, *, accel: str | None = None, say: Say = print,
               sink: RecordSink | None = None, executor: Executor | None = None,
               profile: Profile = PROFILES["quick"], front_end: str = "try") -> MatrixRun:
    """The matrix driver over exactly the selected cells (the profile's runs, runtime and size)."""
    chosen = [c.item for c in plan.selection.cells]
    prof = profile_for(plan, profile)
    m = MatrixRun(plan.kernel, plan.base.ref, prof, results, accel=accel, say=say, sink=sink,
                  front_end=front_end, executor=executor)
    missing = set(chosen) - set(m.outcomes)
    if missing:
        raise HarnessError(f"selection names cells the matrix does not know: {', '.join(sorted(missing))}")
    m.outcomes = {cid: o for cid, o in m.outcomes.items() if cid in set(chosen)}
    return m


def regressed_cells(m: MatrixRun) -> list[str]:
    """Cells with a gating metric the matrix decided is a regression."""
    return list(dict.fromkeys(r["cell"] for r in m.rows() if r.get("gates", True) and r["verdict"] == "regression"))


def finish(plan: TryPlan, m: MatrixRun, xfs: XfstestsOutcome | None = None, *, evidence: bool = True) -> str:
    """After the matrix ran: an evidence boot per regressed cell (unless ``evidence`` is False),
    then report.txt; its text."""
    for cid in regressed_cells(m) if evidence else ():
        if not m.outcomes[cid].evidence:
            m.evidence_for(m.outcomes[cid].cell)
    text = render(report_input(plan, m, xfs))
    (m.results / "report.txt").write_text(text)
    return text


def run_try(plan: TryPlan, results: Path, *, accel: str | None = None, say: Say = print,
            sink: RecordSink | None = None, executor: Executor | None = None,
            profile: Profile = PROFILES["quick"], evidence: bool = True,
            base_xfstests: BaseXfstests | None = None) -> tuple[MatrixRun, XfstestsOutcome, str]:
    """Run the selected cells with the matrix driver (evidence boots for regressions unless
    ``evidence`` is False: they change no verdict) and the selected xfstests on both kernels (the
    base's from ``base_xfstests`` where it ran on the same base kernel and image); write
    selection.json and report.txt; return the matrix, the xfstests outcome and the report text."""
    m = matrix_for(plan, results, accel=accel, say=say, sink=sink, executor=executor, profile=profile)
    write_selection(plan, results)
    m.run()
    xfs = run_xfstests([c.item for c in plan.selection.xfstests], m.kernel, m.baseline, results,
                       group=m.group.replace("matrix-", "xfstests-", 1), accel=accel, say=say, sink=sink,
                       executor=executor, base=base_xfstests)
    return m, xfs, finish(plan, m, xfs, evidence=evidence)


def report_input(plan: TryPlan, m: MatrixRun, xfs: XfstestsOutcome | None = None) -> ReportInput:
    """The report's facts, from the matrix's records and verdict rows."""
    commits = {}
    for ref in (m.kernel, m.baseline):
        try:
            meta = json.loads(m.bed.kernel(ref).metadata.read_text())
            commits[ref] = str(meta.get("commit") or meta.get("base_commit") or m.bed.kernel(ref).key)[:12]
        except (HarnessError, OSError, ValueError):
            commits[ref] = "?"
    outcomes: dict[str, CellOutcome] = m.outcomes
    sel_x = [c.item for c in plan.selection.xfstests]
    src = plan.series.source
    return ReportInput(plan.series.subject, src, len(plan.series.patches), m.kernel, m.baseline, commits,
                       m.bed.accel_name if m.bed.accel else "?", [r for r in m.rows() if r.get("gates", True)],
                       {c: o.evidence for c, o in outcomes.items() if o.evidence},
                       {c: o.failures for c, o in outcomes.items() if o.failures},
                       plan.selection.reasons, sel_x,
                       [(f"{d.section}:{d.test}", d.category, f"{d.tonight} (base {d.baseline or 'not run'})"
                         + (f": {d.message}" if d.message else "")) for d in (xfs.diffs if xfs else ())],
                       xfs.not_run if xfs else "not run by pytest --patch (use the xfstests options)",
                       [f"kharness try {src}" + (f" --name {plan.name}" if plan.name != plan.series.slug else ""),
                        f"pytest --kernel={plan.name} --baseline={plan.base.ref}  (definition {plan.definition})",
                        f"kharness reproduce RUN_DIR   (any run directory under {m.results})"])

