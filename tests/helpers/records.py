"""Boot records for unit tests: a typed BootRecord of a spec (``record``) and a realistic record
in its JSON form as the store takes it (``make_record``)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from harness.evidence.events import Event
from harness.run.records import BootRecord, EvidenceRef, MeasurementRecord, XfstestRecord


def record(spec, run_id="r1", role=None, iops=(1000.0,), status="done", cell=None, run_index=0):
    cell = cell or spec.workload.cells[0].id
    fs, disk, pattern, engine = cell.split("/")
    ms = tuple(MeasurementRecord(cell, fs, disk, pattern, engine, run_index + i, "ok", iops=v, bw_kib_s=v * 4,
                                 clat_p50_us=100.0, clat_p99_us=1e6 / v, clat_p999_us=2e6 / v, fio_json=f"fio/{i}.json")
               for i, v in enumerate(iops))
    return BootRecord(run_id=run_id, run_dir=f"/tmp/{run_id}", spec=dataclasses.replace(spec, role=role,
                      run_index=run_index), status=status, started="2026-11-29T18:00:00+0000",
                      finished="2026-11-29T18:01:00+0000", boot_seconds=7.5, measurements=ms,
                      xfstests=(XfstestRecord("xfs_4k", "generic/001", "pass", 3.0),),
                      events=(Event("hung_task", "INFO: task hung in jbd2_log_wait_commit", 10, "INFO: task"),),
                      evidence=(EvidenceRef("sysrq/hang-x-wt-1.txt", "sysrq"),), failures=("x",),
                      sysrq_summary=("dio-sync: active 1/1",), group="g1", front_end="pytest")


def make_record(run_id: str = "20261129-181500-fio-baseline-ext4-nvme-3fa2", *, root: Path = Path("/r"),
                group: str | None = "suite-20261129-181400-patched", kernel: str = "v6.8-patched",
                role: str | None = "new", status: str = "done", started: str = "2026-11-29T18:15:00+0000",
                iops: tuple[float, ...] = (8979.0, 9010.5)) -> dict:
    """A realistic boot record in its JSON form."""
    cell = "ext4/nvme/unwritten-convert/libaio"
    return {
        "run_id": run_id, "run_dir": str(root / run_id), "group": group, "front_end": "pytest",
        "label": "fio baseline", "role": role, "status": status, "started": started,
        "finished": "2026-11-29T18:16:02+0000", "boot_seconds": 7.3, "reproduces": None,
        "spec": {"kernel": {"name": kernel, "key": f"{kernel}-k3y", "commit": "0123abcd" * 5},
                 "image": {"key": "debian12-img1", "name": "debian12"}, "accel": "kvm",
                 "workload": {"kind": "fio", "jobs": [cell]}, "disks": [{"kind": "nvme", "size": "8G"}]},
        "measurements": [
            {"cell": cell, "fs": "ext4", "disk": "nvme", "pattern": "unwritten-convert", "engine": "libaio",
             "run_index": i, "status": "ok", "iops": v, "bw_kib_s": v * 4, "clat_p50_us": 110.0,
             "clat_p99_us": 250.5, "clat_p999_us": 900.0, "fio_json": f"fio/run{i}.json"}
            for i, v in enumerate(iops)],
        "xfstests": [
            {"section": "xfs_4k", "test": "generic/001", "status": "pass", "duration_s": 3.0,
             "message": None, "artifacts": None},
            {"section": "xfs_4k", "test": "generic/475", "status": "fail", "duration_s": 41.5,
             "message": "output mismatch (see generic/475.out.bad)", "artifacts": "tests/generic-475"}],
        "events": [{"kind": "hung_task", "title": "INFO: task hung in jbd2_log_wait_commit",
                    "line": 1234, "stack": ["jbd2_log_wait_commit", "ext4_sync_file"]}],
        "evidence": [{"path": "sysrq/hang-x-wt-181512.txt", "what": "sysrq"},
                     {"path": "console.log", "what": "console"}],
        "failures": [],
    }
