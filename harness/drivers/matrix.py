"""Baseline-versus-kernel fio comparisons over a matrix of filesystems, disks and patterns.

Planning: every (kernel, disk kind, run index) is one boot that measures all of that disk's
cells, in an order shuffled per boot (each filesystem's cells together, so one mkfs each;
recorded in each spec; the seed in comparison.json); runs
are interleaved (run 1 on the baseline, run 1 on the kernel, run 2 ...) so the between-boot
noise (docs/benchmarks.md, Time to verdict) is inside both distributions and slow drift of the host cancels out.

Adaptive repeats: every cell gets the profile's ``runs`` a side; then, while a cell's verdict is
still open (``Comparison.settled``: neither a flagged change nor a "no change" whose interval
excludes changes beyond twice the minimum effect) and the cap ``max_runs`` is not reached, one
more run a side boots with only the open cells. "Open" means "measure more", never a guess; at
the cap the verdict stands as measured, with its interval. How many times such a boot runs each
open cell is the noise model's choice (:mod:`.repeats`): twice while the within-boot noise is
unknown, then Kalibera and Jones' optimum from the boot and run costs measured so far; the
profile's ``runs_per_boot`` fixes it for every boot instead. A boot's runs of a cell count as one
value in the verdicts (their mean: ``harness.results.noise``).

Folding: the boots' records are grouped by cell and side and decided by the one verdict rule
(``harness.results.verdict.decide_cells``: Benjamini-Hochberg q-values across all cells and
metrics). Evidence
sampling is kept off measured runs; a cell flagged as a regression gets one extra evidence boot
on the new kernel with sysrq captures mid-run. With ``kernel == baseline`` it is an A/A run:
every flagged change is a false alarm, and the summary says how many there were.
"""

from __future__ import annotations

import dataclasses
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import HarnessError
from ..evidence.events import Event
from ..evidence.infra import emulator_fault
from ..executors.base import Executor, RecordSink, RunContext
from ..executors.local import LocalExecutor
from ..results.calibration import Fit
from ..results.metrics import COUNTED, gates
from ..results.stats import Comparison, format_comparison
from ..results.verdict import GATING, CellValues, cell_settled, cell_values, compare_cell, decide_cells
from ..run.plan import fio_matrix, fio_spec, with_runtime
from ..run.records import BootRecord
from ..run.spec import FioCell, SysrqSampling
from ..run.testbed import Testbed
from ..util import write_json
from ..vm.disks import parse_disk
from ..vocab import ENGINES, FILESYSTEMS, PATTERNS, Say
from ..workloads.fs import get_filesystem
from .repeats import MAX_RUNS_PER_BOOT, CellNoise, RepeatPlan, cell_noise, plan_repeat

FULL_DISKS = ("nvme", "virtio")     # the full profile's disk kinds


@dataclass(frozen=True)
class Profile:
    """Which cells and how long: 'quick' for CI, 'default' for a developer at a terminal, 'full'
    for nightly runs and real hosts. ``runs`` a side for
    every cell, up to ``max_runs`` for cells whose verdict is still open."""

    name: str
    filesystems: tuple[str, ...]
    disks: tuple[str, ...]
    patterns: tuple[str, ...]
    engines: tuple[str, ...]
    runs: int
    runtime: int
    size: str
    iodepth: int = 32
    disk_size: str = "2G"
    max_runs: int = 0          # 0: the same as runs (no adaptive repeats)
    runs_per_boot: int = 0     # runs of a cell in each boot; 0: one, and the noise model's choice in repeats

    @property
    def cap(self) -> int:
        return max(self.runs, self.max_runs)


# 3 s runs of 32 MiB files: benchmarks/fio_noise.py found the boot-to-boot noise of 3, 5 and 10 s
# runs about the same, so the shortest run buys the most boots (see docs/benchmarks.md, fio noise
# in "Time to verdict").
EVIDENCE_RUNTIME = 9   # seconds of fio in an evidence boot (sysrq at 3 s: SysrqSampling.evidence)

PROFILES = {
    "quick": Profile("quick", ("ext4", "xfs"), ("nvme",), ("unwritten-convert", "append-extend"),
                     ("libaio",), runs=3, runtime=3, size="32m", max_runs=5),
    # what `pytest --kernel=NAME` runs: every completion path on the two journalling filesystems,
    # on NVMe: FUA overwrites (nothing blocks), O_SYNC overwrites (journal commits of mtime),
    # unwritten-extent conversion, size updates (docs/workloads.md, "Which completions block")
    "default": Profile("default", ("ext4", "xfs"), ("nvme",), PATTERNS, ("libaio",), runs=3, runtime=3,
                       size="32m", max_runs=6),
    "full": Profile("full", FILESYSTEMS, FULL_DISKS, PATTERNS, ENGINES, runs=3, runtime=3, size="32m", max_runs=8),
}


def make_profile(name: str = "default", *, filesystems: list[str] | None = None,
                 disks: list[str] | None = None, runs: int | None = None,
                 max_runs: int | None = None, runs_per_boot: int | None = None) -> Profile:
    """A profile with the user's overrides applied, each checked by name."""
    if name not in PROFILES:
        raise HarnessError(f"unknown profile {name!r} (known: {', '.join(PROFILES)})")
    p = PROFILES[name]
    fs = tuple(filesystems) if filesystems else p.filesystems
    dk = tuple(disks) if disks else p.disks
    for f in fs:
        get_filesystem(f)
    for d in dk:
        parse_disk(d)
    if runs is not None and runs < 1:
        raise HarnessError(f"--runs {runs}: want at least 1 (3 or more for a verdict)")
    n = runs or p.runs
    if max_runs is not None and max_runs < n:
        raise HarnessError(f"--max-runs {max_runs}: want at least --runs ({n})")
    cap = max_runs if max_runs is not None else (max(p.max_runs, n) if p.max_runs else n)
    if runs_per_boot is not None and not 1 <= runs_per_boot <= MAX_RUNS_PER_BOOT:
        raise HarnessError(f"--runs-per-boot {runs_per_boot}: want 1 to {MAX_RUNS_PER_BOOT}")
    return Profile(p.name, fs, dk, p.patterns, p.engines, n, p.runtime, p.size,
                   p.iodepth, p.disk_size, max_runs=cap, runs_per_boot=runs_per_boot or p.runs_per_boot)


def cells(profile: Profile) -> list[FioCell]:
    """The profile's cells, one run each (a boot measures each cell once per run index)."""
    return fio_matrix(profile.filesystems, profile.disks, profile.patterns, profile.engines,
                      iodepth=profile.iodepth, size=profile.size, runtime=profile.runtime)


def shuffled(cs: list[FioCell], rng: random.Random) -> list[FioCell]:
    """A boot's cells in random order, each filesystem's cells together (one mkfs each): the
    filesystems in a shuffled order, then the cells within each in a shuffled order."""
    groups: dict[object, list[FioCell]] = {}
    for c in cs:
        groups.setdefault(c.fs, []).append(c)
    keys = list(groups)
    rng.shuffle(keys)
    out: list[FioCell] = []
    for k in keys:
        rng.shuffle(groups[k])
        out += groups[k]
    return out


@dataclass
class CellOutcome:
    """Everything measured for one cell on both kernels."""

    cell: FioCell
    base: list = field(default_factory=list)
    new: list = field(default_factory=list)
    base_boots: list[str] = field(default_factory=list)   # the boot (run id) of each of ``base``
    new_boots: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    evidence: list[str] = field(default_factory=list)
    evidence_paths: list[str] = field(default_factory=list)

    def cell_values(self) -> CellValues:
        """Both sides' values, as the verdict module takes them."""
        return cell_values(self.base, self.new, base_boots=self.base_boots or None, new_boots=self.new_boots or None)

    def comparisons(self, min_effect_pct: float = 5.0) -> list[Comparison]:
        """Unadjusted comparisons of this cell (the matrix adjusts them together: ``decided``)."""
        return compare_cell(self.cell_values(), GATING, min_effect_pct=min_effect_pct)


class MatrixRun:
    """Measure a profile's cells on a baseline and a new kernel: plan, execute, fold."""

    def __init__(self, kernel: str, baseline: str, profile: Profile, results: Path, *,
                 accel: str | None = None, image: str = "debian-bookworm", say: Say = print,
                 sink: RecordSink | None = None, front_end: str = "pytest",
                 executor: Executor | None = None, seed: int | None = None):
        self.kernel, self.baseline, self.profile, self.results = kernel, baseline, profile, results
        self.say, self.sink, self.front_end = say, sink, front_end
        self.executor: Executor = executor or LocalExecutor()
        self.seed = seed if seed is not None else random.SystemRandom().randrange(2 ** 32)
        self.rounds: list[list[str]] = []   # the cells each run index measured
        self.repeats: list[RepeatPlan] = []  # the noise model's choice for each round of repeats
        self.bed = Testbed([baseline, kernel], image=image, accel=accel, say=say)
        self.group = f"matrix-{time.strftime('%Y%m%d-%H%M%S')}-{kernel}-vs-{baseline}"
        self.ctx = RunContext(results, sink=sink, say=say, group=self.group, front_end=front_end)
        self.outcomes: dict[str, CellOutcome] = {c.id: CellOutcome(c) for c in cells(profile)}
        self.records: list[BootRecord] = []
        self.lost: list[str] = []          # boots lost to the host and replaced, reported apart
        self.events: dict[str, list[Event]] = {baseline: [], kernel: []}
        self.consoles: dict[str, list[str]] = {baseline: [], kernel: []}
        self.done = False

    @property
    def boot_seconds(self) -> list[float]:
        return [r.boot_seconds for r in self.records if r.boot_seconds]

    def plan(self, indices: range | None = None, only: set[str] | None = None, runs_per_boot: int | None = None):
        """The boots, in order: run index, then base/new, then disk kind; each boot's cells in
        an order shuffled from (seed, run index, side, disk) by ``shuffled``, each run
        ``runs_per_boot`` times (default: the profile's, else once) one after the other."""
        per_boot = runs_per_boot or self.profile.runs_per_boot or 1
        by_disk: dict[str, list[FioCell]] = {}
        for o in self.outcomes.values():
            if only is None or o.cell.id in only:
                by_disk.setdefault(o.cell.disk, []).append(
                    dataclasses.replace(o.cell, runs=per_boot) if per_boot > 1 else o.cell)
        for i in indices if indices is not None else range(self.profile.runs):
            for role, k in (("base", self.baseline), ("new", self.kernel)):
                for disk, cs in by_disk.items():
                    order = shuffled(cs, random.Random(f"{self.seed}:{i}:{role}:{disk}"))
                    yield fio_spec(self.bed, k, order, disk_size=self.profile.disk_size,
                                   label=f"{k}-{disk}-run{i}", role=role, run_index=i)

    def _execute(self, specs) -> None:
        for r in self.executor.execute(specs, self.ctx):
            self.fold(r)

    def open_cells(self) -> list[str]:
        """Cells whose verdict is still open: no failures, no metric flagged and settled (the
        cell has changed; more runs would only refine its other metrics), and some metric not
        settled."""
        decided = self.decided()
        return [cid for cid, o in self.outcomes.items()
                if not o.failures and not cell_settled(decided.get(cid, []))]

    def run(self) -> MatrixRun:
        """Measure everything (once): the minimum runs, then adaptive repeats of open cells."""
        if self.done:
            return self
        self.bed.prepare()
        self.results.mkdir(parents=True, exist_ok=True)
        self.rounds = [list(self.outcomes)] * self.profile.runs
        self._execute(self.plan())
        for i in range(self.profile.runs, self.profile.cap):
            still = self.open_cells()
            if not still:
                break
            rp = plan_repeat(self.outcomes, still, self.records, fixed=self.profile.runs_per_boot)
            self.repeats.append(rp)
            self.say(f"adaptive repeats: {len(still)} cell(s) still open after {i} runs a side "
                     f"({', '.join(still)}): run {i + 1} of at most {self.profile.cap}, {rp.line}")
            self.rounds.append(still)
            self._execute(self.plan(range(i, i + 1), set(still), rp.runs_per_boot))
        self.done = True
        self._store_verdicts()
        return self

    def fold(self, r: BootRecord) -> None:
        """Add one boot's record to the cells' outcomes (a boot the host lost counts for none:
        the executor replaced it; it is listed in ``lost`` with its console)."""
        self.records.append(r)
        if r.lost:
            self.lost.append(f"{r.run_id} ({r.spec.kernel.name}): {r.lost}; console {Path(r.run_dir) / 'console.log'}")
            return
        k = self.baseline if r.spec.role == "base" else self.kernel
        faults = [e for e in r.events if emulator_fault(e, r.spec.accel)]
        if faults:   # the host's fault, not the kernel's: what it left undone ran in a fresh boot
            self.lost.append(f"{r.run_id} ({r.spec.kernel.name}): {faults[0].title} (a known emulator fault)")
        self.events[k] += [e for e in r.events if e not in faults]
        self.consoles[k].append(str(Path(r.run_dir) / "console.log"))
        for m in r.measurements:
            o = self.outcomes.get(m.cell)
            if o is None:
                continue
            if m.status == "ok":
                (o.base if r.spec.role == "base" else o.new).append(m)
                (o.base_boots if r.spec.role == "base" else o.new_boots).append(r.run_id)
            else:
                o.failures.append(f"{k} run {m.run_index}: {m.status}: {m.error or ''}")
        for f in r.failures:  # per-cell failures (mkfs, mount) name their cell first
            cid = f.split(":", 1)[0]
            if cid in self.outcomes:
                self.outcomes[cid].failures.append(f"{k} run {r.spec.run_index}: {f}")
        if r.status in ("boot-failed", "error"):  # the boot itself failed: what it left undone
            why = "; ".join(f.splitlines()[0] for f in r.failures) or r.status
            for cid in r.remaining:
                if cid in self.outcomes:
                    self.outcomes[cid].failures.append(f"{k} run {r.spec.run_index}: {r.status}: {why}")
        if r.status == "hang":
            for m in r.measurements:
                if m.status == "hang" and m.cell in self.outcomes:
                    self.outcomes[m.cell].evidence_paths.append(str(Path(r.run_dir) / "sysrq"))

    def evidence_for(self, cell: FioCell, kernel: str | None = None) -> list[str]:
        """One extra boot of ``cell`` on ``kernel`` with sysrq-w and sysrq-t mid-run; the summary."""
        kernel = kernel or self.kernel
        self.bed.prepare()
        # not a measurement: a job long enough that the dumps end well before it does (3 s in)
        job = with_runtime(cell, max(cell.job.runtime, EVIDENCE_RUNTIME))
        spec = fio_spec(self.bed, kernel, [job], disk_size=self.profile.disk_size,
                        label=f"evidence-{kernel}-{cell.cell_id.slug}", role="evidence",
                        sampling=SysrqSampling.evidence(job.job.runtime))
        (rec,) = self.executor.execute([spec], self.ctx.but(max_boots_per_spec=1))
        out = self.outcomes[cell.id]
        out.evidence = list(rec.sysrq_summary)
        out.evidence_paths += [str(Path(rec.run_dir) / e.path) for e in rec.evidence]
        return out.evidence

    def decided(self, explain: bool = False) -> dict[str, list[Comparison]]:
        """Every cell's comparisons, decided together (``verdict.decide_cells``); with ``explain``
        (the suite's table) also the counted metrics both sides measured, adjusted in their own
        family, so the gating verdicts are the same either way."""
        keys = [m.key for m in COUNTED] if explain else []
        return decide_cells({cid: o.cell_values() for cid, o in self.outcomes.items()}, keys)

    def rows(self, decided: dict[str, list[Comparison]] | None = None) -> list[dict]:
        """The verdict rows: one per cell and metric, the counted (explaining) metrics included,
        each row saying whether its metric gates a verdict (``gates``); from ``decided``
        (``decided(explain=True)``) when the caller has it already."""
        rows = []
        for cid, comps in (decided if decided is not None else self.decided(explain=True)).items():
            for c in comps:
                s = c.shift
                rows.append({"cell": cid, "metric": c.metric, "gates": gates(c.metric), "verdict": c.verdict,
                             "base_kernel": self.baseline, "new_kernel": self.kernel,
                             "base_median": c.base.median, "new_median": c.new.median,
                             "pct_change": c.pct_change, "p_value": c.p_value, "q_value": c.q_value,
                             "hl_pct": s.pct if s else None, "ci_low": s.low if s else None,
                             "ci_high": s.high if s else None, "ci_confidence": s.confidence if s else None,
                             "mde_pct": c.mde_pct, "settled": c.settled, "calibrated": c.calibrated,
                             "n_base": c.base.n, "n_new": c.new.n,
                             "line": format_comparison(cid, c)})
        return rows

    def calibration(self, decided: dict[str, list[Comparison]] | None = None) -> list[Fit]:
        """How each gating metric of each side followed the host's load (the fits the verdicts
        used or set aside; empty when the runs had no calibration); from ``decided`` when the
        caller has it already."""
        seen: dict[str, tuple[Fit, Fit]] = {}
        for comps in (decided if decided is not None else self.decided()).values():
            for c in comps:
                if c.calibration is not None:
                    seen.setdefault(c.metric, c.calibration)
        return [f for pair in seen.values() for f in pair]

    def noise(self) -> list[CellNoise]:
        """The gating metrics' noise components per cell and the effects they let boots detect."""
        return cell_noise(self.outcomes, self.records)

    @property
    def is_aa(self) -> bool:
        """An A/A run: the kernel against itself (every flagged change is a false alarm)."""
        return self.kernel == self.baseline

    def _store_verdicts(self) -> None:
        decided = self.decided(explain=True)
        rows = self.rows(decided)
        write_json(self.results / "comparison.json",
                   {"group": self.group, "kernel": self.kernel, "baseline": self.baseline,
                    "profile": self.profile.__dict__, "rows": rows, "seed": self.seed,
                    "rounds": self.rounds, "aa": self.is_aa,
                    "repeats": [dataclasses.asdict(p) for p in self.repeats],
                    "noise": [dataclasses.asdict(n) for n in self.noise()],
                    "calibration": [dataclasses.asdict(f) for f in self.calibration(decided)],
                    "failures": {c: o.failures for c, o in self.outcomes.items() if o.failures},
                    "lost_boots": self.lost, "boot_seconds": self.boot_seconds}, indent=1, sort_keys=False)
        if self.sink is not None and hasattr(self.sink, "add_verdicts"):
            keep = ("line", "gates", "q_value", "hl_pct", "ci_low", "ci_high", "ci_confidence", "mde_pct", "settled",
                    "calibrated")
            self.sink.add_verdicts(self.group, [{**r, "detail": {k: r[k] for k in keep}} for r in rows])
