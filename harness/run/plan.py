"""Turn what a front end asks for into RunSpecs: fio cells and xfstests selections.

Everything is validated here, before the first slow step: filesystems against
``workloads/filesystems.yaml``, fio parameters by rendering the job, disks by their syntax,
sections and tests by name. The testbed supplies the kernel, image and accelerator parts.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

from ..config.fstests import TEST_NAME, get_section
from ..errors import HarnessError
from ..vm.disks import parse_disk
from ..vm.machine import check_vm_size
from ..vocab import ENGINES, PATTERNS
from ..workloads.fio import FioJob, render_job
from ..workloads.fs import get_filesystem
from ..workloads.xfstests_config import expunged
from .spec import (
    MOUNTPOINT,
    CommandWorkload,
    DiskSpec,
    FilesystemSpec,
    FioCell,
    FioJobSpec,
    FioWorkload,
    RunSpec,
    SysrqSampling,
    VMSpec,
    XfstestsWorkload,
)
from .spec_checks import MAX_DEADLINE_S, MAX_RUNS
from .testbed import Testbed
from .xfstests import disks_for, expand_tests, section_sha256


def filesystem_spec(name: str) -> FilesystemSpec:
    fs = get_filesystem(name)
    return FilesystemSpec(fs.fstype, tuple(fs.mkfs), fs.mount_options)


def fio_cell(fs: str, disk: str, pattern: str, engine: str, *, iodepth: int = 32, numjobs: int = 1,
             bs: str = "4k", size: str = "64m", runtime: int = 10, ramp_time: int = 0,
             runs: int = 1, calibrate: bool = False) -> FioCell:
    """A validated cell; the job is rendered once here so a bad parameter fails now.
    ``calibrate``: measure the guest's speed (a tmpfs job) just before each run
    (docs/statistics.md, "Calibrated boots": measured, not used by the verdicts)."""
    if not 1 <= runs <= MAX_RUNS:
        raise HarnessError(f"runs {runs}: want 1 to {MAX_RUNS}")
    parse_disk(disk)
    job = FioJob(pattern=pattern, directory=f"{MOUNTPOINT}/fio", engine=engine, iodepth=iodepth,
                 numjobs=numjobs, bs=bs, size=size, runtime=runtime, ramp_time=ramp_time, tag="r0",
                 calibrate=calibrate)
    text = render_job(job)
    js = FioJobSpec(pattern=pattern, engine=engine, iodepth=iodepth, numjobs=numjobs, bs=str(bs),
                    size=str(size), runtime=runtime, ramp_time=ramp_time, directory=job.directory,
                    rendered=text, calibrate=calibrate)
    return FioCell(fs=filesystem_spec(fs), disk=parse_disk(disk).kind, job=js, runs=runs)


def with_runtime(cell: FioCell, runtime: int) -> FioCell:
    """The same cell with a job of ``runtime`` seconds (the job re-rendered)."""
    j = cell.job
    job = FioJob(pattern=j.pattern, directory=j.directory, engine=j.engine, iodepth=j.iodepth,
                 numjobs=j.numjobs, bs=j.bs, size=j.size, runtime=runtime, ramp_time=j.ramp_time, tag="r0",
                 calibrate=j.calibrate)
    return dataclasses.replace(cell, job=dataclasses.replace(j, runtime=runtime, rendered=render_job(job)))


def fio_matrix(filesystems: Iterable[str], disks: Iterable[str], patterns: Iterable[str] = PATTERNS,
               engines: Iterable[str] = ENGINES, **job: object) -> list[FioCell]:
    """Every (filesystem, disk, pattern, engine) cell, filesystems varying slowest."""
    return [fio_cell(f, d, p, e, **job) for f, d, p, e in  # type: ignore[arg-type]
            itertools.product(filesystems, disks, patterns, engines)]


def fio_spec(bed: Testbed, kernel: str, cells: Sequence[FioCell], *, disk_size: str, label: str,
             role: str | None = None, run_index: int = 0, sampling: SysrqSampling | None = None,
             setup: Sequence[Sequence[str]] = (), deadline_s: float | None = None,
             vm: VMSpec = VMSpec()) -> RunSpec:
    """One boot measuring ``cells`` on ``kernel``: one scratch disk per disk kind the cells use."""
    if not cells:
        raise HarnessError("a fio run needs at least one cell")
    kinds = list(dict.fromkeys(c.disk for c in cells))
    disks = [parse_disk(f"{k}:{disk_size}", i) for i, k in enumerate(kinds)]
    return RunSpec(label=label, kernel=bed.kernel_spec(kernel), image=bed.image_spec(), accel=bed.accel_name,
                   disks=tuple(DiskSpec(d.kind, d.size, d.serial) for d in disks), vm=vm, role=role,
                   run_index=run_index,
                   workload=FioWorkload(cells=tuple(cells), sampling=sampling,
                                        setup=tuple(tuple(a) for a in setup), deadline_s=deadline_s))


def xfstests_tests(selection: Sequence[str], source_tree: Path | None) -> list[str]:
    """Validated test names from names and ``group:NAME`` entries."""
    tests = expand_tests(list(selection), source_tree)
    if not tests:
        raise HarnessError(f"no tests selected from {', '.join(selection) or 'nothing'}")
    bad = [t for t in tests if not TEST_NAME.match(t)]
    if bad:
        raise HarnessError(f"not an xfstests test name: {', '.join(bad)} (want e.g. generic/001)")
    return tests


def xfstests_spec(bed: Testbed, kernel: str, section: str, tests: Sequence[str], *, disk_kind: str,
                  label: str, role: str | None = None, default_watchdog_s: float = 1800.0,
                  disk_size: str = "5G") -> RunSpec:
    """One boot running ``tests`` of ``section`` on ``kernel``."""
    s = get_section(section)
    ks = bed.kernel_spec(kernel)
    disks = [parse_disk(d, i) for i, d in enumerate(disks_for(s, disk_kind, disk_size))]
    wl = XfstestsWorkload(section=section, fstype=s.fstype, mkfs_options=s.mkfs_options,
                          section_sha256=section_sha256(s), tests=tuple(tests),
                          expunged=tuple(tuple(e) for e in expunged(s, ks.release)),  # type: ignore[misc]
                          default_watchdog_s=default_watchdog_s)
    return RunSpec(label=label, kernel=ks, image=bed.image_spec(), accel=bed.accel_name,
                   disks=tuple(DiskSpec(d.kind, d.size, d.serial) for d in disks), role=role, workload=wl)


def command_spec(bed: Testbed, kernel: str, argv: Sequence[str], *, disks: Sequence[str] = (),
                 label: str, timeout_s: float = 600.0, vm: VMSpec = VMSpec()) -> RunSpec:
    """One boot running ``argv`` in the guest (an empty argv: an interactive session)."""
    check_command(timeout_s, vm)
    ds = [parse_disk(d, i) for i, d in enumerate(disks)]
    return RunSpec(label=label, kernel=bed.kernel_spec(kernel), image=bed.image_spec(), accel=bed.accel_name,
                   disks=tuple(DiskSpec(d.kind, d.size, d.serial) for d in ds), vm=vm,
                   workload=CommandWorkload(argv=tuple(argv), timeout_s=timeout_s))


def check_command(timeout_s: float, vm: VMSpec) -> None:
    """A guest command's deadline and VM size within what a spec may ask (run.spec_checks), so
    the command line refuses what a spec read back would; HarnessError naming the value."""
    if not (math.isfinite(timeout_s) and 0 < timeout_s <= MAX_DEADLINE_S):
        raise HarnessError(f"timeout {timeout_s!r} s: want more than 0 and at most {MAX_DEADLINE_S:.0f}")
    check_vm_size(vm.memory_mb, vm.cpus)
