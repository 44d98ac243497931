"""Child processes that die with the harness, and temporary trees that go with them.

Every external command the harness starts goes through ``spawn``: it runs in a process group
of its own (QEMU in a session of its own), so Ctrl-C at a terminal reaches only the harness,
which then ends each child's *whole group* (make and its compilers, tar and xz) through ``stop``:
SIGTERM, a grace period, SIGKILL. SIGTERM, SIGINT and SIGHUP are turned into exceptions by
``install_signal_handlers`` (the CLI and the pytest plugin install it), so every ``with`` block,
lock and temporary directory unwinds the same way.

What holds when the harness is SIGKILLed (nothing in it runs any more):
  * the group leader dies at once by PR_SET_PDEATHSIG (SIGTERM; QEMU: SIGKILL), when it was
    started from the main thread (the signal follows the spawning *thread*);
  * a watchdog process, started on first use in a session of its own, sees EOF on a pipe only
    the harness holds. It sends SIGTERM to every process that carries the environment token of
    a child the harness had not yet stopped (each child gets its own; every descendant inherits
    it, whatever its process group), SIGKILL after ``GRACE`` seconds, and then removes the
    temporary directories the harness registered (``atomic_dir``), after detaching anything
    mounted inside them. A descendant that scrubs its environment escapes the watchdog (not the
    process-group kill of a live harness); none of the tools the harness runs does that.
  * under a cache lock, each child is also recorded, by an environment token every descendant
    inherits, in a ledger next to the lock file; the next holder kills whatever of it still
    runs before it goes on (``ledger``), even if the watchdog was killed too.
"""

from __future__ import annotations

import atexit
import contextlib
import contextvars
import ctypes
import json
import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from .errors import Terminated
from .fstree import remove_tree

GRACE = 5.0                  # SIGTERM -> SIGKILL, for a child group and for the watchdog
TOKEN_PREFIX = "KHARNESS_SPAWN_"
_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)
_live: dict[int, subprocess.Popen] = {}      # pgid -> child not yet stopped
_guard = threading.RLock()
_LEDGER: contextvars.ContextVar[Path | None] = contextvars.ContextVar("kharness_ledger", default=None)


# -- /proc ---------------------------------------------------------------------------------
def _stat(pid: int) -> tuple[str, int]:
    """(state, process group) of a process; ("X", 0) if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return "X", 0
    fields = raw[raw.rfind(b")") + 2:].split()
    return fields[0].decode(), int(fields[2])


def _pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def group_members(pgid: int) -> list[int]:
    """Processes of group ``pgid`` that are still running (zombies do not count)."""
    return [pid for pid in _pids() if (st := _stat(pid))[1] == pgid and st[0] not in "ZX"]


def processes_with_env(names: Iterable[str], value: str | None = None) -> list[int]:
    """Running processes (not zombies) whose environment has one of ``names`` (set to
    ``value``, if given). Every descendant inherits the environment, so this finds a child's
    whole tree, whatever its process group."""
    pats = [(f"{n}={value}\0" if value is not None else f"{n}=").encode() for n in names]
    out = []
    for pid in _pids():
        try:
            env = b"\0" + Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        if any(b"\0" + p in env for p in pats) and _stat(pid)[0] not in "ZX":
            out.append(pid)
    return out


def _kill(pid: int, sig: int, group: bool = False) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        (os.killpg if group else os.kill)(pid, sig)


def _until(pred: Callable[[], bool], timeout: float) -> bool:
    """Poll ``pred`` until it holds or ``timeout`` seconds pass; return whether it held."""
    deadline = time.monotonic() + timeout
    delay = 0.0005
    while not pred():
        if time.monotonic() >= deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.1)
    return True


def end_pids(find: Callable[[], list[int]], grace: float = GRACE) -> list[int]:
    """SIGTERM what ``find`` returns, SIGKILL what is left after ``grace`` s; wait (bounded)
    until nothing is found. Returns the PIDs found first."""
    first = find()
    for pid in first:
        _kill(pid, signal.SIGTERM)
    if first and not _until(lambda: not find(), grace):
        for pid in find():
            _kill(pid, signal.SIGKILL)
        _until(lambda: not find(), 5.0)
    return first


# -- spawning and stopping -----------------------------------------------------------------
def _child_setup(sig: int, parent: int) -> None:  # in the child, between fork and exec
    _libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    if os.getppid() != parent:  # the harness died before prctl: do not run orphaned
        os._exit(128 + int(sig))


def spawn(argv: Sequence[str | os.PathLike], *, new_session: bool = False,
          pdeathsig: int = signal.SIGTERM, env: dict[str, str] | None = None,
          **popen: Any) -> subprocess.Popen:
    """Popen ``argv`` in a new process group (or session) that dies with the harness (see the
    module docstring). End it with ``stop``. ``env`` is the child's whole environment."""
    token = uuid.uuid4().hex[:16]
    child_env = dict(os.environ if env is None else env)
    child_env[TOKEN_PREFIX + token] = str(os.getpid())
    kw: dict[str, Any] = {"start_new_session": True} if new_session else {"process_group": 0}
    if threading.current_thread() is threading.main_thread():
        parent = os.getpid()
        kw["preexec_fn"] = lambda: _child_setup(pdeathsig, parent)
    with _guard:
        proc = subprocess.Popen([os.fspath(a) for a in argv], env=child_env, **kw, **popen)
        proc.kharness_token = token  # type: ignore[attr-defined]
        _live[proc.pid] = proc
        _watchdog_send({"t": token})
    ledger = _LEDGER.get()
    if ledger is not None:
        with contextlib.suppress(OSError), open(ledger, "a") as fh:
            fh.write(token + "\n")
    return proc


def interactive(argv: Sequence[str | os.PathLike], *, pdeathsig: int = signal.SIGHUP) -> int:
    """Run an interactive program on the harness's terminal (``ssh`` into a guest) until it exits.

    Unlike ``spawn`` it stays in the harness's (foreground) process group, as a program that
    reads the terminal must; it still dies with the harness by PR_SET_PDEATHSIG, and is ended
    (SIGTERM, ``GRACE``, SIGKILL) when the harness is interrupted. Its only deadline is the
    user: it is the user's shell."""
    parent = os.getpid()
    proc = subprocess.Popen([os.fspath(a) for a in argv], preexec_fn=lambda: _child_setup(pdeathsig, parent))
    try:
        return proc.wait()
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(GRACE)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def _exited(proc: subprocess.Popen) -> bool:
    """Whether the leader has exited, *without* reaping it: while it is a zombie its process
    group ID cannot be reused, so signalling the group stays safe."""
    if proc.returncode is not None:
        return True
    try:
        return os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def wait_exit(proc: subprocess.Popen, timeout: float) -> bool:
    """Wait up to ``timeout`` s for the child to exit, without reaping it (see ``stop``)."""
    return _until(lambda: _exited(proc), max(0.0, timeout))


def read_until_exit(proc: subprocess.Popen, deadline: float, on_output: Callable[[bytes], None],
                    input: bytes | None = None) -> bool:
    """Feed ``input`` to the child's stdin, pass its stdout (raw bytes, as they come) to
    ``on_output`` until EOF, then wait for it to exit (not reaped). False if ``deadline``
    (time.monotonic) passed first; the deadline holds even while the child prints nothing."""
    pending = memoryview(input or b"")
    out_fd = proc.stdout.fileno() if proc.stdout is not None else -1
    if proc.stdin is not None and not pending:
        proc.stdin.close()
    fds = {f.fileno(): f for f in (proc.stdin, proc.stdout) if f is not None and not f.closed}
    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLIN if fd == out_fd else select.POLLOUT)
    while fds:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        for fd, ev in poller.poll(min(left, 0.5) * 1000):
            if fd == out_fd:
                chunk = os.read(fd, 65536) if ev & (select.POLLIN | select.POLLHUP | select.POLLERR) else b""
                if chunk:
                    on_output(chunk)
                    continue
            else:
                with contextlib.suppress(BrokenPipeError):
                    pending = pending[os.write(fd, pending[:65536]):]
                if pending and not ev & (select.POLLERR | select.POLLHUP):
                    continue
            poller.unregister(fd)
            fds.pop(fd).close()
    return wait_exit(proc, deadline - time.monotonic())


def stop(proc: subprocess.Popen, grace: float = GRACE, first: int = signal.SIGTERM) -> int | None:
    """End ``proc``'s whole process group: ``first`` signal, up to ``grace`` s for the leader to
    exit, then SIGKILL to the group (stragglers too); reap; wait (bounded) until no member runs.
    Harmless on a child that already exited. Returns the exit status."""
    pgid = proc.pid
    try:
        if proc.returncode is None:
            if not _exited(proc):
                _kill(pgid, first, group=True)
                wait_exit(proc, grace)
            _kill(pgid, signal.SIGKILL, group=True)  # leader alive or a zombie: the ID is still ours
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
        try:
            os.killpg(pgid, 0)  # members left (running, or zombies nobody reaped)?
        except (ProcessLookupError, PermissionError):
            pass
        else:
            _kill(pgid, signal.SIGKILL, group=True)
            _until(lambda: not group_members(pgid), 5.0)
    finally:
        _forget(pgid)
        for f in (proc.stdin, proc.stdout, proc.stderr):
            if f is not None:
                with contextlib.suppress(OSError):
                    f.close()
    return proc.returncode


def _forget(pgid: int) -> None:
    with _guard:
        proc = _live.pop(pgid, None)
        if proc is not None:
            _watchdog_send({"-t": proc.kharness_token})  # type: ignore[attr-defined]


@atexit.register
def stop_all(grace: float = GRACE) -> None:
    """Stop every child not stopped yet (at interpreter exit: also on Ctrl-C and SIGTERM)."""
    procs = list(_live.values())
    for p in procs:
        if not _exited(p):
            _kill(p.pid, signal.SIGTERM, group=True)
    _until(lambda: all(_exited(p) for p in procs), grace if procs else 0)
    for p in procs:
        stop(p, grace=0)


# -- the watchdog --------------------------------------------------------------------------
_wd: dict[str, Any] = {}
_dirs: set[str] = set()
_WATCHDOG = (f"import sys; sys.path.append({str(Path(__file__).resolve().parents[1])!r}); "
             "from harness.procs import _watchdog; _watchdog(int(sys.argv[2]), float(sys.argv[3]))")


def _watchdog_send(msg: dict) -> None:
    """Tell the watchdog about a child token or a directory; start it on first use, and again
    (told everything still registered) if it died."""
    with _guard:
        if _wd.get("owner") == os.getpid():
            with contextlib.suppress(OSError):
                os.write(_wd["fd"], json.dumps(msg).encode() + b"\n")
                return
            os.close(_wd["fd"])
        r, w = os.pipe()
        try:
            p = subprocess.Popen([sys.executable, "-I", "-S", "-c", _WATCHDOG, "--watchdog", str(r), str(GRACE)],
                                 pass_fds=(r,), start_new_session=True, stdin=subprocess.DEVNULL,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        finally:
            os.close(r)
        _wd.update(owner=os.getpid(), fd=w, proc=p)
        state = [{"t": c.kharness_token} for c in _live.values()] + [{"d": d} for d in _dirs]  # type: ignore[attr-defined]
        with contextlib.suppress(OSError):
            os.write(w, b"".join(json.dumps(m).encode() + b"\n" for m in state))


def _after_fork_in_child() -> None:
    fd = _wd.pop("fd", None)
    if fd is not None:
        with contextlib.suppress(OSError):
            os.close(fd)  # the parent's watchdog must see EOF when the parent dies
    _wd.clear()
    _live.clear()
    _dirs.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)


def watchdog_pid() -> int | None:
    """The PID of this process's watchdog, if it has started one."""
    p = _wd.get("proc") if _wd.get("owner") == os.getpid() else None
    return p.pid if p is not None else None


def watch_dir(path: Path) -> None:
    """Have the watchdog remove ``path`` if the harness dies before ``forget_dir``."""
    with _guard:
        _dirs.add(str(path))
        _watchdog_send({"d": str(path)})


def forget_dir(path: Path) -> None:
    with _guard:
        _dirs.discard(str(path))
        _watchdog_send({"-d": str(path)})


def _watchdog(fd: int, grace: float) -> None:
    for s in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(s, signal.SIG_IGN)
    tokens: set[str] = set()
    dirs: set[str] = set()
    buf = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except InterruptedError:
            continue
        if not chunk:
            break  # the harness is gone (or done)
        buf += chunk
        *lines, buf = buf.split(b"\n")
        for line in lines:
            msg = json.loads(line)
            for k, v in msg.items():
                {"t": tokens.add, "-t": tokens.discard, "d": dirs.add, "-d": dirs.discard}[k](v)
    names = [TOKEN_PREFIX + t for t in tokens]
    if names:
        end_pids(lambda: processes_with_env(names), grace)
    for d in dirs:
        with contextlib.suppress(OSError):
            remove_tree(Path(d))


# -- ledgers: what a lock holder started -------------------------------------------------
def sweep_ledger(path: Path, grace: float = GRACE) -> list[int]:
    """End whatever processes a previous holder recorded in ``path`` still run (SIGTERM,
    SIGKILL after ``grace`` s) and wait for them; remove the ledger. Returns their PIDs."""
    try:
        tokens = [t for t in path.read_text().split() if re.fullmatch(r"[0-9a-f]{16}", t)]
    except FileNotFoundError:
        return []
    names = [TOKEN_PREFIX + t for t in tokens]
    found = end_pids(lambda: processes_with_env(names), grace) if names else []
    path.unlink(missing_ok=True)
    return found


@contextlib.contextmanager
def ledger(path: Path) -> Iterator[None]:
    """Hold under a lock: sweep a dead predecessor's leftovers, then record the children this
    thread spawns in ``path``; remove it at the end if all of them were stopped."""
    sweep_ledger(path)
    reset = _LEDGER.set(path)
    try:
        yield
    finally:
        _LEDGER.reset(reset)
        with _guard:
            mine = {getattr(p, "kharness_token", "") for p in _live.values()}
        try:
            alive = mine & set(path.read_text().split())
        except FileNotFoundError:
            alive = set()
        if not alive:
            path.unlink(missing_ok=True)


# -- signals -------------------------------------------------------------------------------
UNWIND_DEADLINE = 30.0     # after the first signal: then stop every child; as long again: exit
_stopping = False
_raise: list[type[BaseException]] = []
_force = threading.Event()


def _on_signal(signum: int, frame: object) -> None:
    global _stopping
    if _stopping:  # already unwinding: a second signal stops the children now
        os.write(2, f"kharness: {signal.Signals(signum).name} again: stopping child processes now\n".encode())
        _force.set()
        return
    _stopping = True
    threading.Thread(target=_escalate, args=(signum,), name="kharness-unwind-deadline", daemon=True).start()
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise _raise[0](signum)


def _escalate(signum: int) -> None:
    """The unwinding's deadline. Code that swallows KeyboardInterrupt or blocks in cleanup (a
    library joining reader threads of a command still running in the guest) cannot keep the
    harness alive: stop every child, which unblocks such waits; exit if even that is not enough."""
    name = signal.Signals(signum).name
    if not _force.wait(UNWIND_DEADLINE):
        os.write(2, f"kharness: cleanup after {name} not done in {UNWIND_DEADLINE:.0f}s: "
                    "stopping child processes\n".encode())
    stop_all(grace=2)
    time.sleep(UNWIND_DEADLINE)
    os.write(2, f"kharness: terminated by {name}: cleanup did not finish; exiting\n".encode())
    os._exit(128 + signum)


def install_signal_handlers() -> bool:
    """SIGINT raises KeyboardInterrupt, SIGTERM and SIGHUP raise ``errors.Terminated`` (a
    KeyboardInterrupt), once, so every ``with`` block unwinds; the unwinding has a deadline
    (``_escalate``), and a second signal stops the children at once. Only the main thread can
    install them; returns whether they were installed."""
    if threading.current_thread() is not threading.main_thread():
        return False
    _raise[:] = [Terminated]
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, _on_signal)
    return True
