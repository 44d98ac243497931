"""A boot lost to the host is replaced (kharness issue 24): the test kills the first boot's QEMU
once the guest kernel is printing, before SSH answers (an injected fault, as the OOM killer or an
emulator crash would end it). The run records that boot as lost to the host, boots again, and
still measures its cell; the table has the measurement and the lost boot is listed apart."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers.proc import qemus_under

pytestmark = pytest.mark.vm
ROOT = Path(__file__).resolve().parents[2]


def qemu_of(run_root: Path) -> tuple[int, Path] | None:
    """The PID of a QEMU whose command line names a run directory under ``run_root``, and it."""
    root = str(run_root)
    for pid, argv in qemus_under(run_root):
        for s in (a.decode(errors="replace") for a in argv):
            if root + "/" in s:
                return pid, run_root / s[s.index(root) + len(root) + 1:].split("/")[0]
    return None


def test_a_boot_whose_qemu_is_killed_is_replaced_and_the_cell_measured(tmp_path):
    runs = tmp_path / "runs"
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "--store", str(tmp_path / "s.sqlite"), "run", "fio",
                             "--kernel", "baseline", "--fs", "ext4", "--disk", "nvme", "--pattern",
                             "randwrite-overwrite", "--engine", "libaio", "--size", "16m", "--runtime", "3",
                             "--results-dir", str(runs)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    killed = None
    deadline = time.monotonic() + 600
    try:
        while killed is None and time.monotonic() < deadline and proc.poll() is None:
            found = qemu_of(runs)
            if found:
                pid, run_dir = found
                console = run_dir / "console.log"
                if console.exists() and "Linux version" in console.read_text(errors="replace"):
                    os.kill(pid, signal.SIGKILL)
                    killed = run_dir
            time.sleep(0.05)
        out, _ = proc.communicate(timeout=900)
    finally:
        if proc.poll() is None:
            proc.kill()
    print(out[-4000:])
    assert killed is not None, "never saw the first boot's QEMU printing"
    assert proc.returncode == 0, out[-3000:]
    lost = json.loads((killed / "record.json").read_text())
    assert lost["status"] == "boot-failed" and lost["lost"].startswith("QEMU ended by signal 9")
    others = [json.loads(p.read_text()) for p in runs.glob("*/record.json") if p.parent != killed]
    assert len(others) == 1 and others[0]["status"] == "done" and not others[0].get("lost")
    (m,) = others[0]["measurements"]
    assert m["status"] == "ok" and m["iops"] > 0
    assert "lost to the host" in out
