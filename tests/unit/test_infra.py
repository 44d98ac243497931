"""Boots lost to the host (harness.evidence.infra) and their replacement by the executor."""

from __future__ import annotations

import dataclasses
import json

from harness.evidence.events import scan_console
from harness.evidence.infra import infrastructure_loss
from harness.executors.local import lost_to_host
from tests.helpers.records import record
from tests.helpers.specs import fio_spec

# The report of issue 24 (6.12 under QEMU 7.2 multi-threaded TCG), in 6.12's __die_header format.
INT3_612 = """\
[    1.234567] sched_clock: Marking stable (1232000000, 2400000)->(1240000000, -5600000)
[    1.240001] Oops: int3: 0000 [#1] PREEMPT SMP NOPTI
[    1.240002] CPU: 1 UID: 0 PID: 16 Comm: ksoftirqd/1 Not tainted 6.12.118 #1
[    1.240003] RIP: 0010:sched_clock_cpu+0x9/0x1b0
"""
PANIC = """\
[    0.912345] Kernel panic - not syncing: kharness-test: boot culprit
"""
KILLED = "QEMU exited during boot (exit -9)"


def test_an_int3_oops_under_tcg_is_an_emulator_fault_and_the_612_header_parses():
    events = scan_console(INT3_612)
    assert [e.title for e in events] == ["int3 in sched_clock_cpu"]
    why = infrastructure_loss("boot-failed", ["guest did not answer SSH within 300s"], events, "tcg")
    assert why and "tcg-int3-text-patching" in why
    # under KVM the same oops is the kernel's
    assert infrastructure_loss("boot-failed", ["guest did not answer SSH"], events, "kvm") is None


def test_qemu_killed_before_ssh_is_the_hosts_but_not_after_a_kernel_report():
    assert "signal 9" in (infrastructure_loss("boot-failed", [KILLED], [], "tcg") or "")
    assert infrastructure_loss("boot-failed", [KILLED], scan_console(PANIC), "tcg") is None
    assert infrastructure_loss("boot-failed", ["QEMU exited during boot (exit 1)"], [], "tcg") is None


def test_a_panic_or_a_deadline_stays_the_kernels():
    assert infrastructure_loss("boot-failed", ["guest kernel panicked during boot: Kernel panic"],
                               scan_console(PANIC), "tcg") is None
    assert infrastructure_loss("boot-failed", ["guest did not answer SSH within 300s"], [], "tcg") is None
    assert infrastructure_loss("done", [KILLED], [], "tcg") is None


def test_lost_to_host_marks_the_record_and_rewrites_record_json(tmp_path):
    rec = record(fio_spec(), status="boot-failed")
    rec = dataclasses.replace(rec, run_dir=str(tmp_path), failures=(KILLED,), events=(), measurements=())
    (tmp_path / "record.json").write_text(json.dumps(rec.to_json()))
    lost = lost_to_host(rec)
    assert lost.lost.startswith("QEMU ended by signal 9")
    assert json.loads((tmp_path / "record.json").read_text())["lost"] == lost.lost
    kept = dataclasses.replace(rec, failures=("guest did not answer SSH within 300s",))
    assert lost_to_host(kept) is kept


# 6.1.192 under TCG with event tracing: the oops the enabling of trace events caused in a booted
# guest (tests/vm/test_08_nightly.py, 2026-12-06), in 6.1's __die_header format.
INT3_61 = """\
[    5.093257] int3: 0000 [#1] PREEMPT SMP NOPTI
[    5.093257] CPU: 1 PID: 13 Comm: rcu_preempt Not tainted 6.1.192+ #1
[    5.093257] RIP: 0010:__schedule+0x145/0x720
"""
DROPPED = "SSH connection dropped while running: sh -c 'mkdir -p ...'"


def test_a_run_that_died_in_an_emulator_fault_before_any_work_is_lost_but_not_after():
    events = scan_console(INT3_61)
    assert "tcg-int3-text-patching" in (infrastructure_loss("error", [DROPPED], events, "tcg") or "")
    assert infrastructure_loss("error", [DROPPED], events, "tcg", did_work=True) is None
    assert infrastructure_loss("error", [DROPPED], [], "tcg") is None
