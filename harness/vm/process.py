"""Start QEMU so that it can never outlive the harness, and stop it firmly."""

from __future__ import annotations

import ctypes
import signal
import subprocess
import weakref
import atexit
from typing import Any

_PR_SET_PDEATHSIG = 1
_live: "weakref.WeakSet[subprocess.Popen]" = weakref.WeakSet()


def _die_with_parent() -> None:  # runs in the child between fork and exec
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def popen_qemu(argv: list[str], **kw: Any) -> subprocess.Popen:
    """Popen with PR_SET_PDEATHSIG=SIGKILL: the kernel kills QEMU if the harness dies, even by
    SIGKILL. Live processes are also killed at interpreter exit."""
    proc = subprocess.Popen(argv, preexec_fn=_die_with_parent, start_new_session=True, **kw)
    _live.add(proc)
    return proc


def stop_process(proc: subprocess.Popen, grace: float = 3.0) -> None:
    """SIGTERM, wait ``grace`` seconds, then SIGKILL; always reaps."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    _live.discard(proc)


@atexit.register
def _kill_all() -> None:
    for proc in list(_live):
        try:
            proc.kill()
            proc.wait(5)
        except Exception:
            pass
