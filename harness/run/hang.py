"""The one hang handler, for fio and xfstests alike.

A guest command that passes its deadline is a hang (``GuestCommandError.timeout`` set, no
result). The handler presses sysrq-w and sysrq-t through the emulated keyboard (QMP send-key:
SSH may be stuck behind the hung filesystem), reads them back from the console, scans the
console for the kernel's own reports (hung-task warnings, lockups), writes the evidence, kills
the VM, and returns a HangError that names the evidence directory and carries the summary.
"""

from __future__ import annotations

import time
from pathlib import Path

from ..errors import HangError, HarnessError
from ..evidence.capture import capture_sysrq
from ..evidence.events import Event, scan_console
from ..vm.machine import VM


def console_since(vm: VM, offset: int) -> str:
    """The console text written after byte ``offset``."""
    try:
        with open(vm.console, "rb") as fh:
            fh.seek(offset)
            return fh.read().decode(errors="replace")
    except FileNotFoundError:
        return ""


def console_offset(vm: VM) -> int:
    """The console log's current size: pass it to :func:`console_since` later."""
    return vm.console.stat().st_size if vm.console.exists() else 0


def handle_hang(vm: VM, *, what: str, limit: float, evidence_dir: Path, label: str,
                since: int = 0) -> HangError:
    """Collect sysrq-w/-t and console events for a hung ``what``, kill the VM, return the error.

    Best effort at every step: a QMP or console failure is noted in the message, never raised,
    so the caller always gets a HangError and the VM is always killed."""
    evidence_dir.mkdir(parents=True, exist_ok=True)
    time.sleep(1)  # let a dying guest finish printing
    summary: list[str] = []
    note = ""
    if vm.alive:
        try:
            cap = capture_sysrq(vm, "wt", via="qmp", out_dir=evidence_dir, label=f"hang-{label}")
            summary = cap.summary()
        except (HarnessError, OSError, EOFError) as e:
            note = f" (sysrq capture failed: {e})"
        except Exception as e:  # qemu.qmp raises its own exception types
            note = f" (sysrq capture failed: {type(e).__name__}: {e})"
    else:
        note = " (QEMU had already exited: no sysrq capture)"
    events: list[Event] = scan_console(console_since(vm, since))
    (evidence_dir / f"hang-{label}-summary.txt").write_text(
        "\n".join(summary + [f"event: {e.title}" for e in events]) + "\n")
    vm.kill()
    titles = sorted({e.title for e in events})
    msg = (f"{what}: no progress within {limit:.0f}s{note}; VM killed"
           + (f"; kernel reports: {', '.join(titles)}" if titles else "")
           + "".join(f"\n  {s}" for s in summary[:12]))
    return HangError(msg, evidence_dir=evidence_dir, summary=summary, events=events)
