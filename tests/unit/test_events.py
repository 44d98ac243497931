"""Tests for harness.evidence.events: report detection, titles, and incremental watching."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.evidence.console import MAX_LINE, clean_console_line
from harness.evidence.events import (
    KINDS,
    Event,
    EventWatcher,
    first_interesting_frame,
    scan_console,
    scan_console_file,
    unique_titles,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
ALL_FIXTURES = sorted((FIXTURES / "console").glob("*.txt")) + sorted(
    (FIXTURES / "sysrq").glob("*.txt"))


def read(path: Path) -> str:
    with open(path, newline="") as fh:
        return fh.read()


def triples(events: list[Event]) -> list[tuple[str, str, str | None]]:
    return [(e.kind, e.title, e.function) for e in events]


def feed_in_chunks(text: str, size: int) -> list[Event]:
    watcher = EventWatcher()
    out: list[Event] = []
    for i in range(0, len(text), size):
        out += watcher.feed(text[i:i + size])
    out += watcher.flush()
    assert watcher.events == out
    return out


# ------------------------------------------------------------------------------------------
# Generic invariants over every fixture
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ALL_FIXTURES, ids=[p.name for p in ALL_FIXTURES])
def test_event_invariants(path):
    text = read(path)
    events = scan_console(text)
    offsets = [e.offset for e in events]
    assert offsets == sorted(set(offsets))
    for e in events:
        assert e.kind in KINDS
        assert e.title and not re.search(r"\[\s*\d+\.\d+\]", e.title)
        raw_line = text[e.offset:].split("\n", 1)[0]
        assert clean_console_line(raw_line)[0].strip() == e.line  # offset points at the header
        if e.function:
            assert e.function in e.title or e.kind == "bug"
            assert "+0x" not in e.function and "." not in e.function


@pytest.mark.parametrize("size", [1, 7, 113, 4096, 10**9])
@pytest.mark.parametrize("path", ALL_FIXTURES, ids=[p.name for p in ALL_FIXTURES])
def test_watcher_matches_scan_whatever_the_chunking(path, size):
    text = read(path)
    if size == 1 and len(text) > 20_000:
        size = 3  # keep the run short on long captures
    assert feed_in_chunks(text, size) == scan_console(text)


# ------------------------------------------------------------------------------------------
# Synthesized fixtures: exact titles
# ------------------------------------------------------------------------------------------


def test_hung_tasks_then_panic():
    events = scan_console(read(FIXTURES / "console" / "synth-6.1-hung-task-panic.txt"))
    assert triples(events) == [
        ("hung_task", "INFO: task hung in jbd2_log_wait_commit", "jbd2_log_wait_commit"),
        ("hung_task", "INFO: task hung in __iomap_dio_rw", "__iomap_dio_rw"),
        ("panic", "kernel panic: hung_task: blocked tasks", None),
    ]
    assert events[0].line == "INFO: task kworker/u4:2:187 blocked for more than 120 seconds."
    assert events[0].timestamp == pytest.approx(242.118221)


def test_warnings_oops_and_panic_on_a_crlf_console():
    text = read(FIXTURES / "console" / "synth-6.1-warn-oops-panic-crlf.txt")
    events = scan_console(text)
    assert triples(events) == [
        ("warning", "WARNING in iomap_dio_complete", "iomap_dio_complete"),
        ("warning", "WARNING in iomap_dio_complete", "iomap_dio_complete"),
        ("oops", "BUG: unable to handle kernel NULL pointer dereference in ext4_dio_write_end_io",
         "ext4_dio_write_end_io"),
        ("panic", "kernel panic: Fatal exception", None),
    ]
    # the first WARNING shares its console line with fio's \r progress output
    assert text[events[0].offset:].startswith("[   61.223517] WARNING: CPU: 1 PID: 187")
    # a user-space line starting with "BUG:" is not a kernel report
    assert "BUG: expected hang reproduced" in text
    assert unique_titles(events) == [
        "WARNING in iomap_dio_complete",
        "BUG: unable to handle kernel NULL pointer dereference in ext4_dio_write_end_io",
        "kernel panic: Fatal exception",
    ]


def test_soft_lockup_rcu_stalls_and_workqueue_lockup():
    events = scan_console(read(FIXTURES / "console" / "synth-6.1-soft-lockup-rcu-stall.txt"))
    assert triples(events) == [
        ("soft_lockup", "BUG: soft lockup in ext4_es_insert_extent", "ext4_es_insert_extent"),
        # detected by another CPU: NMI backtrace with show_regs()
        ("rcu_stall", "INFO: rcu detected stall in ext4_es_insert_extent", "ext4_es_insert_extent"),
        # self-detected: dump_stack() from the timer interrupt, frames after the irq entry count
        ("rcu_stall", "INFO: rcu detected stall in ext4_es_insert_extent", "ext4_es_insert_extent"),
        ("workqueue_lockup", "BUG: workqueue lockup", None),
    ]
    assert events[0].line == "watchdog: BUG: soft lockup - CPU#1 stuck for 26s! [fio:1236]"


def test_journal_lockdep_and_bugs():
    text = read(FIXTURES / "console" / "synth-6.1-journal-lockdep-bug.txt")
    events = scan_console(text)
    assert triples(events) == [
        ("lockdep", "possible deadlock in start_this_handle", "start_this_handle"),
        ("lockdep", "possible deadlock in ext4_map_blocks", "ext4_map_blocks"),
        ("lockdep", "BUG: sleeping function called from invalid context in ext4_dio_write_end_io",
         "ext4_dio_write_end_io"),
        ("bug", "kernel BUG at fs/jbd2/transaction.c:1530!", "jbd2_journal_dirty_metadata"),
        ("oops", "general protection fault in iomap_dio_bio_end_io", "iomap_dio_bio_end_io"),
    ]
    # fio's own journal line imitating a WARNING is not a kernel report
    assert "fio[1234]: WARNING: CPU: 0 PID: 1" in text
    assert all("not_a_kernel_line" not in e.title for e in events)


def test_events_in_sysrq_fixtures():
    crlf = read(FIXTURES / "sysrq" / "synth-6.1-wq-lockup-sysrq-w-dio-vdb-crlf.txt")
    assert triples(scan_console(crlf)) == [
        ("workqueue_lockup", "BUG: workqueue lockup", None),
        ("hung_task", "INFO: task hung in start_this_handle", "start_this_handle"),
    ]
    assert scan_console(crlf)[0].line.startswith("BUG: workqueue lockup - pool cpus=1 node=0")
    pasted = read(FIXTURES / "sysrq" / "synth-6.1-pasted-wq-lockup-nvme.txt")
    assert triples(scan_console(pasted)) == [("workqueue_lockup", "BUG: workqueue lockup", None)]
    assert scan_console(read(FIXTURES / "sysrq" / "synth-6.1-sysrq-t-dio-sync.txt")) == []


@pytest.mark.parametrize("name", ["captured-6.1.192-patched-boot-fio-sysrq.txt",
                                  "captured-6.12.118-patched-boot-fio-sysrq.txt"])
def test_a_clean_boot_with_sysrq_dumps_has_no_kernel_error(name):
    """Whole consoles of evidence boots (boot, fio, sysrq-w and sysrq-t) from a 6.1 and a 6.12
    guest: the D-state stacks of a sysrq dump are no hung-task report, and 6.12's boot lines
    (its "Oops:"-prefixed __die_header() never appears) raise nothing."""
    text = read(FIXTURES / "console" / name)
    assert "sysrq: Show Blocked State" in text and "Linux version 6.1" in text
    assert scan_console(text) == []


# ------------------------------------------------------------------------------------------
# Incremental behaviour
# ------------------------------------------------------------------------------------------


def test_hung_task_event_is_returned_when_its_stack_ends():
    lines = read(FIXTURES / "console" / "synth-6.1-hung-task-panic.txt").splitlines(keepends=True)
    end = next(i for i, line in enumerate(lines) if line.rstrip().endswith("</TASK>"))
    watcher = EventWatcher()
    assert watcher.feed("".join(lines[:end])) == []
    (event,) = watcher.feed(lines[end])
    assert event.title == "INFO: task hung in jbd2_log_wait_commit"
    assert watcher.feed("".join(lines[end + 1:])) != []
    assert [e.kind for e in watcher.events] == ["hung_task", "hung_task", "panic"]


def test_warning_is_returned_as_soon_as_its_line_is_complete():
    watcher = EventWatcher()
    head = "[   61.223517] WARNING: CPU: 1 PID: 187 at fs/iomap/direct-io.c:141 iomap"
    assert watcher.feed(head) == []
    (event,) = watcher.feed("_dio_complete+0x1a9/0x210\r\n")
    assert (event.title, event.offset) == ("WARNING in iomap_dio_complete", 0)


def test_offsets_count_across_feeds():
    watcher = EventWatcher()
    watcher.feed("[    1.000000] hello\n[    2.000000] Kernel pan")
    (event,) = watcher.feed("ic - not syncing: VFS: Unable to mount root fs on "
                            "unknown-block(0,0)\n")
    assert event.offset == len("[    1.000000] hello\n")
    assert event.title == "kernel panic: VFS: Unable to mount root fs on unknown-block(0,0)"


def test_flush_closes_a_report_cut_off_by_the_end_of_the_log():
    text = ("INFO: task fio:1234 blocked for more than 120 seconds.\n"
            "task:fio             state:D stack:0     pid:1234  ppid:1230   flags:0x00000002\n"
            "Call Trace:\n <TASK>\n __schedule+0x34d/0x9e0\n schedule+0x5a/0xd0\n"
            " io_schedule+0x46/0x70\n folio_wait_bit_common+0x12a/0x2f0\n"
            " folio_wait_writeback+0x28/0x80")  # no newline, no </TASK>: the capture ended here
    watcher = EventWatcher()
    assert watcher.feed(text) == []
    (event,) = watcher.flush()
    assert event.title == "INFO: task hung in folio_wait_writeback"


# ------------------------------------------------------------------------------------------
# Small inline formats
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    # dmesg -t: no prefixes at all
    ("BUG: kernel NULL pointer dereference, address: 0000000000000008\n"
     "#PF: supervisor read access in kernel mode\nOops: 0000 [#1] PREEMPT SMP NOPTI\n"
     "RIP: 0010:ext4_dio_write_end_io.cold+0x2a/0x80 [ext4]\n",
     [("oops", "BUG: unable to handle kernel NULL pointer dereference in ext4_dio_write_end_io")]),
    # kernels before 5.1 worded the NULL-pointer BUG differently
    ("BUG: unable to handle kernel NULL pointer dereference at 0000000000000008\n"
     "IP: foo+0x1/0x2\nOops: 0000 [#1] SMP\nRIP: 0010:foo+0x1/0x2\n",
     [("oops", "BUG: unable to handle kernel NULL pointer dereference in foo")]),
    ("BUG: unable to handle page fault for address: ffffc90000a1b000\n"
     "Oops: 0002 [#1] PREEMPT SMP NOPTI\nRIP: 0010:memcpy_orig+0x10/0x130\n",
     [("oops", "BUG: unable to handle kernel paging request in memcpy_orig")]),
    # an Oops line on its own is its own report
    ("Oops: 0002 [#1] PREEMPT SMP NOPTI\nCPU: 0 PID: 1 Comm: init\nRIP: 0010:bar+0x1/0x2\n",
     [("oops", "Oops in bar")]),
    ("Watchdog detected hard LOCKUP on cpu 1\nRIP: 0010:native_queued_spin_lock_slowpath+0x1/0x2\n"
     "Call Trace:\n <NMI>\n </NMI>\n <TASK>\n _raw_spin_lock_irqsave+0x1/0x2\n xas_foo+0x1/0x2\n"
     " </TASK>\n", [("hard_lockup", "watchdog: hard LOCKUP in xas_foo")]),
    ("rcu: INFO: rcu_preempt detected expedited stalls on CPUs/tasks: { 1-.... } 21002 jiffies "
     "s: 1234 root: 0x2/.\nCall Trace:\n <TASK>\n spin_forever+0x1/0x2\n </TASK>\n",
     [("rcu_stall", "INFO: rcu detected stall in spin_forever")]),
    # frames before the interrupt entry belong to the reporting CPU's interrupt, not the loop
    ("rcu: INFO: rcu_preempt self-detected stall on CPU\nNMI backtrace for cpu 1\nCall Trace:\n"
     " <IRQ>\n dump_stack_lvl+0x1/0x2\n kvm_sched_clock_read+0x1/0x2\n </IRQ>\n <TASK>\n"
     " asm_sysvec_apic_timer_interrupt+0x1/0x2\nRIP: 0010:loop_body+0x1/0x2\n"
     " outer_loop+0x1/0x2\n </TASK>\n",
     [("rcu_stall", "INFO: rcu detected stall in loop_body")]),
    ("BUG: KASAN: slab-use-after-free in iomap_dio_complete_work+0x5a/0x70\n"
     "Read of size 8 at addr ffff888005e2a5e8 by task kworker/0:2/201\n",
     [("bug", "KASAN: slab-use-after-free in iomap_dio_complete_work")]),
    # arm64 spells it "Call trace:" and prints no <TASK> markers
    ("INFO: task kworker/u8:1:77 blocked for more than 120 seconds.\nCall trace:\n"
     " __switch_to+0xe8/0x120\n __schedule+0x3a4/0xa40\n schedule+0x5c/0xd0\n"
     " jbd2_log_wait_commit+0xb4/0x140 [jbd2]\n process_one_work+0x1f4/0x490\n",
     [("hung_task", "INFO: task hung in jbd2_log_wait_commit")]),
    ("BUG: scheduling while atomic: kworker/0:1/12/0x00000002\n",
     [("bug", "BUG: scheduling while atomic")]),
    ("WARNING: CPU: 0 PID: 1 at kernel_init+0x12/0x150\n", [("warning", "WARNING in kernel_init")]),
    ("WARNING: inconsistent lock state\n6.1.192 #1 Not tainted\n"
     "inconsistent {HARDIRQ-ON-W} -> {IN-HARDIRQ-W} usage.\n"
     "swapper/0/0 [HC1[1]:SC0[0]:HE0:SE1] takes:\n"
     "ffff888005e2a5e8 (&ei->i_completed_io_lock){?.+.}-{2:2}, "
     "at: ext4_end_bio+0x9b/0x1a0 [ext4]\n",
     [("lockdep", "inconsistent lock state in ext4_end_bio")]),
    # a hung task whose whole stack is wait primitives gets the bare title
    ("INFO: task a:1 blocked for more than 120 seconds.\nCall Trace:\n <TASK>\n"
     " __schedule+0x1/0x2\n schedule+0x1/0x2\n </TASK>\n", [("hung_task", "INFO: task hung")]),
])
def test_inline_reports(text, expected):
    assert [(e.kind, e.title) for e in scan_console(text)] == expected


def test_userspace_lines_are_ignored_once_kernel_lines_are_seen():
    text = ("[    1.000000] Linux version 6.1.192\n"
            "BUG: this line came from a test script\n"
            "[    2.000000] BUG: scheduling while atomic: swapper/0/0/0x00000002\n")
    assert [e.title for e in scan_console(text)] == ["BUG: scheduling while atomic"]


def test_repeated_reports_are_all_kept():
    one = "[    5.000000] WARNING: CPU: 0 PID: 1 at fs/x.c:1 foo+0x1/0x2\n"
    events = scan_console(one * 3)
    assert len(events) == 3 and unique_titles(events) == ["WARNING in foo"]


def test_first_interesting_frame_skips_machinery():
    frames = ["dump_stack_lvl", "__might_resched.cold", "__mutex_lock.constprop.0",
              "mutex_lock_nested", "sysvec_apic_timer_interrupt", "ext4_foo.isra.0", "bar"]
    assert first_interesting_frame(frames) == "ext4_foo"
    assert first_interesting_frame(["dump_stack_lvl", "schedule"]) is None


# ------------------------------------------------------------------------------------------
# Streaming: files and long lines
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ALL_FIXTURES, ids=[p.name for p in ALL_FIXTURES])
def test_file_scan_equals_text_scan(path):
    assert scan_console_file(path) == scan_console(read(path))


def test_file_scan_of_a_missing_file_is_a_harness_error(tmp_path):
    with pytest.raises(HarnessError, match="cannot read"):
        scan_console_file(tmp_path / "missing.log")


@pytest.mark.parametrize("size", [1000, MAX_LINE - 1, MAX_LINE + 1, 3 * MAX_LINE])
def test_overlong_line_is_scanned_in_pieces_the_same_way_everywhere(size, tmp_path):
    """A line of megabytes (a binary blob on the console) is not held whole: EventWatcher.feed,
    the text scan and the file scan cut it into the same pieces."""
    text = read(FIXTURES / "console" / "synth-6.1-hung-task-panic.txt")
    blob = "x" * size + "\n"
    doctored = blob + text + blob + text
    whole = scan_console(doctored)
    assert [e.title for e in whole] == [e.title for e in scan_console(text)] * 2
    assert feed_in_chunks(doctored, 4096) == whole
    assert feed_in_chunks(doctored, 10**9) == whole
    f = tmp_path / "blob.log"
    f.write_text(doctored, newline="")
    assert scan_console_file(f) == whole
    watcher = EventWatcher()
    watcher.feed("y" * (5 * MAX_LINE))
    assert len(watcher._partial) < MAX_LINE  # pieces of a line without "\n" are consumed
