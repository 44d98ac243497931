"""One fio measurement in a booted guest.

Render the job, send it in with the counters script (one SSH round trip, which also creates the
job directory on the scratch filesystem, readies tracefs, and so is under the deadline too), run
fio with JSON+ on stdout (the measured job snapshots the guest's counters as it starts and after
its last I/O: :mod:`harness.workloads.counters`), keep the JSON in the run directory, parse it,
then fetch the counters in one more round trip. Past the deadline the hang handler takes over.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path
from typing import Any

from ..errors import WorkloadError
from ..evidence.capture import Capture, capture_sysrq
from ..vm import hostload
from ..vm.machine import VM
from ..vm.ssh import GuestCommandError
from ..workloads.counters import deltas, guest_script, kept, parse_capture, per_kwrite
from ..workloads.fio import FioJob, FioResult, calibration_iops, fio_argv, measured_jobs, parse_jobs, render_job
from .hang import console_offset, handle_hang
from .records import EvidenceRef, MeasurementRecord
from .spec import FioCell, FioJobSpec, SysrqSampling

GUEST_DIR = "/root/kharness"


def fio_job(spec: FioJobSpec, tag: str) -> FioJob:
    """The FioJob a job spec describes, for the run tagged ``tag``."""
    return FioJob(pattern=spec.pattern, directory=spec.directory, engine=spec.engine,
                  iodepth=spec.iodepth, numjobs=spec.numjobs, bs=spec.bs, size=spec.size,
                  runtime=spec.runtime, ramp_time=spec.ramp_time, tag=tag, calibrate=spec.calibrate)


class Sampler:
    """sysrq captures over SSH while a workload runs: once ``marker`` exists in the guest (the
    measured fio job touches it as it starts; file layout and prep jobs can take many seconds on
    a busy TCG host), first after ``delay``, then every ``interval``. Failures end the sampling
    quietly: evidence is best effort."""

    def __init__(self, vm: VM, sampling: SysrqSampling, out_dir: Path, label: str, marker: str = ""):
        self.vm, self.sampling, self.out_dir, self.label, self.marker = vm, sampling, out_dir, label, marker
        self.captures: list[Capture] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _started(self) -> bool:
        """Wait (until stopped) for the marker; True once it exists."""
        while self.marker and not self._stop.is_set():
            try:
                if self.vm.run(["test", "-e", self.marker], timeout=10, check=False).status == 0:
                    return True
            except Exception:
                return False
            self._stop.wait(0.5)
        return not self._stop.is_set()

    def _loop(self) -> None:
        if not self._started():
            return
        wait, n = self.sampling.delay, 0
        while not self._stop.wait(wait):
            try:
                self.captures.append(capture_sysrq(self.vm, self.sampling.keys, via="ssh",
                                                   out_dir=self.out_dir, label=f"{self.label}-s{n:02d}"))
            except Exception:
                return
            n += 1
            if self.sampling.interval is None:
                return
            wait = self.sampling.interval

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(60)


def _device(vm: VM, cell: FioCell) -> str:
    """The block device name (``nvme0n1``) of the cell's disk."""
    disk = next((d for d in vm.cfg.disks if d.kind == cell.disk), None)
    if disk is None:
        raise WorkloadError(f"cell {cell.id}: the VM has no {cell.disk} disk")
    return vm.device_for(disk).removeprefix("/dev/")


def counted(vm: VM, script: str, out: Path, fio: FioResult) -> dict[str, Any]:
    """The counted metrics of a finished job (fields of MeasurementRecord), from the snapshots
    its hooks took and the trace; the text is kept in ``out`` (the trace's head only). Best
    effort: a guest that cannot say gives no counters, and the reason in ``out``."""
    try:
        text = vm.run(["sh", script, "collect"], timeout=300).stdout
        out.write_text(kept(text))
        capture = parse_capture(text)
    except (GuestCommandError, WorkloadError) as e:
        out.write_text(f"kharness: no counters: {e}\n")
        return {}
    raw = {**deltas(capture), "fio_writes": float(fio.total_ios)}
    return {**per_kwrite(raw, fio.total_ios), "counters": raw}


def measure(vm: VM, cell: FioCell, run_index: int, run_dir: Path, *,
            sampling: SysrqSampling | None = None, deadline: float | None = None, trace: bool = True
            ) -> tuple[MeasurementRecord, list[EvidenceRef], list[str]]:
    """Run ``cell`` once; return its record (with the counted metrics), evidence files and
    sysrq summary lines. ``trace``: record the dio workqueue's items through tracefs.

    A fio that exits non-zero gives a record with status ``error`` (its output kept); a fio
    past its deadline raises HangError from the hang handler (the VM is then dead)."""
    label = f"{cell.cell_id.slug}-r{run_index}"
    fio_dir = run_dir / "fio"
    fio_dir.mkdir(parents=True, exist_ok=True)
    marker = f"{GUEST_DIR}/{label}.started" if sampling else ""
    script = f"{GUEST_DIR}/{label}.counters.sh"
    job = dataclasses.replace(fio_job(cell.job, tag=f"r{run_index}"), marker=marker, counters=script)
    script_text = guest_script(_device(vm, cell), f"{GUEST_DIR}/{label}", trace, cell.fs.fstype)
    jobfile = fio_dir / f"{label}.fio"
    jobfile.write_text(render_job(job))
    local_json = fio_dir / f"{label}.json"
    since = console_offset(vm)
    limit = deadline or cell.job.hang_deadline()
    t_end = time.monotonic() + limit
    guest_job = f"{GUEST_DIR}/{label}.fio"
    base: dict[str, Any] = dict(cell=cell.id, fs=cell.fs.fstype, disk=cell.disk, pattern=cell.job.pattern,
                engine=cell.job.engine, run_index=run_index, fio_json=f"fio/{local_json.name}")
    sampler = Sampler(vm, sampling, run_dir / "sysrq", label, marker) if sampling else None
    try:
        vm.run(["sh", "-c", 'mkdir -p "$1" "$2" && rm -f "$4" && cat > "$3" && printf %s "$6" > "$5" && sh "$5" setup',
                "sh", GUEST_DIR, job.directory, guest_job, marker or f"{GUEST_DIR}/.none", script, script_text],
               stdin=jobfile.read_text(), timeout=min(60.0, limit))
        if sampler:
            sampler.__enter__()
        pid = vm.proc.pid if vm.proc is not None else 0
        load_before = hostload.sample(pid)
        try:
            res = vm.run(fio_argv(guest_job), timeout=max(10.0, t_end - time.monotonic()))
        finally:
            if sampler:
                sampler.__exit__()
        host_free = hostload.free_share(load_before, hostload.sample(pid))
    except GuestCommandError as e:
        if e.result is not None:  # fio exited non-zero: keep what it wrote
            local_json.write_text(e.result.stdout + e.result.stderr)
            return MeasurementRecord(status="error", error=str(e).splitlines()[0], **base), [], []
        raise handle_hang(vm, what=f"fio {cell.id} run {run_index}", limit=limit,
                          evidence_dir=run_dir / "sysrq", label=label, since=since) from None
    local_json.write_text(res.stdout)
    try:
        jobs = parse_jobs(res.stdout, source=str(local_json))
        r = measured_jobs(jobs, res.stdout, str(local_json))[0]
    except WorkloadError as e:
        return MeasurementRecord(status="error", error=str(e).splitlines()[0], **base), [], []
    evidence, summary = [], []
    for cap in (sampler.captures if sampler else []):
        evidence += [EvidenceRef(str(p.relative_to(run_dir)), "sysrq") for p in (cap.raw_path, cap.json_path) if p]
        summary += cap.summary()
    (run_dir / "counters").mkdir(exist_ok=True)
    extra = counted(vm, script, run_dir / "counters" / f"{label}.txt", r)
    rec = MeasurementRecord(status="ok" if not r.error else "error", iops=r.iops, bw_kib_s=r.bw_kib_s,
                            clat_p50_us=r.clat_p50_us, clat_p99_us=r.clat_p99_us,
                            clat_p999_us=r.clat_p999_us, error=f"fio errno {r.error}" if r.error else None,
                            calib_iops=calibration_iops(jobs), host_free=host_free, **base, **extra)
    return rec, evidence, summary

