"""Faults, for real: SIGTERM and SIGKILL of a `kharness` process during a kernel build, a tarball
import, an image build, a boot, a fio run and an xfstests run. After each, nothing the killed
harness started still runs (found by a marker in the environment every descendant inherits, with
a bounded grace for the watchdog), no temporary entry is left in the cache, nothing is left
mounted in it, and the next command succeeds. Kernel builds and the image reuse the per-user
cache (`--force` redoes them in place); the tarball import uses a fresh temporary cache."""

import json
import os
import shlex
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.paths import cache_root
from harness.procs import GRACE

ROOT = Path(__file__).resolve().parents[2]
MARK = "KHARNESS_FAULT_MARK"
SIGNALS = [pytest.param(signal.SIGTERM, id="SIGTERM"), pytest.param(signal.SIGKILL, id="SIGKILL")]
AFTER_SIGKILL = 2 * GRACE + 10   # watchdog: SIGTERM, GRACE, SIGKILL, then temp-dir removal
AFTER_SIGTERM = 3.0              # the harness ended its children before it exited


def marked(mark: str) -> dict[int, list[str]]:
    """Running processes (zombies excepted) whose environment carries MARK=mark: argv by PID."""
    key = f"\0{MARK}={mark}\0".encode()
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            if key not in b"\0" + Path(f"/proc/{d}/environ").read_bytes():
                continue
            stat = Path(f"/proc/{d}/stat").read_text()
            argv = Path(f"/proc/{d}/cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if stat[stat.rfind(")") + 2] not in "ZX":
            out[int(d)] = argv
    return out


def mounts_in(cache: Path) -> list[str]:
    real = os.path.realpath(cache)
    return [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
            if line.split()[4].startswith(real + "/")]


def stale_entries(cache: Path) -> list[str]:
    """Temporary cache entries (atomic_dir's .NAME.tmp-XXXXXXXX) and mounts inside the cache."""
    return [str(p) for sub in ("src", "kernels", "images") for p in (cache / sub).glob(".*.tmp-*")] + mounts_in(cache)


class Kharness:
    """One `kharness` subprocess; every process it starts inherits its marker."""

    def __init__(self, tmp_path: Path, name: str, *args: object, env: dict[str, str] | None = None):
        self.mark = f"{name}-{uuid.uuid4().hex[:8]}"
        self.log = tmp_path / f"{name}.log"
        self.argv = [sys.executable, "-m", "harness.cli", "--store", str(tmp_path / "store.sqlite"),
                     *map(str, args)]
        with open(self.log, "w") as fh:
            self.proc = subprocess.Popen(self.argv, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=fh,
                                         stderr=subprocess.STDOUT,
                                         env={**os.environ, **(env or {}), MARK: self.mark})
        self.t0 = time.monotonic()

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, pred: Callable[[dict[int, list[str]]], object], timeout: float, what: str) -> None:
        """Wait until ``pred(marked processes)`` holds, while the harness runs."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"kharness exited ({self.proc.returncode}) before {what}:\n{self.output()[-3000:]}")
            if pred(marked(self.mark)):
                return
            time.sleep(0.2)
        pytest.fail(f"no {what} within {timeout:.0f}s:\n{self.output()[-3000:]}")

    def kill(self, sig: int, timeout: float = 120) -> int:
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"kharness did not exit within {timeout}s of {sig!r}:\n{self.output()[-3000:]}")

    def finish(self, timeout: float) -> "Kharness":
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{shlex.join(self.argv[2:])} did not finish within {timeout}s")
        assert rc == 0, f"{shlex.join(self.argv[2:])} failed ({rc}):\n{self.output()[-3000:]}"
        return self

    def assert_nothing_left(self, grace: float) -> None:
        deadline = time.monotonic() + grace
        while (left := marked(self.mark)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not left, "still running after the harness died:\n" + "\n".join(
            f"  {pid}: {shlex.join(argv)[:200]}" for pid, argv in left.items())

    def cleanup(self) -> None:
        """After a failure: SIGKILL the harness, give its watchdog its grace, then the rest."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)
        deadline = time.monotonic() + AFTER_SIGKILL
        while marked(self.mark) and time.monotonic() < deadline:
            time.sleep(0.5)
        for pid in marked(self.mark):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def harnesses():
    made: list[Kharness] = []

    def make(*a, **kw) -> Kharness:
        made.append(Kharness(*a, **kw))
        return made[-1]
    yield make
    for h in made:
        h.cleanup()


def interrupt(h: Kharness, sig: int) -> None:
    """Send ``sig``; check the exit status and that nothing it started outlives it."""
    rc = h.kill(sig)
    assert rc == (143 if sig == signal.SIGTERM else -9), h.output()[-3000:]
    if sig == signal.SIGTERM:
        assert "terminated by SIGTERM" in h.output()
    h.assert_nothing_left(AFTER_SIGTERM if sig == signal.SIGTERM else AFTER_SIGKILL)


def has(argv0: str, *words: str) -> Callable[[dict[int, list[str]]], bool]:
    """Some process is ``argv0`` (or a script run as ``sh argv0``) with all ``words`` in its argv."""
    return lambda ps: any(argv0 in {Path(x).name for x in a[:2]} and all(w in a for w in words)
                          for a in ps.values())


# -- builds -----------------------------------------------------------------------------------
@pytest.mark.build
@pytest.mark.parametrize("sig", SIGNALS)
def test_kernel_build(harnesses, tmp_path, sig):
    """make and its compilers die with the harness; the next build's make never overlaps them."""
    a = harnesses(tmp_path, "killed", "kernel", "build", "baseline", "--force")
    a.wait_for(has("make", "bzImage"), 180, "make bzImage")
    time.sleep(2)
    if sig == signal.SIGKILL:
        a.proc.kill()
        a.proc.wait(30)
        b = harnesses(tmp_path, "next", "kernel", "build", "baseline", "--force")
        b.wait_for(has("make", "bzImage"), 180, "the next build's make")
        overlap = {p: v for p, v in marked(a.mark).items() if "--watchdog" not in v}
        assert not overlap, f"the killed build's processes still ran when the next make started: {overlap}"
        a.assert_nothing_left(AFTER_SIGKILL)
    else:
        interrupt(a, sig)
        assert not stale_entries(cache_root())
        b = harnesses(tmp_path, "next", "kernel", "build", "baseline", "--force")
    b.finish(900)
    assert not stale_entries(cache_root())
    entry = Path(b.output().split("-> ")[-1].split()[0])
    repro = json.loads((entry / "metadata.json").read_text())["reproducer"]
    assert shlex.split(repro[1]) == ["cp", str(entry / ".config"), shlex.split(repro[1])[2]]
    assert (entry / ".config").exists() and "CC=ccache gcc" in shlex.split(repro[2])


@pytest.mark.build
def test_failed_defconfig_names_a_log_that_exists(harnesses, tmp_path):
    (tmp_path / "kernels").mkdir()
    (tmp_path / "kernels/bogus.yaml").write_text(
        "source: {tarball: /usr/src/linux-source-6.1.tar.xz}\nconfig: {base: kharness_bogus_defconfig}\n")
    h = harnesses(tmp_path, "bogus", "kernel", "build", "bogus", env={"KHARNESS_ROOT": str(tmp_path)})
    assert h.proc.wait(300) == 2
    out = " ".join(h.output().split())  # rich wraps long lines
    assert "make kharness_bogus_defconfig failed" in out
    log = Path(out.split("full log: ")[1].split()[0])
    assert log.parent == cache_root() / "failed" and "kharness_bogus_defconfig" in log.read_text()
    assert not stale_entries(cache_root())


@pytest.mark.build
@pytest.mark.parametrize("sig", SIGNALS)
def test_tarball_import(harnesses, tmp_path, sig):
    """tar and xz die with the harness, the half-extracted tree goes, the import then succeeds."""
    cache = tmp_path / "cache"
    env = {"KHARNESS_CACHE": str(cache)}
    h = harnesses(tmp_path, "import", "kernel", "build", "baseline", env=env)
    h.wait_for(lambda ps: has("tar")(ps) and list((cache / "src").glob(".tarball-*.tmp-*/*")), 120,
               "tar extracting into a temporary entry")
    time.sleep(1)
    if has("make")(marked(h.mark)):
        pytest.fail("the import finished before the signal; this would start a cold build")
    interrupt(h, sig)
    if sig == signal.SIGKILL:  # the watchdog removes it; give it the same bounded grace
        deadline = time.monotonic() + AFTER_SIGKILL
        while stale_entries(cache) and time.monotonic() < deadline:
            time.sleep(0.2)
    assert not stale_entries(cache)
    assert not [p for p in (cache / "src").iterdir() if p.is_dir()]
    script = ("from harness.config.kernels import load_kernel; from harness.kernel.source import import_source;"
              "print(import_source(load_kernel('baseline').source).commit)")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and len(done.stdout.strip()) == 40, done.stderr
    assert not stale_entries(cache)


@pytest.mark.build
@pytest.mark.parametrize("sig", SIGNALS)
def test_image_build(harnesses, tmp_path, sig):
    """The image build dies with the harness while it assembles the tree (mmdebstrap's tarball
    unpacked, /dev nodes bound into it in a private mount namespace, programs run in a chroot):
    nothing of it is left running or mounted, no temporary entry stays, and the next build
    succeeds."""
    images = cache_root() / "images"

    def assembling(ps) -> bool:
        return any("harness.image.assemble" in a for a in ps.values())
    h = harnesses(tmp_path, "image", "image", "build", "debian-bookworm", "--force")
    h.wait_for(has("mmdebstrap"), 120, "mmdebstrap")
    h.wait_for(assembling, 600, "the assemble step")
    time.sleep(2)
    interrupt(h, sig)
    deadline = time.monotonic() + (AFTER_SIGKILL if sig == signal.SIGKILL else 0)
    while stale_entries(cache_root()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not stale_entries(cache_root())
    n = harnesses(tmp_path, "next", "image", "build", "debian-bookworm").finish(600)
    qcow2 = Path(n.output().strip().splitlines()[-1])
    assert qcow2.parent.parent == images and qcow2.exists() and (qcow2.parent / "metadata.json").exists()


# -- VMs ---------------------------------------------------------------------------------------
@pytest.mark.vm
@pytest.mark.parametrize("sig", SIGNALS)
def test_boot(harnesses, tmp_path, sig):
    h = harnesses(tmp_path, "boot", "vm", "boot", "--kernel", "baseline", "--results-dir", tmp_path / "runs",
                  "--", "sleep", "600")
    h.wait_for(has("qemu-system-x86_64"), 120, "QEMU")
    # the harness records boot_seconds once SSH answers, whatever the image's init is
    h.wait_for(lambda ps: any("boot_seconds" in p.read_text(errors="replace")
                              for p in (tmp_path / "runs").glob("*/metadata.json")), 180, "the guest up")
    interrupt(h, sig)
    assert not stale_entries(cache_root())
    harnesses(tmp_path, "next", "vm", "boot", "--kernel", "baseline", "--results-dir", tmp_path / "next",
              "--", "true").finish(300)


FIO = ["run", "fio", "--kernel", "baseline", "--fs", "ext4", "--disk", "nvme", "--pattern", "randwrite-overwrite",
       "--engine", "libaio", "--size", "16m"]


@pytest.mark.vm
@pytest.mark.parametrize("sig", SIGNALS)
def test_fio_run(harnesses, tmp_path, sig):
    h = harnesses(tmp_path, "fio", *FIO, "--runtime", "60", "--results-dir", tmp_path / "runs")
    h.wait_for(lambda ps: list((tmp_path / "runs").glob("*/fio/*.fio")), 240, "fio started in the guest")
    time.sleep(3)
    interrupt(h, sig)
    assert not stale_entries(cache_root())
    harnesses(tmp_path, "next", *FIO, "--runtime", "3", "--results-dir", tmp_path / "next").finish(300)


@pytest.mark.vm
@pytest.mark.parametrize("sig", SIGNALS)
def test_xfstests_run(harnesses, tmp_path, sig):
    if not os.environ.get("KHARNESS_XFSTESTS"):
        pytest.skip("KHARNESS_XFSTESTS is not set (CI sets it to the tarball in ../shared/xfstests/)")
    xfs = ["run", "xfstests", "--kernel", "baseline", "--section", "ext4_4k"]
    h = harnesses(tmp_path, "xfstests", *xfs, "--tests", "generic/001", "--results-dir", tmp_path / "runs")
    h.wait_for(lambda ps: list((tmp_path / "runs").glob("*/**/local.config")), 600, "xfstests configured")
    time.sleep(5)
    interrupt(h, sig)
    assert not stale_entries(cache_root())
    nxt = harnesses(tmp_path, "next", *xfs, "--tests", "generic/002", "--results-dir", tmp_path / "next")
    assert "generic/002" in nxt.finish(900).output()
