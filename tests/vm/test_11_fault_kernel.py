"""Fault injection with a kernel whose deferred AIO O_DSYNC completions never finish
(kernels/hang-dsync.yaml: iomap_dio_complete_work sleeps uninterruptibly for IOCB_DSYNC).

The harness must report the run as hung with the console's hung-task report and a sysrq-w
summary naming the stuck work item, kill the VM within the deadline, keep the hung boot's
console, and run the remaining cells (ocfs2 does direct I/O through fs/direct-io.c, not iomap, so
it completes) in a fresh boot."""

import json
import time
from pathlib import Path

import pytest

from harness.executors.base import RunContext
from harness.executors.local import execute
from harness.run.plan import fio_cell, fio_spec
from harness.run.testbed import Testbed

pytestmark = pytest.mark.vm
DEADLINE = 75  # past khungtaskd's 30 s period twice (hung_task_timeout_secs=30 in harness.config)


def test_never_finishing_dsync_completion_is_a_hang_with_evidence(tmp_path):
    bed = Testbed(["hang-dsync"]).prepare()
    hung = fio_cell("ext4", "nvme", "unwritten-convert", "libaio", iodepth=8, size="8m", runtime=3)
    rest = fio_cell("ocfs2", "nvme", "append-extend", "libaio", iodepth=8, size="8m", runtime=3)
    spec = fio_spec(bed, "hang-dsync", [hung, rest], disk_size="1G", label="hang-dsync", deadline_s=DEADLINE)
    t0 = time.monotonic()
    first, second = execute([spec], RunContext(tmp_path))
    # the hung boot: reported as hung, killed within the deadline (+ boot, evidence and shutdown)
    assert first.status == "hang" and [m.status for m in first.measurements] == ["hang"]
    assert time.monotonic() - t0 < 2 * 240 + DEADLINE + 180
    titles = [e.title for e in first.events if e.kind == "hung_task"]
    assert titles, f"no hung-task report on the console: {[e.title for e in first.events]}"
    summary = "\n".join(first.sysrq_summary)
    assert "iomap_dio_complete_work" in summary and "dio/nvme0n1" in summary, summary
    console = Path(first.run_dir) / "console.log"
    assert "blocked for more than" in console.read_text(errors="replace")  # the hung boot's console kept
    assert list((Path(first.run_dir) / "sysrq").glob("hang-*-wt-*.txt"))
    saved = json.loads((Path(first.run_dir) / "record.json").read_text())
    assert saved["status"] == "hang" and saved["remaining"] == [rest.id]
    # the remaining cell ran in a fresh boot with a run directory of its own
    assert second.run_dir != first.run_dir and second.status == "done"
    assert [(m.cell, m.status) for m in second.measurements] == [(rest.id, "ok")]
