"""Trigger sysrq dumps in a guest and read them back from the serial console log.

Two triggers: ``/proc/sysrq-trigger`` over SSH, and alt+sysrq+KEY through QMP send-key when SSH
no longer answers. Either way the output is read from the console log, which keeps streaming
as long as QEMU runs.

Where the dump ends: over SSH, a marker line written to ``/dev/kmsg`` after the last trigger
returned. The sysrq handlers print synchronously into the ring buffer before the write to
``/proc/sysrq-trigger`` returns, and consoles print the ring buffer in order, so the marker
arrives on the console after the whole dump, however long the guest takes to print it (6.1's
``show_all_workqueues()`` under load can pause for seconds before the busy-pool section). Through
QMP (SSH gone), the end is the console staying quiet for a while.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..vm.machine import VM
from .summary import summarize_dump, to_json
from .sysrq import SysrqDump, parse_dumps


@dataclass
class Capture:
    """One sysrq capture: the keys, how it was triggered, the raw console slice, parsed dumps."""

    keys: str
    via: str
    raw: str
    dumps: list[SysrqDump] = field(default_factory=list)
    raw_path: Path | None = None
    json_path: Path | None = None

    def summary(self) -> list[str]:
        lines: list[str] = []
        for d in self.dumps:  # sysrq-w and sysrq-t name the same blocked task: once
            lines += [line for line in summarize_dump(d) if line not in lines]
        return lines


def _wait_quiet(console: Path, start: int, quiet: float = 1.5, limit: float = 30.0) -> str:
    """Wait until the console stops growing for ``quiet`` seconds (at most ``limit``)."""
    deadline = time.monotonic() + limit
    last, still_since = -1, time.monotonic()
    while time.monotonic() < deadline:
        size = console.stat().st_size if console.exists() else 0
        if size != last:
            last, still_since = size, time.monotonic()
        elif size > start and time.monotonic() - still_since >= quiet:
            break
        time.sleep(0.25)
    with open(console, "rb") as fh:
        fh.seek(start)
        return fh.read().decode(errors="replace")


def _wait_marker(console: Path, start: int, marker: bytes, limit: float = 60.0) -> str | None:
    """The console from ``start`` up to the line holding ``marker`` (None if it did not come in
    ``limit`` seconds: the caller falls back to the quiet rule)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        with open(console, "rb") as fh:
            fh.seek(start)
            data = fh.read()
        at = data.find(marker)
        if at >= 0:
            return data[:data.rfind(b"\n", 0, at) + 1].decode(errors="replace")
        time.sleep(0.25)
    return None


def capture_sysrq(vm: VM, keys: str = "w", *, via: str = "auto", out_dir: Path | None = None,
                  label: str = "sysrq") -> Capture:
    """Trigger sysrq ``keys`` (e.g. 'w', 'wt') and return what the console printed, parsed.

    via='ssh' writes /proc/sysrq-trigger; via='qmp' presses alt+sysrq+KEY; 'auto' tries SSH
    with a short deadline and falls back to QMP.
    """
    start = vm.console.stat().st_size if vm.console.exists() else 0
    used = via
    for key in keys:
        if via in ("ssh", "auto"):
            try:
                vm.run(["tee", "/proc/sysrq-trigger"], stdin=key, timeout=10)
                used = "ssh"
            except Exception:
                if via == "ssh":
                    raise
                vm.sysrq_keyboard(key)
                used = "qmp"
        else:
            vm.sysrq_keyboard(key)
            used = "qmp"
        if used == "qmp":
            _wait_quiet(vm.console, start, quiet=1.0, limit=20.0)
    raw = None
    if used == "ssh":
        marker = f"kharness: sysrq {keys} done {secrets.token_hex(4)}"
        try:
            # one write(2), one kmsg record (tee may split its stdin into several writes)
            vm.run(["sh", "-c", 'printf "%s\\n" "$1" > /dev/kmsg', "sh", marker], timeout=10)
            raw = _wait_marker(vm.console, start, marker.encode())
        except Exception:  # the guest stopped answering: what the console has, by the quiet rule
            raw = None
    if raw is None:
        raw = _wait_quiet(vm.console, start)
    cap = Capture(keys=keys, via=used, raw=raw, dumps=parse_dumps(raw))
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%H%M%S")
        cap.raw_path = out_dir / f"{label}-{keys}-{stamp}.txt"
        cap.raw_path.write_text(raw)
        cap.json_path = out_dir / f"{label}-{keys}-{stamp}.json"
        cap.json_path.write_text(json.dumps({"keys": keys, "via": used, "summary": cap.summary(),
                                             "dumps": [to_json(d) for d in cap.dumps]}, indent=1))
    return cap
