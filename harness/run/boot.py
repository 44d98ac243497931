"""run_boot(spec) -> BootRecord: one boot's work, and nothing else.

The unit of work of every front end. It takes a RunSpec and a fresh run directory, finds the
kernel and image in the local cache by their keys (the testbed built them), boots, does the
workload, and returns a record. It holds no shared state, so it can run in another process or
on another host. Everything is written into the run directory as it is produced (spec.json
first, measurements.jsonl line by line, record.json last), so a failure loses nothing.

A hang ends the boot (the hang handler kills the VM): the record lists what is left in
``remaining``, and the composer runs it in a fresh boot with a spec of its own.
"""

from __future__ import annotations

import contextlib
import json
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ..errors import BootError, HangError, HarnessError, WorkloadError
from ..evidence.events import scan_console_file
from ..image.build import find_image
from ..kernel.build import find_kernel
from ..results.rundir import RunDir
from ..util import write_json
from ..vm.accel import Accel
from ..vm.disks import Disk
from ..vm.machine import VM, Icount, VMConfig
from ..vm.ssh import GuestCommandError
from ..vocab import Say
from ..workloads.fs import Filesystem, make_and_mount, unmount
from . import fio as fio_step
from . import xfstests as xfs_step
from .hang import console_offset, handle_hang
from .plan import command_spec
from .records import BootRecord, EvidenceRef, MeasurementRecord, XfstestRecord
from .spec import MOUNTPOINT, CommandWorkload, FioCell, FioWorkload, RunSpec, VMSpec, XfstestsWorkload
from .testbed import Testbed


def boot_timeout(accel: str) -> float:
    return 120.0 if accel == "kvm" else 240.0


def vm_config(spec: RunSpec, run_dir: Path) -> VMConfig:
    """The VM a spec describes, with its artifacts found in the local cache by key."""
    kernel = find_kernel(spec.kernel.key, spec.kernel.name)
    if kernel is None:
        raise HarnessError(f"kernel {spec.kernel.name} (key {spec.kernel.key}) is not in this host's cache; "
                           "prepare the testbed (or `kharness kernel build`) first")
    image = find_image(spec.image.recipe, spec.image.key)
    if image is None:
        raise HarnessError(f"image {spec.image.recipe} (key {spec.image.key}) is not in this host's cache; "
                           "prepare the testbed (or `kharness image build`) first")
    disks = [Disk(kind=d.kind, size=d.size, serial=d.serial) for d in spec.disks]
    return VMConfig(kernel=kernel.bzimage, image=image, accel=Accel(spec.accel, "from the run spec"),
                    run_dir=run_dir, disks=disks, memory_mb=spec.vm.memory_mb, cpus=spec.vm.cpus,
                    cmdline=spec.vm.cmdline, boot_timeout=boot_timeout(spec.accel),
                    icount=None if spec.vm.icount_shift is None else Icount(spec.vm.icount_shift, spec.vm.icount_sleep))


@contextlib.contextmanager
def open_vm(spec: RunSpec, run_dir: Path) -> Iterator[VM]:
    """Boot ``spec``'s VM for interactive use (spec.json written first); always shut down."""
    RunDir(run_dir, run_id=run_dir.name, label=spec.label, kernel=spec.kernel.name, interactive=True)
    spec.write(run_dir)
    with VM(vm_config(spec, run_dir)) as vm:
        yield vm


@contextlib.contextmanager
def booted(bed: Testbed, kernel: str, run_dir: Path, *, disks: Sequence[str] = (), cmdline: str = "",
           label: str = "vm") -> Iterator[VM]:
    """A running guest of a prepared testbed's ``kernel`` with scratch ``disks`` (``nvme:1G``...)."""
    spec = command_spec(bed, kernel, [], disks=disks, label=label, vm=VMSpec(cmdline=cmdline))
    with open_vm(spec, run_dir) as vm:
        yield vm


class _Acc:
    """What a boot has produced so far (local to one run_boot call)."""

    def __init__(self, rundir: RunDir, say: Say):
        self.rundir, self.say = rundir, say
        self.measurements: list[MeasurementRecord] = []
        self.xfstests: list[XfstestRecord] = []
        self.evidence: list[EvidenceRef] = []
        self.failures: list[str] = []
        self.summary: list[str] = []

    def measured(self, m: MeasurementRecord) -> None:
        self.measurements.append(m)
        with open(self.rundir.path / "measurements.jsonl", "a") as fh:
            fh.write(json.dumps(m.__dict__) + "\n")
        self.say(f"  {m.cell} r{m.run_index}: " + (f"{m.iops:.0f} IOPS, p99 {m.clat_p99_us or 0:.0f}us"
                                                   if m.status == "ok" else f"{m.status} {m.error or ''}"))

    def hang(self, e: HangError, run_dir: Path) -> None:
        self.failures.append(str(e))
        self.summary += e.summary
        if e.evidence_dir:
            self.evidence += [EvidenceRef(str(p.relative_to(run_dir)), "sysrq")
                              for p in sorted(e.evidence_dir.glob("hang-*"))]


def _fs_groups(cells: tuple[FioCell, ...]) -> list[list[FioCell]]:
    """Consecutive cells on the same filesystem share one mkfs and mount."""
    groups: list[list[FioCell]] = []
    for c in cells:
        if groups and groups[-1][0].fs == c.fs and groups[-1][0].disk == c.disk:
            groups[-1].append(c)
        else:
            groups.append([c])
    return groups


def _fio(vm: VM, spec: RunSpec, wl: FioWorkload, acc: _Acc, remaining: list[str],
         tests_source: Path | None) -> tuple[str, int | None]:
    run_dir = acc.rundir.path
    for group in _fs_groups(wl.cells):
        first = group[0]
        disk = next((d for d in vm.cfg.disks if d.kind == first.disk), None)
        if disk is None:
            raise HarnessError(f"cell {first.id}: the spec has no {first.disk} disk")
        fs = Filesystem(first.fs.fstype, first.fs.mkfs, first.fs.mount_options)
        try:
            make_and_mount(vm, fs, vm.device_for(disk), MOUNTPOINT)
            for argv in wl.setup:
                vm.run(list(argv), timeout=120)
        except WorkloadError as e:
            acc.failures += [f"{c.id}: {e}" for c in group]
            for c in group:
                remaining.remove(c.id)
            continue
        for c in group:
            for i in range(c.runs):
                idx = spec.run_index + i
                try:
                    m, ev, summary = fio_step.measure(vm, c, idx, run_dir, sampling=wl.sampling,
                                                      deadline=wl.deadline_s)
                except HangError as e:
                    acc.measured(MeasurementRecord(c.id, c.fs.fstype, c.disk, c.job.pattern, c.job.engine,
                                                   idx, "hang", error=str(e).splitlines()[0]))
                    acc.hang(e, run_dir)
                    remaining.remove(c.id)  # a hung cell is not retried: it would hang again
                    return "hang", None
                acc.evidence += ev
                acc.summary += summary
                acc.measured(m)
            remaining.remove(c.id)
        unmount(vm, MOUNTPOINT)
    return "done", None


def _xfstests(vm: VM, spec: RunSpec, wl: XfstestsWorkload, acc: _Acc, remaining: list[str],
              tests_source: Path | None) -> tuple[str, int | None]:
    run_dir = acc.rundir.path
    disks = list(vm.cfg.disks)
    guest = xfs_step.prepare_guest(vm, wl.section, disks, run_dir)
    acc.rundir.update(guest_release=guest.release, speed_factor=guest.speed_factor)
    skipped = dict(wl.expunged)
    check_time: dict[str, float] = {}
    for test in wl.tests:
        if test in skipped:
            r = XfstestRecord(wl.section, test, "notrun", None, f"expunged: {skipped[test]}")
        else:
            limit = xfs_step.watchdog_for(test, check_time, wl.default_watchdog_s, guest.speed_factor)
            acc.say(f"  {spec.kernel.name} {wl.section} {test} (watchdog {limit:.0f}s)")
            try:
                r = xfs_step.run_test(vm, wl.section, test, run_dir, limit=limit, check_time=check_time,
                                      tests_source=tests_source)
            except HangError as e:
                acc.xfstests.append(XfstestRecord(wl.section, test, "error", limit, "hung: " + str(e),
                                                  f"tests/{test.replace('/', '-')}"))
                acc.hang(e, run_dir)
                remaining.remove(test)
                acc.say(f"    hung: {str(e).splitlines()[0]}")
                return "hang", None
        acc.xfstests.append(r)
        remaining.remove(test)
        acc.say(f"    {r.status}" + (f": {r.message[:100]}" if r.message else ""))
    return "done", None


def _command(vm: VM, spec: RunSpec, wl: CommandWorkload, acc: _Acc, remaining: list[str],
             tests_source: Path | None) -> tuple[str, int | None]:
    """Run the command; its output goes to command.out / command.err in the run directory, its
    exit status is the second value. Past its deadline it is a hang: the hang handler collects
    the evidence."""
    since = console_offset(vm)
    try:
        res = vm.run(list(wl.argv), timeout=wl.timeout_s, check=False)
    except GuestCommandError as e:
        if e.timeout is None:
            raise
        acc.hang(handle_hang(vm, what=f"guest command {' '.join(wl.argv)[:60]}", limit=wl.timeout_s,
                             evidence_dir=acc.rundir.path / "sysrq", label="command", since=since),
                 acc.rundir.path)
        return "hang", None
    (acc.rundir.path / "command.out").write_text(res.stdout)
    (acc.rundir.path / "command.err").write_text(res.stderr)
    remaining.clear()
    return "done", res.status


# How a boot carries out each workload kind (run.spec's WorkloadKind says what it is): the
# runner ticks items off ``remaining`` as it finishes them and returns the boot's status
# (done or hang) and a command's exit status.
Runner = Callable[[VM, RunSpec, Any, _Acc, list[str], Path | None], tuple[str, int | None]]
RUNNERS: dict[str, Runner] = {"fio": _fio, "xfstests": _xfstests, "command": _command}


def run_boot(spec: RunSpec, run_dir: Path, *, say: Say = print, group: str | None = None,
             front_end: str = "cli", reproduces: str | None = None,
             tests_source: Path | None = None) -> BootRecord:
    """Boot ``spec``'s kernel in ``run_dir`` (fresh, created by the caller) and do its workload."""
    rundir = RunDir(run_dir, run_id=run_dir.name, label=spec.label, kernel=spec.kernel.name,
                    kernel_key=spec.kernel.key, image=spec.image.key, accel=spec.accel,
                    workload=spec.workload.kind, role=spec.role, group=group)
    spec.write(run_dir)
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    wl = spec.workload
    remaining = list(wl.work())
    acc = _Acc(rundir, say)
    status, boot_s, cmd_status = "error", None, None
    try:
        cfg = vm_config(spec, run_dir)
        with VM(cfg) as vm:
            boot_s = vm.boot_seconds
            rundir.update(boot_seconds=boot_s, qemu_argv=vm.argv)
            status, cmd_status = RUNNERS[wl.kind](vm, spec, wl, acc, remaining, tests_source)
    except BootError as e:
        status = "boot-failed"
        acc.failures.append(str(e))
    except HarnessError as e:
        status = "error"
        acc.failures.append(str(e))
    except Exception as e:  # a harness bug: still a record (and a traceback), never a lost run
        status = "error"
        acc.failures.append(f"internal error: {type(e).__name__}: {e}\n{traceback.format_exc()}")
    events = tuple(scan_console_file(run_dir / "console.log") if (run_dir / "console.log").exists() else [])
    rundir.write_events(list(events))
    record = BootRecord(
        run_id=run_dir.name, run_dir=str(run_dir), spec=spec, status=status, started=started,
        finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"), boot_seconds=boot_s,
        measurements=tuple(acc.measurements), xfstests=tuple(acc.xfstests), events=events,
        evidence=tuple(acc.evidence), failures=tuple(acc.failures), remaining=tuple(remaining),
        sysrq_summary=tuple(acc.summary), command_status=cmd_status, group=group, front_end=front_end,
        reproduces=reproduces)
    write_json(run_dir / "record.json", record.to_json(), indent=1, sort_keys=False)
    rundir.finish(status, failures=list(acc.failures), remaining=list(remaining))
    return record
