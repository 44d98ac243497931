"""A QEMU VM as a context manager: boot, wait for SSH, run commands, copy files, shut down.

The serial console streams to ``console.log`` in the run directory from the first byte. QEMU is
started so that it dies with the harness (see process.py), and ``shutdown`` escalates from ACPI
poweroff to QMP quit to SIGKILL, so a hung guest never hangs the harness.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from qemu.qmp.legacy import QEMUMonitorProtocol

from ..errors import BootError, HarnessError, VMError
from ..image.build import Image
from ..util import run, tail
from .accel import Accel
from .disks import Disk, disk_args
from .process import popen_qemu, stop_process
from .qemu_opts import qemu_path
from .ssh import SSH, STALL_SECONDS, TRANSFER_SECONDS, Result

PANIC = re.compile(r"(Kernel panic - not syncing:.*|end Kernel panic.*)")
# trace_event=: the dio workqueue counters' events (harness.workloads.counters), enabled while
# only the boot CPU runs (early_enable_events() in kernel/trace/trace_events.c, before
# smp_init()). Enabling them later flips static keys by patching text through an int3, which
# another vCPU under multi-threaded TCG can take as a stray breakpoint and oops. A kernel
# without event tracing ignores it.
TRACE_EVENTS = ("workqueue:workqueue_queue_work,workqueue:workqueue_execute_start,"
                "workqueue:workqueue_execute_end")
BASE_CMDLINE = ("root=/dev/vda rw console=ttyS0,115200 panic=-1 ip=dhcp net.ifnames=0 "
                f"mitigations=off systemd.show_status=false trace_event={TRACE_EVENTS}")
# What one guest may take from the host (a spec from elsewhere asks for these; see
# docs/threat-model.md): MiB of memory and virtual CPUs.
MEMORY_MB = (128, 16384)
CPUS = (1, 64)


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1 (QEMU binds it; a race is retried by VM.start)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class VMConfig:
    """Everything that defines one VM boot."""

    kernel: Path
    image: Image
    accel: Accel
    run_dir: Path
    disks: list[Disk] = field(default_factory=list)
    memory_mb: int = 2048
    cpus: int = 2
    cmdline: str = ""
    boot_timeout: float = 180.0
    icount: Icount | None = None   # TCG with deterministic guest time (None: multi-threaded TCG)


ICOUNT_SHIFT = (0, 10)


@dataclass(frozen=True)
class Icount:
    """QEMU's ``-icount shift=N,sleep=on|off``: guest time advances 2**N ns per instruction
    executed instead of with the host's clock (single-threaded TCG only). With ``sleep`` off an
    idle guest's clock jumps to its next timer instead of waiting in real time."""

    shift: int
    sleep: bool = True

    def qemu_args(self) -> list[str]:
        check_icount_shift(self.shift)
        return ["-accel", "tcg,thread=single", "-cpu", "max",
                "-icount", f"shift={self.shift},sleep={'on' if self.sleep else 'off'}"]


def check_icount_shift(shift: object) -> None:
    """HarnessError unless ``shift`` is an integer within ICOUNT_SHIFT."""
    low, high = ICOUNT_SHIFT
    if not isinstance(shift, int) or isinstance(shift, bool) or not low <= shift <= high:
        raise HarnessError(f"icount shift {shift!r}: want an integer from {low} to {high}")


def check_vm_size(memory_mb: object, cpus: object) -> None:
    """HarnessError unless memory (MiB) and CPUs are integers within MEMORY_MB and CPUS."""
    for what, value, (low, high) in (("memory (MiB)", memory_mb, MEMORY_MB), ("cpus", cpus, CPUS)):
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise HarnessError(f"VM {what} {value!r}: want an integer from {low} to {high}")


def qemu_argv(cfg: VMConfig, overlay: Path, scratch: list[Path], port: int, qmp: Path,
              console: Path) -> list[str]:
    """The full QEMU command line for ``cfg``.

    The user network is ``restrict=on``: the guest reaches neither the host (10.0.2.2 is the
    host's loopback otherwise) nor anything beyond it; only the SSH forward, bound to the host's
    127.0.0.1, carries traffic (slirp's tcp_input drops any other connection the guest opens,
    while DHCP is still answered). Paths go through qemu_path (commas doubled)."""
    check_vm_size(cfg.memory_mb, cfg.cpus)
    if cfg.icount is not None and cfg.accel.name != "tcg":
        raise HarnessError(f"icount needs TCG, not {cfg.accel.name}")
    accel = cfg.accel.qemu_args if cfg.icount is None else cfg.icount.qemu_args()
    argv = ["qemu-system-x86_64", "-name", "kharness", "-machine", "q35", *accel,
            "-smp", str(cfg.cpus), "-m", str(cfg.memory_mb), "-nodefaults", "-display", "none",
            "-no-reboot", "-kernel", str(cfg.kernel),
            "-append", " ".join(x for x in (BASE_CMDLINE, cfg.image.cmdline, cfg.cmdline) if x),
            "-chardev", f"file,id=con0,path={qemu_path(console)}", "-serial", "chardev:con0",
            "-qmp", f"unix:{qemu_path(qmp)},server=on,wait=off",
            "-netdev", f"user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:{int(port)}-:22",
            "-device", "virtio-net-pci,netdev=net0",
            "-drive", f"file={qemu_path(overlay)},if=none,id=root,format=qcow2,cache=unsafe,discard=unmap",
            "-device", "virtio-blk-pci,drive=root"]
    if any(d.kind == "scsi" for d in cfg.disks):
        argv += ["-device", "virtio-scsi-pci,id=scsi0"]
    for i, (disk, path) in enumerate(zip(cfg.disks, scratch)):
        argv += disk_args(disk, path, i)
    return argv


class VM:
    """One running guest. Use as ``with VM(cfg) as vm: vm.run([...])``."""

    def __init__(self, cfg: VMConfig):
        self.cfg = cfg
        self.run_dir = cfg.run_dir
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.console = self.run_dir / "console.log"
        # UNIX socket paths are limited to 108 bytes: keep the QMP socket in a short temp dir.
        self._sockdir = Path(tempfile.mkdtemp(prefix="kh-qmp-"))
        self.qmp_path = self._sockdir / "qmp.sock"
        self.proc: subprocess.Popen | None = None
        self.port: int | None = None
        self.ssh: SSH | None = None
        self._qmp: QEMUMonitorProtocol | None = None
        self.boot_seconds: float | None = None
        self.argv: list[str] = []

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Create the overlay and scratch disks and launch QEMU (retrying if the port is taken)."""
        overlay = self.run_dir / "root-overlay.qcow2"
        run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b",
             str(self.cfg.image.qcow2.absolute()), str(overlay)], timeout=60)
        scratch = []
        for i, d in enumerate(self.cfg.disks):
            p = self.run_dir / f"scratch{i}-{d.kind}.raw"
            with open(p, "wb") as fh:
                fh.truncate(d.size_bytes)
            scratch.append(p)
        for _attempt in range(5):
            self.port = free_port()
            self.argv = qemu_argv(self.cfg, overlay, scratch, self.port, self.qmp_path, self.console)
            (self.run_dir / "qemu-argv.json").write_text(json.dumps(self.argv, indent=1))
            qlog = open(self.run_dir / "qemu.log", "w")
            self.t_start = time.monotonic()
            self.proc = popen_qemu(self.argv, stdout=qlog, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL)
            qlog.close()
            # QEMU reports a taken hostfwd port at once and exits.
            for _ in range(20):
                if self.proc.poll() is not None or self.qmp_path.exists():
                    break
                time.sleep(0.1)
            if self.proc.poll() is None:
                return
            err = (self.run_dir / "qemu.log").read_text(errors="replace")
            if "host forwarding rule" in err or "Address already in use" in err:
                continue
            raise VMError(f"QEMU exited at start (exit {self.proc.returncode}): {err.strip()}",
                          console_log=self.console)
        raise VMError("QEMU could not bind a forwarding port on 127.0.0.1 after 5 attempts")

    def wait_ready(self, timeout: float | None = None) -> float:
        """Wait until SSH logs in; return seconds since QEMU started. Raises BootError on a
        panic, a QEMU exit or the deadline, with the console's last lines."""
        assert self.proc is not None and self.port is not None
        deadline = time.monotonic() + (timeout or self.cfg.boot_timeout)
        ssh = SSH(self.port, self.cfg.image.ssh_key, host_key=self.cfg.image.host_key)
        while time.monotonic() < deadline:
            panic = self.panic_line()
            if panic:
                self.kill()
                raise BootError("guest kernel panicked during boot", panic_line=panic,
                                console_tail=self.console_tail(), console_log=self.console)
            if self.proc.poll() is not None:
                raise BootError(f"QEMU exited during boot (exit {self.proc.returncode})",
                                panic_line=self.panic_line(), console_tail=self.console_tail(),
                                console_log=self.console)
            if ssh.try_connect(timeout=10, banner_wait=1):
                self.ssh = ssh
                self.boot_seconds = time.monotonic() - self.t_start
                return self.boot_seconds
            time.sleep(0.2)
        tail_ = self.console_tail()
        self.kill()
        raise BootError(f"guest did not answer SSH within {timeout or self.cfg.boot_timeout:.0f}s",
                        panic_line=self.panic_line(), console_tail=tail_, console_log=self.console)

    def __enter__(self) -> VM:
        try:
            self.start()
            self.wait_ready()
        except BaseException:
            self.kill()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def shutdown(self, timeout: float = 10.0) -> None:
        """Poweroff, then QMP quit, then SIGKILL: each step with a deadline.

        The root disk is a throwaway overlay, so poweroff is immediate (``poweroff -ff`` over SSH
        after a sync: reboot(2) without asking init, so it works under kharness-init too; ACPI
        system_powerdown when SSH is gone) rather than a full systemd shutdown."""
        if not self.alive:
            self.kill()
            return
        assert self.proc is not None
        try:
            if self.ssh is not None:
                self.ssh.run("sync; poweroff -ff >/dev/null 2>&1 &", timeout=10, check=False)
            else:
                self.qmp("system_powerdown")
        except Exception:
            pass
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            try:
                self.qmp("quit")
                self.proc.wait(5)
            except Exception:
                pass
        self.kill()

    def kill(self) -> None:
        """Stop QEMU at once (SIGTERM then SIGKILL)."""
        if self.ssh:
            self.ssh.close()
            self.ssh = None
        if self.proc is not None:
            stop_process(self.proc, grace=2)
        self._cleanup()

    def _cleanup(self) -> None:
        if self._qmp is not None:
            try:
                self._qmp.close()
            except Exception:
                pass
            self._qmp = None
        shutil.rmtree(self._sockdir, ignore_errors=True)
        for p in self.run_dir.glob("scratch*.raw"):
            p.unlink(missing_ok=True)
        (self.run_dir / "root-overlay.qcow2").unlink(missing_ok=True)

    # -- control ---------------------------------------------------------------------------
    def qmp(self, command: str, **args: object) -> object:
        """Run a QMP command through qemu.qmp and return its result."""
        if self._qmp is None:
            mon = QEMUMonitorProtocol(str(self.qmp_path))
            mon.settimeout(10)
            mon.connect()
            self._qmp = mon
        return self._qmp.cmd(command, **args)

    def status(self) -> str:
        """QMP query-status: 'running', 'paused', ..."""
        return str(self.qmp("query-status")["status"])  # type: ignore[index]

    def send_keys(self, *keys: str, hold_ms: int = 200) -> None:
        """Press keys together through the emulated keyboard (QMP send-key)."""
        self.qmp("send-key", keys=[{"type": "qcode", "data": k} for k in keys], **{"hold-time": hold_ms})

    def sysrq_keyboard(self, key: str) -> None:
        """alt+sysrq+KEY through the PS/2 keyboard; works when the guest no longer answers SSH."""
        self.send_keys("alt", "sysrq", key)

    # -- guest access ----------------------------------------------------------------------
    def run(self, cmd: str | Sequence[str], *, timeout: float = 300, check: bool = True,
            stdin: str | None = None) -> Result:
        """Run a command in the guest over SSH, with a deadline."""
        if self.ssh is None:
            raise VMError("the guest is not reachable over SSH", self.console_tail(), self.console)
        return self.ssh.run(cmd, timeout=timeout, check=check, stdin=stdin)

    def put(self, local: Path, remote: str, *, timeout: float = TRANSFER_SECONDS,
            stall: float = STALL_SECONDS) -> None:
        """Copy a file to the guest; TransferError if it stalls or runs past ``timeout``."""
        if self.ssh is None:
            raise VMError("the guest is not reachable over SSH", self.console_tail(), self.console)
        self.ssh.put(local, remote, timeout=timeout, stall=stall)

    def get(self, remote: str, local: Path, *, timeout: float = TRANSFER_SECONDS,
            stall: float = STALL_SECONDS) -> None:
        """Copy a file from the guest; TransferError if it stalls or runs past ``timeout``."""
        if self.ssh is None:
            raise VMError("the guest is not reachable over SSH", self.console_tail(), self.console)
        self.ssh.get(remote, local, timeout=timeout, stall=stall)

    def device_for(self, disk: Disk) -> str:
        """The guest block device (/dev/...) of a scratch disk, found by its serial: lsblk (udev's
        database, else sysfs ``device/serial``), then sysfs ``serial``, where virtio-blk keeps it
        (``serial_show()`` in drivers/block/virtio_blk.c) and lsblk without udev does not look."""
        out = self.run(["lsblk", "--json", "-d", "-o", "NAME,SERIAL"], timeout=30).stdout
        for dev in json.loads(out)["blockdevices"]:
            if (dev.get("serial") or "").strip() == disk.serial:
                return f"/dev/{dev['name']}"
        found = self.run("grep -s -H . /sys/block/*/serial", timeout=30, check=False).stdout
        for line in found.splitlines():   # /sys/block/vdb/serial:khvirtio1
            path, _, serial = line.partition(":")
            if serial.strip() == disk.serial:
                return f"/dev/{path.split('/')[3]}"
        raise VMError(f"guest has no block device with serial {disk.serial} ({disk.kind}); lsblk: {out}; "
                      f"sysfs: {found.strip()}")

    # -- console ---------------------------------------------------------------------------
    def console_text(self) -> str:
        return self.console.read_text(errors="replace") if self.console.exists() else ""

    def console_tail(self, lines: int = 25) -> str:
        return tail(self.console, lines)

    def panic_line(self) -> str | None:
        m = PANIC.search(self.console_text())
        return m.group(1).strip() if m else None
