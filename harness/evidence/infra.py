"""Boots lost to the host, not to the kernel: which failed boots a composer replaces.

A boot that fails is the kernel's failure unless its record shows otherwise. Two kinds of failure
are the host's, and are classified as infrastructure failures (reported apart from kernel bugs,
and replaced by a fresh boot, so every cell still gets its runs):

- QEMU ended by a signal before the guest answered (the OOM killer, an operator, a fault a test
  injects, QEMU's own abort), with no kernel report on the console;
- a known emulator fault, recognised by its console report and the accelerator it needs.

Anything else (a panic in an initcall, an oops the kernel earned, no SSH by the deadline) stays
the kernel's: a bisect of a boot break must still see it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from .events import Event

_QEMU_SIGNALLED = re.compile(r"^QEMU exited during boot \(exit -(?P<sig>\d+)\)")


@dataclass(frozen=True)
class EmulatorFault:
    """A console report that an emulator, not the kernel, causes; ``accel`` it happens under."""

    name: str
    report: re.Pattern[str]
    accel: str
    why: str


KNOWN_EMULATOR_FAULTS: tuple[EmulatorFault, ...] = (
    # 6.12 under QEMU 7.2's multi-threaded TCG: "Oops: int3: 0000 [#1] PREEMPT SMP NOPTI" in
    # sched_clock_cpu right after "sched_clock: Marking stable". The static key flip patches
    # kernel text with an int3 breakpoint first (arch/x86/kernel/alternative.c,
    # text_poke_bp_batch); a vCPU that executes the int3 before the patching CPU's
    # poke_int3_handler() sees the update takes it as a stray breakpoint. Under KVM the same
    # oops would be a kernel bug, so only TCG is matched. 6.1 prints "int3: 0000 [#1]".
    EmulatorFault("tcg-int3-text-patching", re.compile(r"^(?:Oops: )?int3: [0-9a-f]{4} \[#\d+\]"), "tcg",
                  "int3 oops from static-key text patching under multi-threaded TCG"),
)

KERNEL_REPORTS = ("oops", "bug", "panic", "kasan", "ubsan", "lockdep", "warning")


def emulator_fault(event: Event, accel: str) -> EmulatorFault | None:
    """The known emulator fault ``event`` reports under ``accel``, if it is one."""
    for fault in KNOWN_EMULATOR_FAULTS:
        if accel == fault.accel and fault.report.search(event.line):
            return fault
    return None


def infrastructure_loss(status: str, failures: Sequence[str], events: Sequence[Event], accel: str,
                        did_work: bool = False) -> str | None:
    """Why a boot with this outcome was lost to the host, or None when it is the kernel's. A
    boot that came up but died in a known emulator fault before finishing any work (enabling
    trace events patches kernel text: harness.workloads.counters) is lost too; one that had
    done some work is not, its executor boots again for what remains."""
    if status not in ("boot-failed", "error", "hang") or (status != "boot-failed" and did_work):
        return None
    for e in events:
        fault = emulator_fault(e, accel)
        if fault:
            return f"emulator fault {fault.name}: {fault.why}"
    if status != "boot-failed":
        return None
    first = failures[0].splitlines()[0] if failures else ""
    m = _QEMU_SIGNALLED.match(first)
    if m and not any(e.kind in KERNEL_REPORTS for e in events) and "panic" not in first:
        return f"QEMU ended by signal {m.group('sig')} before the guest answered"
    return None
