"""Start QEMU so that it can never outlive the harness, and stop it firmly."""

from __future__ import annotations

import signal
import subprocess
from typing import Any

from .. import procs


def popen_qemu(argv: list[str], **kw: Any) -> subprocess.Popen:
    """Popen in a session of its own with PR_SET_PDEATHSIG=SIGKILL: the kernel kills QEMU if the
    harness dies, even by SIGKILL, and the harness's watchdog ends anything QEMU started
    (harness.procs). Ctrl-C at a terminal reaches only the harness, which shuts QEMU down.
    Children not stopped yet are also stopped at interpreter exit."""
    return procs.spawn(argv, new_session=True, pdeathsig=signal.SIGKILL, **kw)


def stop_process(proc: subprocess.Popen, grace: float = 3.0) -> None:
    """SIGTERM to QEMU's process group, wait ``grace`` seconds, then SIGKILL; always reaps."""
    procs.stop(proc, grace=grace)
