"""Run workloads in VMs and keep the evidence: the composition used by the CLI and pytest plugin.

One fio measurement = render the job, copy it in, run fio with a deadline, copy the JSON back,
parse it, scan the console slice for events. A deadline passed is a hang: sysrq evidence is
collected (over SSH, else through the QMP keyboard), the VM is killed, and HangError says where
the evidence is. Everything lands in the run directory as it is produced.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

from .errors import HangError, HarnessError
from .evidence.capture import Capture, capture_sysrq
from .evidence.events import Event, scan_console
from .results.rundir import RunDir
from .vm.disks import Disk
from .vm.machine import VM
from .vm.ssh import GuestCommandError
from .workloads.fio import FioJob, FioResult, fio_argv, parse_fio_json, render_job
from .workloads.fs import Filesystem, make_and_mount, unmount

Say = Callable[[str], None]
GUEST_DIR = "/root/kharness"
MOUNTPOINT = "/mnt/scratch"


@dataclass
class Measurement:
    """One fio run's parsed result with its coordinates."""

    kernel: str
    fs: str
    disk: str
    pattern: str
    engine: str
    run: int
    result: FioResult | None
    fio_json: str
    events: list[Event] = field(default_factory=list)
    status: str = "ok"   # ok | hang | error

    def as_dict(self) -> dict:
        d = asdict(self)
        return d


class Sampler:
    """Periodic sysrq-w captures over SSH while a workload runs (perturbs measurements: keep it
    off the runs whose numbers are compared)."""

    def __init__(self, vm: VM, out_dir: Path, interval: float = 5.0, keys: str = "w"):
        self.vm, self.out_dir, self.interval, self.keys = vm, out_dir, interval, keys
        self.captures: list[Capture] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        n = 0
        while not self._stop.wait(self.interval):
            try:
                self.captures.append(capture_sysrq(self.vm, self.keys, via="ssh", out_dir=self.out_dir,
                                                   label=f"sample{n:03d}"))
                n += 1
            except Exception:
                return

    def __enter__(self) -> "Sampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(60)


def fio_deadline(job: FioJob, prep_seconds: float = 120.0) -> float:
    """How long fio may take before it counts as hung: runtime, prep and a wide margin."""
    return job.runtime * 3 + job.ramp_time + prep_seconds + 60


def run_fio_once(vm: VM, job: FioJob, rundir: RunDir, label: str, *, kernel: str, fs: str, disk: str,
                 run_index: int, sample_interval: float | None = None,
                 deadline: float | None = None) -> Measurement:
    """Run one fio job in the guest and collect its JSON, events and (on a hang) sysrq evidence."""
    fio_dir = rundir.subdir("fio")
    jobfile = fio_dir / f"{label}.fio"
    jobfile.write_text(render_job(job))
    start = vm.console.stat().st_size if vm.console.exists() else 0
    limit = deadline or fio_deadline(job)
    local_json = fio_dir / f"{label}.json"
    t_end = time.monotonic() + limit
    fio = fio_argv(f"{GUEST_DIR}/{label}.fio")  # JSON on stdout: no copy-back round trip
    try:
        # One round trip for setup (it touches the scratch filesystem, so the deadline guards
        # it too); the job file goes in on stdin.
        vm.run(["sh", "-c", 'mkdir -p "$1" "$2" && cat > "$3"', "sh", GUEST_DIR, job.directory,
                f"{GUEST_DIR}/{label}.fio"], stdin=jobfile.read_text(), timeout=min(60, limit))
        limit = max(10.0, t_end - time.monotonic())
        if sample_interval:
            with Sampler(vm, rundir.subdir("sysrq"), sample_interval):
                res = vm.run(fio, timeout=limit)
        else:
            res = vm.run(fio, timeout=limit)
    except GuestCommandError as e:
        events = scan_console(_console_since(vm, start))
        if e.result is not None:  # fio exited non-zero: keep what it wrote
            local_json.write_text(e.result.stdout + e.result.stderr)
            raise HarnessError(f"fio failed for {label} (output in {local_json}): {e}") from None
        evidence = rundir.subdir("sysrq")
        # The guest may no longer answer SSH: go through the emulated keyboard (QMP send-key).
        cap = capture_sysrq(vm, "wt", via="qmp", out_dir=evidence, label=f"hang-{label}")
        events = scan_console(_console_since(vm, start))
        rundir.write_events(events)
        (evidence / f"hang-{label}-summary.txt").write_text("\n".join(cap.summary()) + "\n")
        vm.kill()
        titles = sorted({ev.title for ev in events})
        raise HangError(f"{label}: the workload made no progress within {limit:.0f}s "
                        f"(events: {', '.join(titles) or 'none'}); sysrq via {cap.via}:\n  "
                        + "\n  ".join(cap.summary()[:12]), evidence_dir=evidence) from None
    text = res.stdout
    local_json.write_text(text)
    results = parse_fio_json(text, source=str(local_json))
    events = scan_console(_console_since(vm, start))
    return Measurement(kernel=kernel, fs=fs, disk=disk, pattern=job.pattern, engine=job.engine,
                       run=run_index, result=results[0] if results else None,
                       fio_json=str(local_json), events=events,
                       status="ok" if results and not results[0].error else "error")


def _console_since(vm: VM, offset: int) -> str:
    try:
        with open(vm.console, "rb") as fh:
            fh.seek(offset)
            return fh.read().decode(errors="replace")
    except FileNotFoundError:
        return ""


def record(m: Measurement, rundir: RunDir, label: str, say: Say) -> None:
    """Append a measurement to ``<run>/measurements.jsonl`` and report it."""
    with open(rundir.path / "measurements.jsonl", "a") as fh:
        fh.write(json.dumps(m.as_dict(), default=str) + "\n")
    r = m.result
    say(f"  {label}: " + (f"{r.iops:.0f} IOPS, p99 {r.clat_p99_us or 0:.0f}us" if r else m.status))


def measure_filesystem(vm: VM, disk: Disk, fs: Filesystem, jobs: Sequence[FioJob], runs: int,
                       rundir: RunDir, *, kernel: str, say: Say = lambda m: None,
                       sample_interval: float | None = None) -> list[Measurement]:
    """mkfs+mount ``fs`` on ``disk``, run every job ``runs`` times, unmount.

    Results are appended to ``<run>/measurements.jsonl`` as they come."""
    dev = vm.device_for(disk)
    make_and_mount(vm, fs, dev, MOUNTPOINT)
    out: list[Measurement] = []
    try:
        for job in jobs:
            for i in range(runs):
                label = f"{kernel}-{fs.fstype}-{disk.kind}-{job.pattern}-{job.engine}-r{i}"
                m = run_fio_once(vm, job, rundir, label, kernel=kernel, fs=fs.fstype, disk=disk.kind,
                                 run_index=i, sample_interval=sample_interval)
                out.append(m)
                record(m, rundir, label, say)
    finally:
        if vm.alive and vm.ssh is not None:
            unmount(vm, MOUNTPOINT)
    return out
