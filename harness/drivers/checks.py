"""Checks that decide whether one kernel is good or bad: the verdicts of `kharness check` and of
every bisect step.

    boot                         the kernel boots to a shell (SSH answers)
    guest:COMMAND                a command run in the guest exits 0
    xfstests:TEST[,TEST][@SECTION]   the tests pass (section default ext4_4k)
    fio:CELL[:MIN_EFFECT%]       no IOPS regression of at least MIN_EFFECT% (default 10) in CELL
                                 (fs/disk/pattern/engine) against a reference kernel, the two
                                 measured in alternating boots and judged by the paired rule
    counter:CELL:METRIC[:MIN_EFFECT%]
                                 the same for a counted metric of CELL (jbd2_commits_per_kwrite,
                                 dio_wq_peak_concurrency, ...): a change of MIN_EFFECT% the worse
                                 way (a rise in commits, a fall in concurrency) is bad

A check gives ``good``, ``bad`` or ``skip`` (cannot tell: the build failed, a boot failed under a
non-boot check, the harness failed, a test did not run, repeats disagreed, or the statistics
stayed open up to the cap). ``skip`` is what `git bisect run` calls exit code 125.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..config.fstests import TEST_NAME, get_section
from ..errors import HarnessError
from ..executors.base import Executor, RecordSink, RunContext
from ..executors.local import LocalExecutor
from ..results.metrics import COUNTED, metric
from ..results.verdict import PairedStep, measured, paired_rule
from ..run.plan import command_spec, fio_cell, fio_spec, xfstests_spec
from ..run.records import BootRecord
from ..run.spec import SysrqSampling
from ..run.testbed import DEFAULT_IMAGE, XFSTESTS_IMAGE, Testbed
from ..vocab import CellId, Say, VocabError

OUTCOMES = ("good", "bad", "skip")
EXIT_CODES = {"good": 0, "bad": 1, "skip": 125}
_XFS = re.compile(r"^xfstests:(?P<tests>[A-Za-z0-9_./,-]+?)(?:@(?P<section>[A-Za-z0-9_]+))?$")
_FIO = re.compile(r"^fio:(?P<cell>[a-z0-9]+/[a-z]+/[a-z-]+/[a-z_]+)(?::(?P<effect>\d+(?:\.\d+)?)%?)?$")
_COUNTER = re.compile(r"^counter:(?P<cell>[a-z0-9]+/[a-z]+/[a-z-]+/[a-z_]+):(?P<metric>[a-z0-9_]+)"
                      r"(?::(?P<effect>\d+(?:\.\d+)?)%?)?$")


class CheckError(HarnessError):
    """A check string that does not parse; says what the forms are."""


@dataclass(frozen=True)
class Check:
    """A parsed check: its kind and parameters, and the string it came from."""

    text: str
    kind: str                       # boot | guest | xfstests | fio (a counter check is a fio check)
    argv: tuple[str, ...] = ()
    tests: tuple[str, ...] = ()
    section: str = "ext4_4k"
    cell: CellId | None = None
    min_effect_pct: float = 10.0
    metric: str = "iops"            # a fio check's metric: IOPS, or a counted one (counter:)

    @property
    def image(self) -> str:
        return XFSTESTS_IMAGE if self.kind == "xfstests" else DEFAULT_IMAGE


def parse_check(text: str) -> Check:
    """Parse a check string; CheckError names the forms on a mistake."""
    forms = ("boot, guest:COMMAND, xfstests:TEST[,TEST][@SECTION], fio:FS/DISK/PATTERN/ENGINE[:MIN_EFFECT%], "
             "counter:FS/DISK/PATTERN/ENGINE:METRIC[:MIN_EFFECT%]")
    if text == "boot":
        return Check(text, "boot", argv=("true",))
    if text.startswith("guest:"):
        argv = tuple(shlex.split(text[len("guest:"):]))
        if not argv:
            raise CheckError(f"check {text!r}: give the command after guest:")
        return Check(text, "guest", argv=argv)
    m = _XFS.match(text)
    if m:
        tests = tuple(t for t in m.group("tests").split(",") if t)
        bad = [t for t in tests if not TEST_NAME.match(t)]
        if bad or not tests:
            raise CheckError(f"check {text!r}: not xfstests test names: {', '.join(bad) or '(none)'}")
        section = m.group("section") or "ext4_4k"
        get_section(section)
        return Check(text, "xfstests", tests=tests, section=section)
    m = _FIO.match(text)
    if m:
        try:
            cell = CellId.parse(m.group("cell"))  # validates every part by name
        except VocabError as e:
            raise CheckError(f"check {text!r}: {e}") from None
        return Check(text, "fio", cell=cell, min_effect_pct=float(m.group("effect") or 10))
    m = _COUNTER.match(text)
    if m:
        counted = {mt.key for mt in COUNTED}
        if m.group("metric") not in counted:
            raise CheckError(f"check {text!r}: {m.group('metric')!r} is not a counted metric "
                             f"(known: {', '.join(sorted(counted))})")
        try:
            cell = CellId.parse(m.group("cell"))
        except VocabError as e:
            raise CheckError(f"check {text!r}: {e}") from None
        return Check(text, "fio", cell=cell, min_effect_pct=float(m.group("effect") or 10), metric=m.group("metric"))
    raise CheckError(f"check {text!r}: want one of {forms}")


@dataclass
class Verdict:
    """What one check said about one kernel, with the records behind it."""

    outcome: str                          # good | bad | skip
    reason: str
    records: list[BootRecord] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    paired: PairedStep | None = None      # a fio check: the kernel against its reference, round by round
    runs: int = 0                         # functional runs that gave a verdict (skips not counted)
    failures: int = 0                     # of those, the runs that failed

    @property
    def run_ids(self) -> list[str]:
        return [r.run_id for r in self.records]


@dataclass(frozen=True)
class FioSettings:
    """How a performance check measures: ``runs`` fio runs of ``runtime`` seconds a boot; `kharness
    check` measures in alternating rounds (a boot of the reference, then one of the kernel), at
    least ``min_rounds`` (the paired rule needs two) and at most ``max_rounds``."""

    runtime: int = 5
    size: str = "32m"
    iodepth: int = 32
    runs: int = 3
    min_rounds: int = 2
    max_rounds: int = 4
    disk_size: str = "2G"


class Checker:
    """Runs a check on kernel refs of one testbed; every boot goes to ``root`` and the sink."""

    def __init__(self, bed: Testbed, check: Check, root: Path, *, sink: RecordSink | None = None,
                 group: str | None = None, front_end: str = "check", say: Say = print,
                 fio: FioSettings = FioSettings(), tests_source: Path | None = None,
                 executor: Executor | None = None):
        self.bed, self.check, self.root, self.sink, self.group = bed, check, root, sink, group
        self.front_end, self.say, self.fio, self.tests_source = front_end, say, fio, tests_source
        self.executor: Executor = executor or LocalExecutor()
        self.ctx = RunContext(root, sink=sink, say=say, group=group, front_end=front_end,
                              tests_source=tests_source)

    def _execute(self, specs, max_boots: int = 1) -> list[BootRecord]:
        return self.executor.execute(specs, self.ctx.but(max_boots_per_spec=max_boots))

    def _functional_spec(self, ref: str, index: int = 0):
        c, label = self.check, f"check-{ref}"
        if c.kind in ("boot", "guest"):
            spec = command_spec(self.bed, ref, list(c.argv), label=label)
        else:
            spec = xfstests_spec(self.bed, ref, c.section, list(c.tests), disk_kind="virtio", label=label)
        return dataclasses.replace(spec, run_index=index)

    def _functional_verdict(self, recs: list[BootRecord]) -> Verdict:
        c = self.check
        # a boot the host lost (harness.evidence.infra) was replaced by the executor: it says
        # nothing about the kernel, so only the replacement is judged
        recs = [r for r in recs if not r.lost] or recs
        if c.kind in ("boot", "guest"):
            rec = recs[0]
            if rec.status == "boot-failed":
                return Verdict("bad" if c.kind == "boot" else "skip", "boot failed: " + _first(rec.failures), [rec])
            if rec.status == "hang" and c.kind == "guest":
                return Verdict("bad", "hung: " + _first(rec.failures), [rec])
            if rec.status != "done" or rec.command_status is None:
                return Verdict("skip", f"harness: {rec.status}: {_first(rec.failures)}", [rec])
            if c.kind == "boot":
                return Verdict("good", f"booted in {rec.boot_seconds or 0:.1f}s", [rec])
            ok = rec.command_status == 0
            return Verdict("good" if ok else "bad", f"{shlex.join(c.argv)} exited {rec.command_status}", [rec])
        results = {x.test: x for r in recs for x in r.xfstests}
        if any(r.status == "boot-failed" for r in recs) and not results:
            return Verdict("skip", "boot failed: " + _first(recs[0].failures), recs)
        missing = [t for t in c.tests if t not in results]
        if missing:
            return Verdict("skip", f"no result for {', '.join(missing)}", recs)
        failed = [f"{t} {x.status}" for t, x in results.items() if x.status in ("fail", "error")]
        notrun = [t for t, x in results.items() if x.status == "notrun"]
        if failed:
            return Verdict("bad", "; ".join(failed), recs)
        if notrun:
            return Verdict("skip", f"not run: {', '.join(notrun)}", recs)
        return Verdict("good", f"{len(results)} passed", recs)

    def functional_runs(self, ref: str, n: int = 1) -> list[Verdict]:
        """``n`` runs of a boot, guest or xfstests check on ``ref``, as many at once as the
        executor has slots (a Ray cluster runs a step's repeats in parallel)."""
        self.bed.add(ref)
        boots = 1 if self.check.kind in ("boot", "guest") else len(self.check.tests) + 1
        verdicts: list[Verdict] = []
        width = max(1, self.executor.slots())
        for start in range(0, n, width):
            idx = list(range(start, min(n, start + width)))
            recs = self._execute([self._functional_spec(ref, i) for i in idx], max_boots=boots)
            for i in idx:  # a boot cut short is followed by fresh boots of the same spec (run_index)
                mine = [r for r in recs if r.spec.run_index == i]
                verdicts.append(self._functional_verdict(mine) if mine else
                                Verdict("skip", "harness: no record for this run"))
        return verdicts

    def functional(self, ref: str) -> Verdict:
        """One run of a boot, guest or xfstests check on ``ref``."""
        return self.functional_runs(ref, 1)[0]

    def repeated(self, ref: str, repeats: int) -> Verdict:
        """A functional check ``repeats`` times; disagreeing repeats are a skip (flaky)."""
        verdicts = self.functional_runs(ref, max(1, repeats))
        outcomes = {v.outcome for v in verdicts}
        records = [r for v in verdicts for r in v.records]
        runs, failures = _counts(verdicts)
        if len(outcomes) == 1:
            return Verdict(verdicts[0].outcome, verdicts[0].reason + (f" ({repeats}x)" if repeats > 1 else ""),
                           records, runs=runs, failures=failures)
        if "skip" in outcomes:
            return Verdict("skip", "; ".join(v.reason for v in verdicts if v.outcome == "skip"), records,
                           runs=runs, failures=failures)
        return Verdict("skip", f"flaky: bad {failures}/{len(verdicts)}", records, runs=runs, failures=failures)

    def tallied(self, ref: str, n: int = 1) -> Verdict:
        """``n`` runs on ``ref`` counted, for a probabilistic bisect: bad if any run failed (a good
        kernel is assumed not to fail), good if every run that gave a verdict passed, skip if
        none did; ``runs`` and ``failures`` carry the counts."""
        verdicts = self.functional_runs(ref, max(1, n))
        records = [r for v in verdicts for r in v.records]
        runs, failures = _counts(verdicts)
        if not runs:
            return Verdict("skip", "; ".join(v.reason for v in verdicts), records)
        told = [v for v in verdicts if v.outcome != "skip"]
        first = next(v for v in told if v.outcome == ("bad" if failures else "good"))
        return Verdict("bad" if failures else "good", first.reason, records,
                       runs=runs, failures=failures)

    def measure(self, ref: str, sampling: SysrqSampling | None = None) -> tuple[list[float], list[BootRecord]]:
        """One round of the fio cell on ``ref``: the check's metric (IOPS, or a counted one) of each
        run (empty if the boot failed). A
        round is one boot, or one per executor slot at once (each a fresh boot: more between-boot
        noise sampled per round)."""
        assert self.check.cell is not None, "a fio check has a cell"
        fs, disk, pattern, engine = (self.check.cell.fs, self.check.cell.disk, self.check.cell.pattern,
                                     self.check.cell.engine)
        self.bed.add(ref)
        s = self.fio
        cell = fio_cell(fs, disk, pattern, engine, iodepth=s.iodepth, size=s.size, runtime=s.runtime,
                        runs=1 if sampling else s.runs)
        spec = fio_spec(self.bed, ref, [cell], disk_size=s.disk_size, label=f"check-{ref}", sampling=sampling)
        width = 1 if sampling else max(1, self.executor.slots())
        recs = self._execute([dataclasses.replace(spec, run_index=i) for i in range(width)])
        key = self.check.metric
        vals = [v for r in recs for v in measured(r.measurements, [metric(key)]).get(key, [])]
        return ([v for v in vals if v] if key == "iops" else vals), recs

    def performance(self, reference: str, ref: str) -> Verdict:
        """`kharness check` on a fio cell: ``ref`` against ``reference`` in alternating rounds, a
        boot of each adjacent in time, decided by :func:`harness.results.verdict.paired_rule` (the
        rule a bisect's endpoints are decided by): bad = a regression of at least the minimum
        effect, good = less than that or an improvement. A reference measured once at the start
        would be stale by the time the kernel ran on a host whose speed swings; each round's
        ratio cancels that, and a boot counts once however many runs it made. Still open after
        ``max_rounds``: skip, never a guess."""
        rounds: list[tuple[list[float], list[float]]] = []
        values: list[float] = []
        records: list[BootRecord] = []
        step: PairedStep | None = None
        for n in range(1, max(self.fio.min_rounds, self.fio.max_rounds) + 1):
            got: list[list[float]] = []
            for which in (reference, ref):
                vals, recs = self.measure(which)
                records += recs
                if not vals:
                    failures = [f for r in recs for f in r.failures]
                    return Verdict("skip", f"no measurement of {which}: " + _first(failures), records, values)
                got.append(vals)
            rounds.append((got[0], got[1]))
            values += got[1]
            if n < self.fio.min_rounds:
                continue
            step = paired_rule(rounds, min_effect_pct=self.check.min_effect_pct, key=self.check.metric)
            if step.outcome != "open":
                break
        assert step is not None
        cell = str(self.check.cell) if self.check.metric == "iops" else f"{self.check.cell} {self.check.metric}"
        return Verdict("skip" if step.outcome == "open" else step.outcome, f"{cell}: {step.line}", records, values,
                       paired=step)


def _counts(verdicts: Sequence[Verdict]) -> tuple[int, int]:
    """(runs that gave a verdict, runs that failed) of single runs."""
    return sum(v.outcome != "skip" for v in verdicts), sum(v.outcome == "bad" for v in verdicts)


def _first(lines: Sequence[str]) -> str:
    return lines[0].splitlines()[0] if lines and lines[0] else "no details"
