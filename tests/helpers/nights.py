"""Two nights of a small plan in a synthetic results store and nightly book: the fixture the
nightly fold, KCIDB, resume and atomic-write tests share (``two_nights``), and its records."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.drivers.nightly.book import NightlyDB
from harness.drivers.nightly.fold import fold_night, group_of, verdict_rows
from harness.drivers.nightly.plans import load_plan_file
from harness.drivers.nightly.units import planned_units
from harness.results.store import Store

CELL = "ext4/nvme/unwritten-convert/libaio"


PLAN = f"""
kernels: [baseline@next]
baseline: baseline
fio: {{filesystems: [ext4], disks: [nvme], patterns: [unwritten-convert], engines: [libaio], repeats: 3}}
control: {{cells: ["{CELL}"]}}
"""


COMMITS = {1: {"baseline": "a" * 40, "baseline@next": "a" * 40},
           2: {"baseline": "a" * 40, "baseline@next": "b" * 40}}


def night_record(run_id: str, night: str, label: str, role: str, iops: float, *, root: Path, commit: str) -> dict:
    cell_spec = {"fs": {"fstype": "ext4", "mkfs": ["mkfs.ext4", "{dev}"], "mount_options": ""}, "disk": "nvme",
                 "runs": 1, "job": {"pattern": "unwritten-convert", "engine": "libaio", "iodepth": 32,
                                    "numjobs": 1, "bs": "4k", "size": "32m", "runtime": 5, "ramp_time": 0,
                                    "directory": "/mnt/scratch/fio", "rendered": "[job]"}}
    return {"run_id": run_id, "run_dir": str(root / run_id), "group": group_of(night), "front_end": "nightly",
            "label": label, "role": role, "status": "done", "started": f"2026-11-2{night[-1]}T01:00:{run_id[-2:]}+0000",
            "finished": "2026-11-29T01:01:00+0000", "remaining": [],
            "spec": {"kernel": {"name": "baseline", "key": f"k-{commit[:4]}", "commit": commit,
                                "config_base": "defconfig", "release": "6.1.0", "patches": []},
                     "image": {"key": "img"}, "accel": "tcg", "workload": {"kind": "fio", "cells": [cell_spec]}},
            "measurements": [{"cell": CELL, "fs": "ext4", "disk": "nvme", "pattern": "unwritten-convert",
                              "engine": "libaio", "run_index": 0, "status": "ok", "iops": iops,
                              "clat_p99_us": 1e6 / iops}],
            "sysrq_summary": ["dio-sync: active 1/1"] if role == "evidence" else []}


def fill_night(store: Store, db: NightlyDB, plan, night: str, n: int, root: Path, new_iops: list[float]) -> None:
    db.start(night, plan.name, "sha", COMMITS[n])
    units = planned_units(plan)
    db.record_units(night, {u.label: u.info() for u in units})
    iops = {"base": [2000.0, 2100.0, 1950.0], "new": new_iops, "control": [2050.0, 1990.0, 2080.0]}
    for u in units:
        commit = COMMITS[n][u.kref]
        store.add_run(night_record(f"{night}-{u.label[-12:]}-{u.run_index:02d}", night, u.label, u.role,
                             iops[u.role][u.run_index], root=root, commit=commit))


@pytest.fixture
def two_nights(tmp_path):
    p = tmp_path / "t.yaml"
    p.write_text(PLAN)
    plan = load_plan_file(p)
    store = Store(tmp_path / "store.sqlite")
    db = NightlyDB(tmp_path / "nightly.sqlite")
    fill_night(store, db, plan, "n1", 1, tmp_path, [2010.0, 2060.0, 1980.0])
    res1 = fold_night(store, db, plan, "n1", COMMITS[1])
    store.add_verdicts(group_of("n1"), verdict_rows(res1, plan))
    db.finish("n1", "done", res1.verdict, res1.exit_code, "")
    fill_night(store, db, plan, "n2", 2, tmp_path, [560.0, 580.0, 572.0])
    yield plan, store, db, res1
    store.close()
