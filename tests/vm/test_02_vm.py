"""Real QEMU guests: image, accelerator, disks, SSH, QMP, console, and no leaked processes."""

import json
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
from harness.image.build import Image
from harness.image.keys import generate_ed25519
from harness.run.boot import booted
from harness.vm.machine import VM, VMConfig
from harness.vm.ssh import SSH, GuestCommandError, HostKeyMismatch, TransferError

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


def test_ssh_pins_the_host_key_the_image_build_recorded(testbed, image, tmp_path):
    assert image.host_key and image.host_key.startswith("ssh-ed25519 ")
    assert json.loads((image.dir / "metadata.json").read_text())["host_key"] == image.host_key
    pinned = image.host_key.split()[:2]
    with booted(testbed, "baseline", tmp_path / "run") as vm:
        assert vm.ssh.host_key is not None
        offered = vm.ssh.client.get_transport().get_remote_server_key()
        assert [offered.get_name(), offered.get_base64()] == pinned
        assert vm.run(["cat", "/etc/ssh/ssh_host_ed25519_key.pub"]).stdout.split()[:2] == pinned
        # the same guest, expected to have another key: refused, at once, with a clear error
        wrong = SSH(vm.port, image.ssh_key, host_key=generate_ed25519(tmp_path / "other"))
        t0 = time.monotonic()
        with pytest.raises(HostKeyMismatch, match="host key did not match") as e:
            wrong.try_connect(30)
        assert time.monotonic() - t0 < 30
        assert f"[127.0.0.1]:{vm.port}" in str(e.value)
        right = SSH(vm.port, image.ssh_key, host_key=image.host_key)
        assert right.try_connect(30) and right.run(["true"]).ok
        right.close()


def test_a_boot_whose_guest_has_another_host_key_fails_clearly(testbed, image, baseline_kernel, accel,
                                                                tmp_path):
    """An image entry whose recorded host key is not the guest's: the boot stops with HostKeyMismatch."""
    fake = tmp_path / "image"
    fake.mkdir()
    for f in ("base.qcow2", "id_ed25519", "metadata.json"):
        (fake / f).symlink_to(image.dir / f)
    (fake / "host_ed25519.pub").write_text(generate_ed25519(tmp_path / "other") + "\n")
    cfg = VMConfig(kernel=baseline_kernel.bzimage, image=Image(image.name, image.key, fake, True),
                   accel=accel, run_dir=tmp_path / "run", boot_timeout=300)
    with pytest.raises(HostKeyMismatch, match="host key did not match"):
        with VM(cfg):
            pass
    assert not qemu_pids_for(tmp_path / "run")


def test_guest_command_deadline_and_stalled_transfers(testbed, tmp_path):
    with booted(testbed, "baseline", tmp_path / "run") as vm:
        t0 = time.monotonic()
        with pytest.raises(GuestCommandError) as e:
            vm.run("echo started; sleep 60", timeout=3)
        assert time.monotonic() - t0 < 15
        assert e.value.result is None and e.value.timeout == 3 and "started" in str(e.value)
        with pytest.raises(GuestCommandError) as e:
            vm.run("exit 4")
        assert e.value.result is not None and e.value.result.status == 4
        vm.run(["mkfifo", "/tmp/stuck", "/tmp/stuck-w"])   # opening one blocks the guest's sftp-server
        t0 = time.monotonic()
        with pytest.raises(TransferError, match="/tmp/stuck") as e:
            vm.get("/tmp/stuck", tmp_path / "stuck", stall=3)
        assert "stalled" in str(e.value) and time.monotonic() - t0 < 20
        assert not (tmp_path / "stuck").exists()
        src = tmp_path / "small.txt"
        src.write_text("after the stall\n")
        with pytest.raises(TransferError, match="/tmp/stuck-w"):
            vm.put(src, "/tmp/stuck-w", stall=3)
        vm.put(src, "/tmp/small.txt")                  # a fresh SFTP session works
        vm.get("/tmp/small.txt", tmp_path / "back.txt")
        assert (tmp_path / "back.txt").read_text() == "after the stall\n"
        assert vm.run(["true"]).ok


def test_per_command_overhead(testbed, tmp_path):
    """50 x `true` over the VM's SSH: the per-command cost of the harness's guest commands."""
    with booted(testbed, "baseline", tmp_path / "run") as vm:
        vm.run(["true"])
        times = []
        for _ in range(50):
            t0 = time.monotonic()
            assert vm.run(["true"]).status == 0
            times.append(time.monotonic() - t0)
    times.sort()
    print(f"50 x true: median {times[25] * 1000:.0f} ms, min {times[0] * 1000:.0f} ms, "
          f"max {times[-1] * 1000:.0f} ms")
    assert times[25] < 2.0      # TCG on 2 busy cores; a poll loop or a reconnect per command shows here
