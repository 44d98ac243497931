"""Small shared helpers: running commands with deadlines, locks, atomic cache entries and file
writes, capped reads of outside input, hashing."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import glob
import hashlib
import json
import os
import shlex
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from . import procs
from .errors import CommandError, HarnessError, LockTimeout
from .fstree import mounts_under, remove_tree  # noqa: F401  (callers import them from here too)


def run(argv: Sequence[str | os.PathLike], *, cwd: Path | str | None = None, timeout: float = 600,
        env: dict[str, str] | None = None, check: bool = True, log: Path | None = None,
        input: str | None = None) -> subprocess.CompletedProcess:
    """Run argv (never a shell string) with a deadline; stdout and stderr are merged and captured.

    The command runs in a process group of its own that dies with the harness (harness.procs):
    on the deadline, an exception or a signal its whole group is ended, not just its leader.
    With ``log``, output is appended to that file as well. Raises CommandError on failure or timeout.
    """
    args = [str(a) for a in argv]
    full_env = None if env is None else {**os.environ, **env}
    chunks: list[bytes] = []
    try:
        proc = procs.spawn(args, cwd=cwd, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL)
    except FileNotFoundError as e:
        raise CommandError(args, 127, f"{args[0]}: not found ({e})") from None
    try:
        done = procs.read_until_exit(proc, time.monotonic() + timeout, chunks.append,
                                     input.encode() if input is not None else None)
    finally:
        rc = procs.stop(proc)
    out = b"".join(chunks).decode(errors="replace").replace("\r\n", "\n").replace("\r", "\n")
    if log is not None:
        with open(log, "a") as fh:
            fh.write(f"$ {shlex.join(args)}\n{out}" + ("" if done else f"kharness: killed after {timeout:.0f}s\n"))
    if not done:
        raise CommandError(args, None, out, log=log, timeout=timeout)
    proc_result = subprocess.CompletedProcess(args, rc if rc is not None else -1, out)
    if check and proc_result.returncode != 0:
        raise CommandError(args, proc_result.returncode, out, log=log)
    return proc_result


def _lock_holder(fd: int) -> int | None:
    """The PID a lock holder wrote into the lock file, if there is one."""
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


@contextlib.contextmanager
def file_lock(path: Path, timeout: float = 7200, *, say: Callable[[str], None] | None = None,
              say_after: float = 5.0) -> Iterator[None]:
    """An exclusive flock on ``path`` (created), waited for at most ``timeout`` seconds.

    The holder writes its PID into the file. Children it starts are recorded in a ledger next
    to the lock (``PATH.procs``); a new holder first ends what a dead holder's children left
    running (harness.procs.ledger). If the lock is still busy after ``say_after``
    seconds, ``say`` (if given) is told once "waiting for lock PATH held by PID N"; after
    ``timeout`` seconds LockTimeout names the file and that PID.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    start = time.monotonic()
    told = False
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                waited = time.monotonic() - start
                if waited > timeout:
                    raise LockTimeout(path, timeout, _lock_holder(fd)) from None
                if say is not None and not told and waited >= say_after:
                    told = True
                    pid = _lock_holder(fd)
                    say(f"waiting for lock {path} held by "
                        + (f"PID {pid}" if pid is not None else "another process"))
                time.sleep(min(0.5, max(0.05, timeout / 10)))
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            with procs.ledger(path.with_name(path.name + ".procs")):
                yield
        finally:
            with contextlib.suppress(OSError):  # still held: no waiter reads a stale PID
                os.ftruncate(fd, 0)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield a temporary sibling directory; rename it to ``final`` only if the block succeeds.

    An interrupted or failed block never leaves ``final`` looking complete. Use it under the
    lock that guards ``final``: temporary siblings (``.NAME.tmp-XXXXXXXX``) still there are
    then a killed process's, and are removed first. If the harness dies inside the block, its
    watchdog removes the temporary directory (harness.procs); nothing mounted inside it is
    ever emptied.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    for stale in final.parent.glob(f".{glob.escape(final.name)}.tmp-*"):
        remove_tree(stale)
    tmp = final.parent / f".{final.name}.tmp-{uuid.uuid4().hex[:8]}"
    procs.watch_dir(tmp)
    try:
        tmp.mkdir()
        yield tmp
        if final.exists():  # replace: the old entry goes aside under a name the sweep knows
            old = final.parent / f".{final.name}.tmp-{uuid.uuid4().hex[:8]}"
            procs.watch_dir(old)
            os.rename(final, old)
            os.rename(tmp, final)
            remove_tree(old)
            procs.forget_dir(old)
        else:
            os.rename(tmp, final)
    finally:
        try:
            remove_tree(tmp)
        finally:
            procs.forget_dir(tmp)


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's content."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_json(obj: object) -> str:
    """Hex sha256 of a JSON-serialisable object in canonical form."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class WriteError(HarnessError):
    """A file could not be written (a full disk, above all); the previous version, if any, is kept."""

    def __init__(self, path: Path, err: OSError):
        self.path = path
        self.errno = err.errno
        full = err.errno in (errno.ENOSPC, errno.EDQUOT)
        super().__init__(f"cannot write {path}: {err.strerror or err}"
                         + (" (its previous content is kept)" if path.exists() else "")
                         + ("; free space there and run the command again" if full else ""))


def fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable (a no-op where directories cannot be fsynced)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so a reader sees the old file or the new one, never a part:
    a temporary file in the same directory, fsync, rename, fsync of the directory. On failure
    (ENOSPC, EIO) the temporary file is removed, the previous file stays, and WriteError names
    ``path``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise WriteError(path, e) from None
    fsync_dir(path.parent)


def write_text_atomic(path: Path, text: str) -> None:
    """:func:`write_bytes_atomic` of UTF-8 text."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json(path: Path, obj: object, *, indent: int = 2, sort_keys: bool = True) -> None:
    """Write JSON atomically and durably (:func:`write_bytes_atomic`)."""
    write_text_atomic(path, json.dumps(obj, indent=indent, sort_keys=sort_keys, default=str) + "\n")


class InputTooLarge(HarnessError):
    """An input file (mbox, definition, record, log) is larger than kharness reads."""

    def __init__(self, path: Path, what: str, size: int, limit: int):
        self.path, self.size, self.limit = Path(path), size, limit
        super().__init__(f"{path}: {what} of {size} bytes is larger than the {limit} bytes kharness "
                         "reads; refused")


def read_bytes_capped(path: Path, limit: int, what: str = "file") -> bytes:
    """The bytes of ``path``, or InputTooLarge naming it when it holds more than ``limit`` bytes
    (read at most ``limit + 1`` bytes, so a huge or growing file costs no more). OSError passes."""
    with open(path, "rb") as fh:
        data = fh.read(limit + 1)
        if len(data) > limit:
            fh.seek(0, os.SEEK_END)
            raise InputTooLarge(Path(path), what, max(fh.tell(), len(data)), limit)
    return data


def read_text_capped(path: Path, limit: int, what: str = "file", errors: str = "strict") -> str:
    """:func:`read_bytes_capped` decoded as UTF-8."""
    return read_bytes_capped(path, limit, what).decode("utf-8", errors=errors)


def tail(path: Path, lines: int = 30) -> str:
    """The last ``lines`` lines of a text file, or '' if it does not exist."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            data = fh.read().decode(errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(data.splitlines()[-lines:])
