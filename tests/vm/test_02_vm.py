"""Real QEMU guests: image, accelerator, disks, SSH, QMP, console, and no leaked processes."""

import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from harness.errors import BootError
from harness.run.boot import booted

pytestmark = pytest.mark.vm
ROOT = Path(__file__).resolve().parents[2]


def qemu_pids_for(run_dir: Path) -> list[int]:
    out = subprocess.run(["pgrep", "-f", f"qemu-system-x86_64.*{run_dir}"], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def test_image_is_cached_with_private_key_outside_repo(image):
    assert image.qcow2.exists()
    mode = stat.S_IMODE(image.ssh_key.stat().st_mode)
    assert mode == 0o600
    assert ROOT not in image.ssh_key.parents
    info = subprocess.run(["qemu-img", "info", str(image.qcow2)], capture_output=True, text=True).stdout
    assert "file format: qcow2" in info


def test_boot_with_nvme_and_virtio_disks(testbed, image, tmp_path):
    base_mtime = image.qcow2.stat().st_mtime_ns
    with booted(testbed, "baseline", tmp_path, disks=["nvme:1G", "virtio:1G"]) as vm:
        cfg = vm.cfg
        assert vm.boot_seconds and vm.boot_seconds < cfg.boot_timeout
        assert vm.status() == "running"
        nvme, virtio = (vm.device_for(d) for d in cfg.disks)
        assert nvme.startswith("/dev/nvme") and virtio.startswith("/dev/vd")
        assert vm.run(["cat", f"/sys/block/{virtio[5:]}/serial"]).stdout.strip() == "khvirtio1"
        size = int(vm.run(["blockdev", "--getsize64", nvme]).stdout)
        assert size == 1 << 30
        res = vm.run("echo out; echo err >&2; exit 3", check=False)
        assert (res.status, res.stdout, res.stderr) == (3, "out\n", "err\n")
        assert vm.run(["uname", "-r"]).stdout.strip().startswith("6.1.")
        # copy both ways
        src = tmp_path / "payload.bin"
        src.write_bytes(os.urandom(100_000))
        vm.put(src, "/tmp/payload.bin")
        vm.run(["cp", "/tmp/payload.bin", "/tmp/back.bin"])
        vm.get("/tmp/back.bin", tmp_path / "back.bin")
        assert (tmp_path / "back.bin").read_bytes() == src.read_bytes()
        # console streams to the run directory
        assert "Linux version 6.1" in vm.console_text()
        pid = vm.proc.pid
    assert vm.proc.poll() is not None
    assert not qemu_pids_for(tmp_path)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert image.qcow2.stat().st_mtime_ns == base_mtime  # the base image never changes


def test_boot_error_carries_the_panic_line(testbed, tmp_path):
    t0 = time.monotonic()
    with pytest.raises(BootError) as e:
        with booted(testbed, "baseline", tmp_path, cmdline="init=/nonexistent"):
            pass
    assert "Kernel panic - not syncing" in (e.value.panic_line or "")
    assert "/nonexistent" in str(e.value)
    assert str(tmp_path / "console.log") in str(e.value)
    assert time.monotonic() - t0 < 240
    assert not qemu_pids_for(tmp_path)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_no_qemu_outlives_the_harness(testbed, accel, tmp_path, sig):
    """Ctrl-C (SIGINT) and even SIGKILL of the harness leave no QEMU process behind."""
    script = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from harness.run.boot import booted
        from harness.run.testbed import Testbed
        bed = Testbed(["baseline"], accel={accel.name!r}, say=lambda m: None).prepare()
        with booted(bed, "baseline", Path({str(tmp_path)!r}), disks=["nvme:256M"]) as vm:
            print("READY", flush=True)
            time.sleep(600)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        deadline = time.monotonic() + 300
        line = ""
        while time.monotonic() < deadline and "READY" not in line:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                break
        assert "READY" in line, "the child never booted its VM"
        assert qemu_pids_for(tmp_path), "no QEMU found for the child's VM"
        proc.send_signal(sig)
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
    deadline = time.monotonic() + 30
    while qemu_pids_for(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not qemu_pids_for(tmp_path)
