"""Child processes die with the harness: process groups, signals, the watchdog, lock ledgers,
and temporary trees removed without ever emptying a mount. Real make, sh, sleep and mount."""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import pytest

from harness import procs
from harness.errors import CommandError
from harness.kernel.build import MAKE_DEADLINE, _stream_make
from harness.util import file_lock, mounts_under, remove_tree, run

ROOT = Path(__file__).resolve().parents[2]
MARK = "KHARNESS_UNIT_MARK"


def marked(value: str, *, watchdog: bool = True) -> list[int]:
    """Running processes carrying MARK=value (optionally not counting a watchdog)."""
    pids = procs.processes_with_env([MARK], value)
    if not watchdog:
        pids = [p for p in pids if b"--watchdog" not in _cmdline(p)]
    return pids


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def wait_for(pred, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


# A tiny "kernel tree": two parallel "compiles" that create their target and then hang.
MAKEFILE = """\
all: a.o b.o
%.o:
\techo partial > $@; echo compiling $@; sleep 300
"""

HARNESS = textwrap.dedent("""
    import sys
    from pathlib import Path
    from harness.errors import Terminated
    from harness.procs import install_signal_handlers, watchdog_pid
    from harness.kernel.build import _stream_make
    from harness.util import atomic_dir, file_lock
    install_signal_handlers()
    d = Path(sys.argv[1])
    try:
        with file_lock(d / "src.lock"):
            with atomic_dir(d / "entry") as out:
                _stream_make(["make", "-j2", "-C", str(d / "tree")], d, {}, out / "build.log", 600,
                             lambda line: print(line, watchdog_pid(), flush=True))
    except Terminated:
        sys.exit(143)
""")


def start_harness(tmp_path: Path, script: str) -> tuple[subprocess.Popen, str]:
    (tmp_path / "tree").mkdir(exist_ok=True)
    (tmp_path / "tree/Makefile").write_text(MAKEFILE)
    mark = uuid.uuid4().hex
    proc = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], cwd=ROOT, text=True,
                            env={**os.environ, MARK: mark}, stdout=subprocess.PIPE)
    return proc, mark


def test_spawn_gives_each_child_its_own_group_and_stop_ends_it():
    proc = procs.spawn(["sh", "-c", "sleep 300 & sleep 300"])
    try:
        assert os.getpgid(proc.pid) == proc.pid != os.getpgrp()
        wait_for(lambda: len(procs.group_members(proc.pid)) == 3, 10, "sh and two sleeps")
    finally:
        rc = procs.stop(proc, grace=2)
    assert rc == -signal.SIGTERM
    assert procs.group_members(proc.pid) == []  # the background sleep too, not only the leader


def test_run_ends_the_whole_group_at_its_deadline():
    mark = uuid.uuid4().hex
    t0 = time.monotonic()
    with pytest.raises(CommandError) as e:
        run(["sh", "-c", "echo started; sleep 300 & sleep 300; wait"], timeout=1, env={MARK: mark})
    assert e.value.timeout == 1 and "started" in e.value.output
    assert time.monotonic() - t0 < 10
    assert marked(mark, watchdog=False) == []  # the backgrounded sleep died as well


def test_run_passes_input_and_output():
    assert run(["cat"], input="hello\nworld\n").stdout == "hello\nworld\n"
    assert run(["sh", "-c", "exit 3"], check=False).returncode == 3


def test_make_deadline_holds_while_make_is_silent(tmp_path):
    (tmp_path / "Makefile").write_text("all:\n\t@sleep 30\n")
    mark = uuid.uuid4().hex
    t0 = time.monotonic()
    rc = _stream_make(["make", "-C", str(tmp_path)], tmp_path, {MARK: mark}, tmp_path / "build.log", 1, None)
    assert rc == MAKE_DEADLINE
    assert time.monotonic() - t0 < 10, "the deadline waited for make to print a line"
    assert "build killed after 1s" in (tmp_path / "build.log").read_text()
    assert marked(mark, watchdog=False) == []


def test_sigterm_of_the_harness_unwinds_locks_temp_dirs_and_make(tmp_path):
    proc, mark = start_harness(tmp_path, HARNESS)
    try:
        wait_for(lambda: len([p for p in marked(mark) if _cmdline(p).startswith(b"sleep")]) == 2, 30,
                 "both compiles")
        assert list(tmp_path.glob(".entry.tmp-*"))
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 143
    finally:
        proc.kill()
    assert marked(mark, watchdog=False) == []  # gone when the harness exits, not later
    assert not list(tmp_path.glob(".entry.tmp-*")) and not (tmp_path / "entry").exists()
    assert not (tmp_path / "tree/a.o").exists() and not (tmp_path / "tree/b.o").exists()  # make cleaned up
    with file_lock(tmp_path / "src.lock", timeout=1):
        pass
    wait_for(lambda: not marked(mark), 10, "the watchdog to exit")


def test_sigkill_of_the_harness_ends_make_and_its_compilers(tmp_path):
    """The guarantee on SIGKILL: PDEATHSIG ends make, the watchdog ends every process carrying a
    child's token (the compilers) and removes the temporary entry."""
    proc, mark = start_harness(tmp_path, HARNESS)
    try:
        wait_for(lambda: len([p for p in marked(mark) if _cmdline(p).startswith(b"sleep")]) == 2, 30,
                 "both compiles")
        proc.kill()
        proc.wait(10)
    finally:
        proc.kill()
    wait_for(lambda: not marked(mark), 2 * procs.GRACE + 5, "make, its compilers and the watchdog to die")
    wait_for(lambda: not list(tmp_path.glob(".entry.tmp-*")), 5, "the watchdog to remove the temp dir")
    assert not (tmp_path / "tree/a.o").exists()  # make got SIGTERM (PDEATHSIG) and deleted it
    t0 = time.monotonic()
    with file_lock(tmp_path / "src.lock", timeout=1):
        assert time.monotonic() - t0 < 2  # nothing left for the ledger to wait for
    assert not (tmp_path / "src.lock.procs").exists()


LEDGER_HOLDER = textwrap.dedent("""
    import sys, threading, time
    from pathlib import Path
    from harness import procs
    from harness.util import file_lock
    d = Path(sys.argv[1])
    with file_lock(d / "src.lock"):
        # TERM ignored: it outlives PDEATHSIG; and we kill the watchdog before the harness
        procs.spawn(["sh", "-c", "trap '' TERM; sleep 300"])
        print(procs.watchdog_pid(), flush=True)
        time.sleep(300)
""")


def test_the_next_lock_holder_ends_what_a_dead_holder_left(tmp_path):
    proc, mark = start_harness(tmp_path, LEDGER_HOLDER)
    try:
        wd = int(proc.stdout.readline())
        wait_for(lambda: [p for p in marked(mark) if _cmdline(p).startswith(b"sleep")], 10, "the child")
        os.kill(wd, signal.SIGKILL)  # no watchdog, no harness: only the ledger is left
        proc.kill()
        proc.wait(10)
    finally:
        proc.kill()
    time.sleep(1)
    left = marked(mark)
    assert left and all(_cmdline(p).startswith((b"sh", b"sleep")) for p in left)
    assert (tmp_path / "src.lock.procs").read_text().strip()
    with file_lock(tmp_path / "src.lock", timeout=1):
        assert marked(mark) == []  # ended (SIGTERM ignored, so SIGKILL) before the block runs
    assert not (tmp_path / "src.lock.procs").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting needs root")
def test_remove_tree_detaches_mounts_and_never_empties_them(tmp_path):
    outside = tmp_path / "host-dev-shm"
    outside.mkdir()
    (outside / "precious").write_text("not yours")
    tree = tmp_path / ".entry.tmp-1234"
    (tree / "root/dev/shm").mkdir(parents=True)
    (tree / "root/etc").mkdir()
    (tree / "root/etc/hostname").write_text("guest")
    mounted = subprocess.run(["mount", "--bind", str(outside), str(tree / "root/dev/shm")],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot bind-mount here: {mounted.stderr.strip()}")
    try:
        assert mounts_under(tree) == [str((tree / "root/dev/shm").resolve())]
        remove_tree(tree)
    finally:
        subprocess.run(["umount", "-l", str(tree / "root/dev/shm")], capture_output=True)
    assert not tree.exists()
    assert (outside / "precious").read_text() == "not yours"
    assert mounts_under(tmp_path) == []


def test_pytest_plugin_unwinds_fixtures_on_sigterm(pytester, tmp_path):
    """Under pytest (the plugin installs the handlers) SIGTERM tears fixtures down like Ctrl-C."""
    flag = tmp_path / "torn-down"
    pytester.makepyfile(f"""
        import os, signal, time
        import pytest

        @pytest.fixture
        def resource():
            yield
            open({str(flag)!r}, "w").write("yes")

        def test_killed(resource):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(30)
    """)
    t0 = time.monotonic()
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=60)
    assert time.monotonic() - t0 < 30
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*Terminated: terminated by SIGTERM*"])
    assert flag.read_text() == "yes"


SWALLOWER = textwrap.dedent("""
    import sys, time
    from harness import procs
    procs.install_signal_handlers()
    procs.UNWIND_DEADLINE = 1.0
    child = procs.spawn(["sleep", "300"])
    ready = False
    while True:  # like a library that forwards ^C to a remote command and keeps waiting for it
        try:
            if not ready:  # READY inside the try: the test's signal can come right after it
                ready = True
                print("READY", flush=True)
            child.wait() if sys.argv[2] == "wait" else time.sleep(100)
            break
        except KeyboardInterrupt:
            pass
    print("unblocked", child.returncode, flush=True)
""")


@pytest.mark.parametrize("mode", ["wait", "forever"])
def test_the_unwinding_has_a_deadline_even_if_the_interrupt_is_swallowed(tmp_path, mode):
    mark = uuid.uuid4().hex
    proc = subprocess.Popen([sys.executable, "-c", SWALLOWER, str(tmp_path), mode], cwd=ROOT, text=True,
                            env={**os.environ, MARK: mark}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout.readline() == "READY\n"
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert "cleanup after SIGTERM not done in 1s: stopping child processes" in err
    if mode == "wait":  # stopping the children unblocked the wait: the harness goes on and ends
        assert proc.returncode == 0 and out == f"unblocked {-signal.SIGTERM}\n"
        assert time.monotonic() - t0 < 10
    else:  # nothing unblocks it: it exits, as if killed by the signal
        assert proc.returncode == 143 and "cleanup did not finish; exiting" in err
    deadline = time.monotonic() + 15  # the stopped child may take a moment to be reaped on a busy host
    while marked(mark, watchdog=False) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert marked(mark, watchdog=False) == []


def test_interactive_returns_the_status_and_is_ended_on_interrupt(tmp_path):
    """procs.interactive: the exit status; on an interrupt the child goes too (no orphan)."""
    assert procs.interactive(["sh", "-c", "exit 3"]) == 3
    pidfile = tmp_path / "pid"
    old = signal.signal(signal.SIGUSR1, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGUSR1))
    try:
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            procs.interactive(["sh", "-c", f"echo $$ > {pidfile}; exec sleep 60"])
    finally:
        timer.cancel()
        signal.signal(signal.SIGUSR1, old)
    pid = int(pidfile.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
