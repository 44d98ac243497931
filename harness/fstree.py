"""Delete a directory tree without ever leaving it, even with mounts inside (a tree someone
mounted proc, sysfs or /dev binds into): shared by the cache's atomic
entries (harness.util) and the watchdog that cleans up after a killed harness (harness.procs)."""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import stat
from pathlib import Path

_libc = ctypes.CDLL(None, use_errno=True)


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below ``path`` (deepest first), from /proc/self/mountinfo."""
    base = os.path.realpath(path)
    out = []
    with contextlib.suppress(OSError), open("/proc/self/mountinfo") as fh:
        for line in fh:
            mp = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[4])
            if mp == base or mp.startswith(base.rstrip("/") + "/"):
                out.append(mp)
    return sorted(out, key=len, reverse=True)


def remove_tree(path: Path) -> None:
    """Delete a directory tree without ever leaving it: first detach (lazily) whatever is
    mounted below it (proc, sysfs or /dev binds a killed build left in its target),
    then delete, never descending into a mount point that could not be detached."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(path)
        return
    for mp in mounts_under(path):
        _libc.umount2(mp.encode(), 2)  # MNT_DETACH
    base, left = os.path.realpath(path), set(mounts_under(path))
    if base not in left:
        _rm(base, st.st_dev, left)


def _rm(path: str, dev: int, mounts: set[str]) -> None:
    try:
        entries = list(os.scandir(path))
    except OSError:
        return
    for e in entries:
        with contextlib.suppress(OSError):
            if e.is_dir(follow_symlinks=False):
                if e.path not in mounts and e.stat(follow_symlinks=False).st_dev == dev:
                    _rm(e.path, dev, mounts)
            elif e.path not in mounts:
                os.unlink(e.path)
    with contextlib.suppress(OSError):
        os.rmdir(path)
