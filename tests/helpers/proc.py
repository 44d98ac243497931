"""Running processes, read from /proc, for tests that check what a run left behind."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path


def processes() -> Iterator[tuple[int, int, list[bytes]]]:
    """(pid, uid, argv) of every process still readable in /proc (gone ones are skipped)."""
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            uid = d.stat().st_uid
            argv = (d / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        yield int(d.name), uid, argv


def qemus_under(path: Path) -> list[tuple[int, list[bytes]]]:
    """(pid, argv) of QEMU processes whose command line names something under ``path``."""
    needle = str(path).encode()
    return [(pid, argv) for pid, _, argv in processes()
            if argv and b"qemu-system" in argv[0] and any(needle in a for a in argv)]
