"""A busy host, on purpose: CPU-bound processes that slow every guest booted meanwhile, as a
busy CI machine does (issue #20: one slow boot must not turn a clear regression into
"inconclusive"). Used by the calibration benchmark and the suite test."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from harness import procs

BUSY = "import os\nos.nice(0)\nwhile True:\n    pass\n"


class Hog:
    """``n`` busy processes (one per core by default) while the context is open; they die with
    this process (procs.spawn) and are ended on exit."""

    def __init__(self, n: int | None = None):
        self.n = n or os.cpu_count() or 2
        self.procs: list[subprocess.Popen] = []

    def __enter__(self) -> Hog:
        self.procs = [procs.spawn([sys.executable, "-c", BUSY], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL) for _ in range(self.n)]
        return self

    def __exit__(self, *exc: object) -> None:
        for p in self.procs:
            procs.stop(p)
        self.procs = []


class HogFirstBoot(threading.Thread):
    """Hog the host while the first run directory matching ``pick`` under ``results`` is the
    newest one: from the moment it appears until another run directory appears (or ``limit``
    seconds). ``hogged`` names the directory it slowed."""

    def __init__(self, results: Path, pick: Callable[[str], bool], limit: float = 600.0):
        super().__init__(daemon=True)
        self.results, self.pick, self.limit = results, pick, limit
        self.hogged: str | None = None
        self._halt = threading.Event()

    def _dirs(self) -> set[str]:
        try:
            return {p.name for p in self.results.rglob("*") if p.is_dir() and (p / "spec.json").exists()}
        except OSError:
            return set()

    def run(self) -> None:
        end = time.monotonic() + self.limit
        while not self._halt.is_set() and time.monotonic() < end:
            hit = sorted(d for d in self._dirs() if self.pick(d))
            if hit:
                self.hogged = hit[0]
                seen = self._dirs()
                with Hog():
                    while not self._halt.wait(0.5) and time.monotonic() < end and self._dirs() <= seen:
                        pass
                return
            self._halt.wait(0.5)

    def stop(self) -> None:
        self._halt.set()
        self.join(30)
