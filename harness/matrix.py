"""Baseline-versus-kernel fio comparisons over a matrix of filesystems, disks and patterns.

Runs are interleaved (run 1 on the baseline, run 1 on the kernel, run 2 ...) and every run is a
fresh boot, so the between-boot noise (5-9% on TCG) is inside both distributions and slow drift
of the host cancels out. Evidence sampling is kept off the measured runs; a cell flagged as a
regression gets one extra evidence run on the new kernel, with sysrq captures mid-run.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from .errors import HangError, HarnessError
from .evidence.capture import capture_sysrq
from .evidence.events import Event
from .image.build import build_image
from .kernel.build import KernelBuild, build_kernel
from .results.rundir import RunDir
from .results.stats import Comparison, compare, format_comparison
from .runner import MOUNTPOINT, Measurement, record, run_fio_once
from .session import vm_config
from .vm.accel import Accel, choose_accel
from .vm.disks import Disk, parse_disk
from .vm.machine import VM
from .workloads.fio import ENGINES, PATTERNS, FioJob
from .workloads.fs import get_filesystem, make_and_mount, unmount

Say = Callable[[str], None]
FILESYSTEMS = ("ext4", "xfs", "ocfs2")
DISKS = ("nvme", "virtio")


@dataclass(frozen=True)
class Cell:
    """One comparison cell: filesystem, disk kind, fio pattern, engine."""

    fs: str
    disk: str
    pattern: str
    engine: str

    @property
    def id(self) -> str:
        return f"{self.fs}/{self.disk} {self.pattern} {self.engine}"


@dataclass(frozen=True)
class Profile:
    """Which cells and how long: 'quick' for CI, 'full' for nightly runs."""

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


PROFILES = {
    "quick": Profile("quick", ("ext4", "xfs"), ("nvme",), ("unwritten-convert", "append-extend"),
                     ("libaio",), runs=3, runtime=5, size="32m"),
    "full": Profile("full", FILESYSTEMS, DISKS, PATTERNS, ENGINES, runs=5, runtime=20, size="256m"),
}


def make_profile(name: str = "full", *, filesystems: Iterable[str] | None = None,
                 disks: Iterable[str] | None = None, runs: int | None = None) -> Profile:
    """A profile with the user's overrides applied."""
    p = PROFILES[name]
    fs = tuple(filesystems) if filesystems else p.filesystems
    dk = tuple(disks) if disks else p.disks
    for f in fs:
        get_filesystem(f)
    for d in dk:
        parse_disk(d)
    return Profile(p.name, fs, dk, p.patterns, p.engines, runs or p.runs, p.runtime, p.size,
                   p.iodepth, p.disk_size)


def cells(profile: Profile) -> list[Cell]:
    return [Cell(*c) for c in itertools.product(profile.filesystems, profile.disks, profile.patterns,
                                                 profile.engines)]


def fio_job(cell: Cell, profile: Profile, tag: str = "0") -> FioJob:
    return FioJob(pattern=cell.pattern, directory=f"{MOUNTPOINT}/fio", engine=cell.engine,
                  iodepth=profile.iodepth, size=profile.size, runtime=profile.runtime, tag=tag)


@dataclass
class CellOutcome:
    """Everything measured for one cell on both kernels."""

    cell: Cell
    base: list[Measurement] = field(default_factory=list)
    new: list[Measurement] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    evidence: list[str] = field(default_factory=list)
    evidence_paths: list[str] = field(default_factory=list)

    def values(self, side: str, metric: str) -> list[float]:
        ms = self.base if side == "base" else self.new
        return [getattr(m.result, metric) for m in ms
                if m.result is not None and m.status == "ok" and getattr(m.result, metric) is not None]

    def comparisons(self, min_effect_pct: float = 5.0) -> list[Comparison]:
        out = []
        for metric, label, hib in (("iops", "IOPS", True), ("clat_p99_us", "p99 latency us", False)):
            b, n = self.values("base", metric), self.values("new", metric)
            if b and n:
                out.append(compare(b, n, metric=label, higher_is_better=hib, min_effect_pct=min_effect_pct))
        return out


class MatrixRun:
    """Measure a profile's cells on a baseline and a new kernel, lazily and once."""

    def __init__(self, kernel: str, baseline: str, profile: Profile, results: Path,
                 accel: str | None = None, image: str = "debian-bookworm", say: Say = print):
        self.kernel, self.baseline, self.profile = kernel, baseline, profile
        self.results, self.accel_override, self.image_name, self.say = results, accel, image, say
        self.outcomes: dict[Cell, CellOutcome] = {c: CellOutcome(c) for c in cells(profile)}
        self.events: dict[str, list[Event]] = {baseline: [], kernel: []}
        self.consoles: dict[str, list[str]] = {baseline: [], kernel: []}
        self.boot_seconds: list[float] = []
        self._done = False
        self._lock = threading.Lock()
        self.builds: dict[str, KernelBuild] = {}
        self.accel: Accel | None = None

    def _prepare(self) -> None:
        for k in (self.baseline, self.kernel):
            if k not in self.builds:
                self.say(f"kernel {k}: building (or cache hit)")
                self.builds[k] = build_kernel(k)
        self.image = build_image(self.image_name)
        self.accel = choose_accel(self.builds[self.kernel].bzimage, self.accel_override)
        self.say(f"accelerator: {self.accel.name} ({self.accel.reason})")

    def run(self) -> "MatrixRun":
        """Measure everything (once per session)."""
        with self._lock:
            if self._done:
                return self
            self._prepare()
            self.results.mkdir(parents=True, exist_ok=True)
            for i in range(self.profile.runs):
                for role, k in (("base", self.baseline), ("new", self.kernel)):
                    for disk in self.profile.disks:
                        self._run_boot(role, k, disk, i)
            self._done = True
            self._write_summary()
        return self

    def _run_boot(self, role: str, kernel: str, disk_kind: str, i: int) -> None:
        label = f"{kernel}-{disk_kind}-run{i}"
        rundir = RunDir(self.results / label, kernel=kernel, kernel_key=self.builds[kernel].key,
                        image=self.image.key, disks=[disk_kind], accel=self.accel.name if self.accel else None,
                        profile=self.profile.name, run=i, role=role)
        disk = parse_disk(f"{disk_kind}:{self.profile.disk_size}", 0)
        todo = [c for c in self.outcomes if c.disk == disk_kind]
        while todo:
            cfg = vm_config(self.builds[kernel], self.image, self.accel, rundir.path, [disk])
            try:
                with VM(cfg) as vm:
                    self.boot_seconds.append(vm.boot_seconds or 0)
                    todo = self._measure_cells(vm, disk, todo, role, kernel, i, rundir)
            except HarnessError as e:
                # A boot or VM failure: every remaining cell of this boot fails with the reason.
                for c in todo:
                    self.outcomes[c].failures.append(f"{kernel} run {i}: {e}")
                todo = []
            finally:
                self.consoles[kernel].append(str(rundir.path / "console.log"))
        from .evidence.events import scan_console
        text = (rundir.path / "console.log").read_text(errors="replace") if (rundir.path / "console.log").exists() else ""
        evs = scan_console(text)
        self.events[kernel] += evs
        rundir.write_events(evs)
        rundir.finish("done")

    def _measure_cells(self, vm: VM, disk: Disk, todo: list[Cell], role: str, kernel: str, i: int,
                       rundir: RunDir) -> list[Cell]:
        """Measure cells until done or a hang kills the VM; return the cells still to do."""
        dev = vm.device_for(disk)
        by_fs: dict[str, list[Cell]] = {}
        for c in todo:
            by_fs.setdefault(c.fs, []).append(c)
        remaining = list(todo)
        for fs_name, fs_cells in by_fs.items():
            fs = get_filesystem(fs_name)
            make_and_mount(vm, fs, dev, MOUNTPOINT)
            for c in fs_cells:
                remaining.remove(c)
                job = fio_job(c, self.profile, tag=f"r{i}")
                lbl = f"{kernel}-{c.fs}-{c.disk}-{c.pattern}-{c.engine}-r{i}"
                try:
                    m = run_fio_once(vm, job, rundir, lbl, kernel=kernel, fs=c.fs, disk=c.disk, run_index=i)
                except HangError as e:
                    self.outcomes[c].failures.append(f"{kernel} run {i}: {e}")
                    if e.evidence_dir:
                        self.outcomes[c].evidence_paths.append(str(e.evidence_dir))
                    return remaining  # the VM was killed: reboot for the rest
                except HarnessError as e:
                    self.outcomes[c].failures.append(f"{kernel} run {i}: {e}")
                    continue
                (self.outcomes[c].base if role == "base" else self.outcomes[c].new).append(m)
                record(m, rundir, lbl, self.say)
            unmount(vm, MOUNTPOINT)
        return []

    def evidence_for(self, cell: Cell, kernel: str | None = None, delay: float = 3.0) -> list[str]:
        """One extra run of ``cell`` on ``kernel`` with sysrq-w and sysrq-t mid-run; the summary."""
        kernel = kernel or self.kernel
        self._prepare() if self.accel is None else None
        out = self.outcomes[cell]
        rundir = RunDir(self.results / f"evidence-{kernel}-{cell.fs}-{cell.disk}-{cell.pattern}-{cell.engine}",
                        kernel=kernel, purpose="evidence", cell=cell.id)
        disk = parse_disk(f"{cell.disk}:{self.profile.disk_size}", 0)
        cfg = vm_config(self.builds[kernel], self.image, self.accel, rundir.path, [disk])
        summary: list[str] = []
        with VM(cfg) as vm:
            make_and_mount(vm, get_filesystem(cell.fs), vm.device_for(disk), MOUNTPOINT)
            job = fio_job(cell, self.profile, tag="ev")
            result: dict = {}

            def capture() -> None:
                time.sleep(delay)
                try:
                    cap = capture_sysrq(vm, "wt", via="ssh", out_dir=rundir.subdir("sysrq"), label="mid-run")
                    result["cap"] = cap
                except Exception as e:  # evidence is best effort; the measurement is elsewhere
                    result["error"] = str(e)
            t = threading.Thread(target=capture, daemon=True)
            t.start()
            try:
                run_fio_once(vm, job, rundir, f"evidence-{cell.pattern}-{cell.engine}", kernel=kernel,
                             fs=cell.fs, disk=cell.disk, run_index=0)
            finally:
                t.join(120)
            cap = result.get("cap")
            if cap is not None:
                summary = cap.summary()
                out.evidence_paths += [str(cap.raw_path), str(cap.json_path)]
        out.evidence = summary
        rundir.finish("done", summary=summary)
        return summary

    def _write_summary(self) -> None:
        rows = []
        for c, o in self.outcomes.items():
            for cmp_ in o.comparisons():
                rows.append({"cell": c.id, "metric": cmp_.metric, "verdict": cmp_.verdict,
                             "base_median": cmp_.base.median, "new_median": cmp_.new.median,
                             "pct_change": cmp_.pct_change, "p_value": cmp_.p_value,
                             "runs": [cmp_.base.n, cmp_.new.n],
                             "line": format_comparison(f"{c.id}", cmp_)})
            if o.failures:
                rows.append({"cell": c.id, "failures": o.failures})
        (self.results / "comparison.json").write_text(json.dumps(
            {"kernel": self.kernel, "baseline": self.baseline, "profile": self.profile.__dict__,
             "rows": rows, "boot_seconds": self.boot_seconds}, indent=1, default=str))
