"""Run directories: everything one run (one boot) produced, written as it is produced.

    <run>/spec.json       the RunSpec: everything needed to redo the run (kharness reproduce)
    <run>/record.json     the BootRecord: measurements, xfstests results, events, evidence, failures
    <run>/metadata.json   status, versions, boot time, QEMU argv (rewritten after every step)
    <run>/measurements.jsonl  one line per fio measurement, appended as they come
    <run>/console.log     the guest's serial console (written by QEMU from the first byte)
    <run>/fio/            job files and fio JSON outputs
    <run>/sysrq/          raw and parsed sysrq captures
    <run>/events.json     hangs, lockups, oopses, panics found on the console
metadata.json is rewritten after every step, so a failure later loses nothing already collected.
"""

from __future__ import annotations

import platform
import re
import secrets
import time
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

from .. import __version__
from ..util import run, write_json

_LABEL = re.compile(r"[^A-Za-z0-9._-]+")


def new_run_dir(root: Path, label: str) -> Path:
    """A fresh run directory ``<root>/<time>-<label>-<4 hex>``; its name is the run id.

    Never an existing directory: a run must not reuse or overwrite another run's files."""
    root.mkdir(parents=True, exist_ok=True)
    safe = _LABEL.sub("-", label).strip("-")[:80] or "run"
    for _ in range(100):
        d = root / f"{time.strftime('%Y%m%d-%H%M%S')}-{safe}-{secrets.token_hex(2)}"
        try:
            d.mkdir()
            return d
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a fresh run directory under {root}")


def _versions() -> dict[str, str]:
    def first(argv: list[str]) -> str:
        try:
            return run(argv, timeout=10).stdout.splitlines()[0]
        except Exception:
            return "unknown"
    return {"kharness": __version__, "python": platform.python_version(),
            "qemu": first(["qemu-system-x86_64", "--version"]), "host_kernel": platform.release()}


class RunDir:
    """A run directory with incrementally updated metadata."""

    def __init__(self, path: Path, **metadata: Any):
        self.path = path
        self.path.mkdir(parents=True, exist_ok=True)
        self.meta: dict[str, Any] = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                     "status": "running", "versions": _versions(), **metadata}
        self.save()

    def update(self, **fields: Any) -> None:
        self.meta.update(fields)
        self.save()

    def save(self) -> None:
        write_json(self.path / "metadata.json", self.meta)

    def subdir(self, name: str) -> Path:
        d = self.path / name
        d.mkdir(parents=True, exist_ok=True)
        return d

    def finish(self, status: str, **fields: Any) -> None:
        self.update(status=status, finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"), **fields)

    def write_events(self, events: list[Any]) -> None:
        rows = [asdict(e) if is_dataclass(e) and not isinstance(e, type) else e for e in events]
        write_json(self.path / "events.json", rows, indent=1, sort_keys=False)
