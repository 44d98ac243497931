"""Choose the accelerator: KVM only if /dev/kvm opens and a canary boot prints kernel output."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ..paths import cache_dir
from .process import popen_qemu, stop_process

CANARY_SECONDS = 20.0


@dataclass(frozen=True)
class Accel:
    """The chosen accelerator and the reason, printed to the user."""

    name: str      # "kvm" or "tcg"
    reason: str

    @property
    def qemu_args(self) -> list[str]:
        if self.name == "kvm":
            return ["-accel", "kvm", "-cpu", "host"]
        return ["-accel", "tcg,thread=multi", "-cpu", "max"]


def _cpu_virt_flags() -> str:
    try:
        flags = next(l for l in Path("/proc/cpuinfo").read_text().splitlines() if l.startswith("flags"))
    except (OSError, StopIteration):
        return "unknown"
    found = [f for f in ("vmx", "svm") if f" {f}" in flags]
    return ",".join(found) or "none"


def canary_boot(kernel: Path, accel: str, seconds: float = CANARY_SECONDS) -> bool:
    """Boot ``kernel`` with no root disk; True if it prints 'Linux version' within ``seconds``."""
    with tempfile.TemporaryDirectory(prefix="kharness-canary-") as td:
        log = Path(td) / "console.log"
        argv = ["qemu-system-x86_64", "-accel", accel, "-m", "256", "-nodefaults", "-display", "none",
                "-no-reboot", "-kernel", str(kernel), "-append", "console=ttyS0 panic=-1",
                "-chardev", f"file,id=c0,path={log}", "-serial", "chardev:c0"]
        proc = popen_qemu(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                if log.exists() and b"Linux version" in log.read_bytes():
                    return True
                if proc.poll() is not None:
                    return False
                time.sleep(0.2)
            return False
        finally:
            stop_process(proc)


def choose_accel(kernel: Path, override: str | None = None) -> Accel:
    """Pick kvm or tcg. The probe result is cached for this host boot (boot_id)."""
    if override:
        if override not in ("kvm", "tcg"):
            raise ValueError(f"--accel must be kvm or tcg, not {override!r}")
        return Accel(override, f"{override} requested with --accel")
    if not os.path.exists("/dev/kvm"):
        return Accel("tcg", "no /dev/kvm: using TCG (software emulation; expect ~10x slower guests)")
    try:
        fd = os.open("/dev/kvm", os.O_RDWR)
        os.close(fd)
    except OSError as e:
        return Accel("tcg", f"/dev/kvm does not open ({e.strerror}): using TCG")
    boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    memo = cache_dir() / "accel-probe.json"
    try:
        cached = json.loads(memo.read_text())
        if cached.get("boot_id") == boot_id:
            return Accel(cached["name"], cached["reason"] + " (probed earlier this host boot)")
    except (OSError, ValueError, KeyError):
        pass
    if canary_boot(kernel, "kvm"):
        accel = Accel("kvm", "/dev/kvm opens and a canary boot printed kernel output: using KVM")
    else:
        accel = Accel("tcg", f"/dev/kvm opens but a KVM canary boot printed nothing in "
                             f"{CANARY_SECONDS:.0f}s (CPU virtualization flags: {_cpu_virt_flags()}): "
                             f"falling back to TCG (-accel tcg,thread=multi)")
    memo.write_text(json.dumps({"boot_id": boot_id, "name": accel.name, "reason": accel.reason}))
    return accel
