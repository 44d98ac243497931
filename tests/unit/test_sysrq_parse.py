"""Tests for harness.evidence.console (console-line cleaning, frames) and harness.evidence.sysrq
(sysrq/workqueue dumps).

Every ``*.txt`` under tests/fixtures/sysrq/ (synthesized ``synth-*`` and real ``captured-*``
consoles) is checked against generic invariants; the synthesized ones also have exact expectations.
"""

from __future__ import annotations

import argparse
import json
import re
import tracemalloc
from pathlib import Path

import pytest

from harness.cli import sysrq as cli_sysrq
from harness.errors import HarnessError
from harness.evidence.console import (
    MAX_LINE,
    Frame,
    blocked_in,
    clean_console_line,
    console_file_lines,
    console_lines,
    iter_console_lines,
    parse_frame,
    rip_function,
    split_lines,
)
from harness.evidence.events import scan_console
from harness.evidence.summary import summarize_dump, to_json
from harness.evidence.sysrq import SysrqDump, iter_dumps, iter_dumps_file, parse_dumps, parse_dumps_file, wq_flag_names

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
SYSRQ_FIXTURES = sorted((FIXTURES / "sysrq").glob("*.txt"))
ALL_FIXTURES = SYSRQ_FIXTURES + sorted((FIXTURES / "console").glob("*.txt"))
TASK_STATES = set("RSDTtXZPIKWN")  # task_state_to_char() and older variants


def read(path: Path) -> str:
    with open(path, newline="") as fh:  # keep \r\n as captured
        return fh.read()


def ids(paths: list[Path]) -> list[str]:
    return [p.name for p in paths]


def shape(dumps: list[SysrqDump]) -> list[dict]:
    """Dumps as JSON without positional fields, to compare parses of transformed texts."""
    out = []
    for d in dumps:
        data = to_json(d)
        for key in ("start_offset", "end_offset", "timestamp"):
            data.pop(key)
        for task in data["tasks"]:
            task.pop("offset")
        out.append(data)
    return out


def lines_in(text: str, start: int, end: int, pattern: str) -> int:
    return len(re.findall(pattern, text[start:end], flags=re.M))


# ------------------------------------------------------------------------------------------
# Generic invariants, for every fixture (add captured-*.txt files and they are checked too)
# ------------------------------------------------------------------------------------------


def test_there_are_sysrq_fixtures():
    names = ids(SYSRQ_FIXTURES)
    assert "synth-6.1-sysrq-t-dio-sync.txt" in names
    assert "synth-6.1-wq-lockup-sysrq-w-dio-vdb-crlf.txt" in names


@pytest.mark.parametrize("path", SYSRQ_FIXTURES, ids=ids(SYSRQ_FIXTURES))
def test_every_header_gives_a_dump(path):
    text = read(path)
    dumps = parse_dumps(text)
    assert dumps, f"no dump found in {path.name}"
    sysrq = [("w" if m[1] else "t") for m in re.finditer(r"sysrq: Show (Blocked )?State", text)]
    assert [d.kind for d in dumps if d.kind != "wq"] == sysrq
    # sysrq-t's own "Showing busy workqueues" belongs to its 't' dump; others stand alone
    t_spans = [(d.start_offset, d.end_offset) for d in dumps if d.kind == "t"]
    standalone = [m.start() for m in re.finditer(r"Showing busy workqueues", text)
                  if not any(a <= m.start() < b for a, b in t_spans)]
    assert sum(1 for d in dumps if d.kind == "wq") == len(standalone)


@pytest.mark.parametrize("path", ALL_FIXTURES, ids=ids(ALL_FIXTURES))
def test_dump_invariants(path):
    text = read(path)
    dumps = parse_dumps(text)
    previous_end = 0
    for d in dumps:
        assert d.kind in {"w", "t", "wq"}
        assert previous_end <= d.start_offset < d.end_offset <= len(text)
        previous_end = d.end_offset
        first = text[d.start_offset:].split("\n", 1)[0]
        assert ("Show Blocked State" in first) if d.kind == "w" else True
        assert ("Show State" in first) if d.kind == "t" else True
        assert ("Showing busy workqueues" in first) if d.kind == "wq" else True
        if d.kind == "t":
            assert d.tasks, "sysrq-t always prints at least the task that triggered it"
        # nothing inside the dump's span was skipped: every task and workqueue line was parsed
        assert lines_in(text, d.start_offset, d.end_offset, r"task:.*state:.*pid:") == len(d.tasks)
        assert (lines_in(text, d.start_offset, d.end_offset, r"workqueue \S+: flags=0x")
                == len(d.workqueues))
        assert lines_in(text, d.start_offset, d.end_offset, r"\bpool \d+: cpus=") == len(d.pools)
        for t in d.tasks:
            assert t.pid > 0 and t.comm
            assert t.state in TASK_STATES
            assert t.raw_stack, f"{t.comm}:{t.pid} has no stack lines"
            assert all("+0x" not in f and not f.startswith("?") for f in t.stack)
            assert len(t.stack) <= len(t.raw_stack)
            assert text[t.offset:].split("\n", 1)[0].find(f"pid:{t.pid}") >= 0
        for wq in d.workqueues:
            assert wq.name and re.fullmatch(r"0x[0-9a-f]+", wq.flags)
            assert wq.pwqs, f"workqueue {wq.name} without pwq"
            for p in wq.pwqs:
                assert p.active >= 0
                if p.max_active is not None:
                    assert p.active <= p.max_active
                assert all(n > 0 for n in [*p.in_flight.values(), *p.pending.values(),
                                           *p.inactive.values()])
                assert sum(p.in_flight.values()) >= len(p.in_flight_pids)
                assert set(p.rescuers) <= set(p.in_flight_pids)
        for pool in d.pools:
            assert pool.workers >= len(pool.idle) and pool.hung_seconds >= 0
        summary = summarize_dump(d)
        assert all(isinstance(line, str) and line for line in summary)
        json.dumps(to_json(d))


@pytest.mark.parametrize("path", ALL_FIXTURES, ids=ids(ALL_FIXTURES))
def test_line_endings_and_indentation_do_not_change_the_parse(path):
    text = read(path)
    expected = shape(parse_dumps(text))
    unix = text.replace("\r\n", "\n")
    assert shape(parse_dumps(unix)) == expected
    assert shape(parse_dumps(unix.replace("\n", "\r\n"))) == expected
    # indentation lost (e.g. by a mail client or a log shipper) must not matter either
    flat = re.sub(r"^((?:\[\s*\d+\.\d+\] )?)[ \t]+", r"\1", unix, flags=re.M)
    assert shape(parse_dumps(flat)) == expected


TIMED_FIXTURES = [p for p in SYSRQ_FIXTURES
                  if re.search(r"^\[\s*\d+\.\d+\] ", read(p), flags=re.M)]


@pytest.mark.parametrize("path", TIMED_FIXTURES, ids=ids(TIMED_FIXTURES))
def test_journal_prefixes_parse_like_printk_times(path):
    """The same dump read from the journal: "host kernel: " tags, other units' lines mixed in."""
    text = read(path).replace("\r\n", "\n")
    out = []
    for line in text.split("\n")[:-1]:
        m = re.match(r"^\[\s*\d+\.\d+\] ", line)
        if m:
            out.append("Nov 28 16:55:01 kharness kernel: " + line[m.end():])
        else:  # user-space console output becomes another unit's journal line
            out.append("Nov 28 16:55:01 kharness systemd[1]: " + line)
    journal = "\n".join(out) + "\n"
    assert shape(parse_dumps(journal)) == shape(parse_dumps(text))


# ------------------------------------------------------------------------------------------
# synth-6.1-sysrq-t-dio-sync.txt: sysrq-t with sched-debug output, dio-sync 1/1 + 64 inactive
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sysrq_t() -> tuple[str, SysrqDump]:
    text = read(FIXTURES / "sysrq" / "synth-6.1-sysrq-t-dio-sync.txt")
    dumps = parse_dumps(text)
    assert len(dumps) == 1
    return text, dumps[0]


def test_sysrq_t_tasks(sysrq_t):
    text, d = sysrq_t
    assert d.kind == "t"
    assert d.timestamp == pytest.approx(245.118307)
    assert text[d.start_offset:].startswith("[  245.118307] sysrq: Show State")
    assert [(t.comm, t.pid, t.state) for t in d.tasks] == [
        ("systemd", 1, "S"), ("kthreadd", 2, "S"), ("kworker/0:1", 23, "I"),
        ("jbd2/vdb-8", 172, "D"), ("kworker/u4:2", 187, "D"), ("fio", 1234, "D"),
        ("stress-ng", 1301, "R"), ("bash", 1150, "R")]
    assert [t.blocked_in for t in d.tasks] == [
        "do_epoll_wait", "kthreadd", "worker_thread", "jbd2_journal_commit_transaction",
        "jbd2_log_wait_commit", "__iomap_dio_rw", None, "sched_show_task"]


def test_sysrq_t_dio_sync_kworker(sysrq_t):
    _, d = sysrq_t
    kw = next(t for t in d.tasks if t.pid == 187)
    assert (kw.comm, kw.state, kw.ppid, kw.flags) == ("kworker/u4:2", "D", 2, "0x00004000")
    assert (kw.workqueue, kw.function, kw.worker_desc) == ("dio-sync", "iomap_dio_complete_work",
                                                         None)
    # a user-space line ("[  OK  ] Started session-3.scope") is printed inside this stack
    assert kw.stack == [
        "__schedule", "schedule", "jbd2_log_wait_commit", "jbd2_complete_transaction",
        "ext4_sync_file", "iomap_dio_complete", "iomap_dio_complete_work", "process_one_work",
        "worker_thread", "kthread", "ret_from_fork"]
    assert "? prepare_to_wait_event+0x5d/0x180" in kw.raw_stack
    assert kw.raw_stack[0] == "<TASK>" and kw.raw_stack[-1] == "</TASK>"
    assert kw.blocked_in == "jbd2_log_wait_commit"


def test_sysrq_t_user_and_running_tasks(sysrq_t):
    _, d = sysrq_t
    by_comm = {t.comm: t for t in d.tasks}
    fio = by_comm["fio"]
    assert fio.ppid == 1230 and fio.flags == "0x00000002" and fio.workqueue is None
    assert fio.stack[-1] == "entry_SYSCALL_64_after_hwframe"  # user registers are not frames
    assert "RIP: 0033:0x7f6b2c8f5f33" in fio.raw_stack
    assert by_comm["stress-ng"].stack == []  # caught running: only "?" entries
    assert len(by_comm["stress-ng"].raw_stack) == 5
    assert by_comm["bash"].stack[:2] == ["sched_show_task", "show_state_filter"]


def test_sysrq_t_workqueues_after_sched_debug(sysrq_t):
    text, d = sysrq_t
    assert [wq.name for wq in d.workqueues] == ["events", "dio-sync"]
    events, dio = d.workqueues
    assert events.flags == "0x0" and events.flag_names == []
    assert events.pwqs[0].pending == {"vmstat_shepherd": 1, "psi_avgs_work": 1}
    assert dio.flags == "0xa000a"
    assert dio.flag_names == ["WQ_UNBOUND", "WQ_MEM_RECLAIM", "__WQ_ORDERED",
                              "__WQ_ORDERED_EXPLICIT"]
    (pwq,) = dio.pwqs
    assert (pwq.pool, pwq.cpus, pwq.node, pwq.pool_flags, pwq.nice) == (4, "0-1", None, "0x4", 0)
    assert (pwq.active, pwq.max_active, pwq.refcnt, pwq.mayday) == (1, 1, 66, False)
    assert pwq.in_flight == {"iomap_dio_complete_work": 1}
    assert pwq.in_flight_pids == {187: "iomap_dio_complete_work"}
    # 64 items do not fit one printk record: the list continues on a ", ..." line
    assert len(re.findall(r"iomap_dio_complete_work, iomap", text)) >= 2
    assert re.search(r"^\[[ \d.]+\] , iomap_dio_complete_work", text, flags=re.M)
    assert pwq.inactive == {"iomap_dio_complete_work": 64}
    assert pwq.pending == {} and pwq.scheduled == {}


def test_sysrq_t_pools_and_end(sysrq_t):
    text, d = sysrq_t
    assert [(p.id, p.cpus, p.node, p.flags, p.nice, p.hung_seconds, p.workers, p.idle, p.manager)
            for p in d.pools] == [(0, "0", 0, "0x0", 0, 3, 3, [23, 61], None),
                                  (4, "0-1", None, "0x4", 0, 0, 4, [95, 103, 46], None)]
    assert text[d.end_offset:].startswith("[  246.004411] audit:")


def test_sysrq_t_summary(sysrq_t):
    _, d = sysrq_t
    assert summarize_dump(d) == [
        "events: active 2/256, 1 pending vmstat_shepherd, 1 pending psi_avgs_work",
        "dio-sync: active 1/1, 64 inactive iomap_dio_complete_work; "
        "1 kworker blocked in jbd2_log_wait_commit",
        "pool 0 (cpus=0): first pending work waiting 3s, 3 workers, 2 idle",
        "jbd2/vdb-8 (pid 172) D, blocked in jbd2_journal_commit_transaction",
        "kworker/u4:2 (pid 187) D in workqueue dio-sync (iomap_dio_complete_work), "
        "blocked in jbd2_log_wait_commit",
        "fio (pid 1234) D, blocked in __iomap_dio_rw",
    ]


def test_to_json(sysrq_t):
    _, d = sysrq_t
    data = json.loads(json.dumps(to_json(d)))
    assert data["kind"] == "t" and len(data["tasks"]) == 8
    dio = data["workqueues"][1]
    assert dio["flag_names"][0] == "WQ_UNBOUND"
    assert dio["pwqs"][0]["in_flight_pids"] == {"187": "iomap_dio_complete_work"}
    assert dio["pwqs"][0]["inactive"] == {"iomap_dio_complete_work": 64}
    assert data["tasks"][4]["blocked_in"] == "jbd2_log_wait_commit"
    assert data["summary"] == summarize_dump(d)


# ------------------------------------------------------------------------------------------
# synth-6.1-wq-lockup-sysrq-w-dio-vdb-crlf.txt: CRLF serial console, login prompt interleaved
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dio_vdb() -> tuple[str, list[SysrqDump]]:
    text = read(FIXTURES / "sysrq" / "synth-6.1-wq-lockup-sysrq-w-dio-vdb-crlf.txt")
    assert "\r\n" in text
    return text, parse_dumps(text)


def test_dio_vdb_workqueue_dump(dio_vdb):
    text, dumps = dio_vdb
    assert [d.kind for d in dumps] == ["wq", "w"]
    wq = dumps[0]
    assert wq.timestamp == pytest.approx(150.771214 + 0.000173)
    assert [w.name for w in wq.workqueues] == ["kblockd", "dio/vdb"]
    kblockd, vdb = wq.workqueues
    assert kblockd.flag_names == ["WQ_MEM_RECLAIM", "WQ_HIGHPRI"] and kblockd.pwqs[0].nice == -20
    assert vdb.flags == "0x8" and vdb.flag_names == ["WQ_MEM_RECLAIM"]
    assert [(p.pool, p.cpus, p.node, p.active, p.max_active, p.refcnt, p.mayday)
            for p in vdb.pwqs] == [(0, "0", 0, 1, 256, 2, False), (2, "1", 0, 3, 256, 5, True)]
    cpu1 = vdb.pwqs[1]
    assert cpu1.in_flight == {"iomap_dio_complete_work": 2}
    assert cpu1.in_flight_pids == {215: "iomap_dio_complete_work", 41: "iomap_dio_complete_work"}
    assert cpu1.rescuers == [41]
    assert cpu1.pending == {"iomap_dio_complete_work": 1}
    assert [(p.id, p.hung_seconds, p.workers, p.idle, p.manager) for p in wq.pools] == [
        (0, 0, 2, [30], None), (2, 41, 2, [], 218), (3, 12, 2, [26], None)]
    assert summarize_dump(wq) == [
        "kblockd: active 1/256, 1 pending blk_mq_run_work_fn",
        "dio/vdb: active 4/256, 3 in-flight iomap_dio_complete_work, "
        "1 pending iomap_dio_complete_work, MAYDAY",
        "pool 2 (cpus=1): first pending work waiting 41s, 2 workers, 0 idle",
        "pool 3 (cpus=1): first pending work waiting 12s, 2 workers, 1 idle",
    ]


def test_dio_vdb_blocked_tasks(dio_vdb):
    text, dumps = dio_vdb
    w = dumps[1]
    assert w.timestamp == pytest.approx(160.512001)
    # "kworker/1:3" shares its console line with a "debian login: " prompt
    assert [(t.comm, t.pid) for t in w.tasks] == [
        ("dio/vdb", 41), ("kworker/0:2", 201), ("kworker/1:3", 215), ("fio", 1240),
        ("sync", 1402)]
    assert {t.workqueue for t in w.tasks[:3]} == {"dio/vdb"}
    assert w.tasks[0].stack[-5:-2] == ["iomap_dio_complete_work", "process_one_work",
                                       "rescuer_thread"]
    # the hung-task report that follows is not part of the sysrq-w dump
    assert "INFO: task kworker/0:2:201 blocked" in text[w.end_offset:]
    assert "INFO: task" not in text[w.start_offset:w.end_offset]
    assert summarize_dump(w) == [
        "dio/vdb (pid 41) D in workqueue dio/vdb (iomap_dio_complete_work), "
        "blocked in start_this_handle",
        "kworker/0:2 (pid 201) D in workqueue dio/vdb (iomap_dio_complete_work), "
        "blocked in start_this_handle",
        "kworker/1:3 (pid 215) D in workqueue dio/vdb (iomap_dio_complete_work), "
        "blocked in start_this_handle",
        "fio (pid 1240) D, blocked in __iomap_dio_rw",
        "sync (pid 1402) D, blocked in iterate_supers",
    ]


def test_pasted_report_without_timestamps():
    text = read(FIXTURES / "sysrq" / "synth-6.1-pasted-wq-lockup-nvme.txt")
    (d,) = parse_dumps(text)
    assert d.kind == "wq" and d.timestamp is None
    assert [w.name for w in d.workqueues] == ["writeback", "dio/nvme0n1"]
    assert d.workqueues[0].flag_names == ["WQ_UNBOUND", "WQ_MEM_RECLAIM", "WQ_SYSFS"]
    assert [p.id for p in d.pools] == [2, 8]
    assert text[d.end_offset:].startswith("Any idea")  # the prose after the dump ends it
    assert summarize_dump(d) == [
        "writeback: active 1/256, 1 pending wb_workfn",
        "dio/nvme0n1: active 3/256, 3 in-flight iomap_dio_complete_work",
        "pool 8 (cpus=0-3): first pending work waiting 35s, 3 workers, 2 idle",
    ]


# ------------------------------------------------------------------------------------------
# Small inline cases: other kernel versions, list syntax, section ends
# ------------------------------------------------------------------------------------------

TASK_BLOCK = """\
[   10.000001] task:kworker/0:1     state:D stack:0     pid:23    ppid:2      flags:0x00004000
[   10.000002] Workqueue: events_unbound flush_to_ldisc (ttyS0)
[   10.000003] Call Trace:
[   10.000004]  <TASK>
[   10.000005]  __schedule+0x34d/0x9e0
[   10.000006]  schedule+0x5a/0xd0
[   10.000007]  rwsem_down_write_slowpath.isra.0+0x2a8/0x4c0
[   10.000008]  down_write+0x43/0x90
[   10.000009]  n_tty_receive_buf_common+0x4f/0x5b0
[   10.000010]  </TASK>
"""


def test_section_ends_at_unrelated_kernel_message():
    text = ("[   10.000000] sysrq: Show Blocked State\n" + TASK_BLOCK
            + "[   10.100000] EXT4-fs error (device vdb): ext4_find_entry:1598: comm ls: bad\n"
            + TASK_BLOCK.replace("pid:23 ", "pid:99 "))
    (d,) = parse_dumps(text)
    assert [t.pid for t in d.tasks] == [23]
    assert text[d.end_offset:].startswith("[   10.100000] EXT4-fs error")
    t = d.tasks[0]
    assert (t.workqueue, t.function, t.worker_desc) == ("events_unbound", "flush_to_ldisc", "ttyS0")
    assert t.blocked_in == "n_tty_receive_buf_common"  # ".isra.0" slowpath skipped


def test_sysrq_w_with_no_blocked_task_is_an_empty_dump():
    text = ("[   13.637332] sysrq: Show Blocked State\n[   15.766289] sysrq: Show State\n"
            + TASK_BLOCK)
    dumps = parse_dumps(text)
    assert [(d.kind, len(d.tasks)) for d in dumps] == [("w", 0), ("t", 1)]


def test_newer_task_header_fields():
    text = ("sysrq: Show Blocked State\n"
            "task:kworker/0:1     state:D stack:0     pid:23    tgid:23    ppid:2      "
            "task_flags:0x4208060 flags:0x00004000\n"
            "Call Trace:\n <TASK>\n __schedule+0x1/0x2\n schedule+0x1/0x2\n foo+0x1/0x2\n"
            " </TASK>\n")
    (d,) = parse_dumps(text)
    (t,) = d.tasks
    assert (t.pid, t.tgid, t.ppid, t.flags, t.blocked_in) == (23, 23, 2, "0x00004000", "foo")


def test_comm_with_spaces():
    text = ("sysrq: Show Blocked State\n"
            "task:Web Content     state:D stack:0     pid:4242  ppid:4000   flags:0x00000000\n"
            "Call Trace:\n <TASK>\n __schedule+0x1/0x2\n folio_wait_bit_common+0x1/0x2\n"
            " folio_wait_writeback+0x1/0x2\n </TASK>\n")
    (t,) = parse_dumps(text)[0].tasks
    assert t.comm == "Web Content" and t.blocked_in == "folio_wait_writeback"


def test_work_list_syntax():
    text = """\
Showing busy workqueues and worker pools:
workqueue ext4-rsv-conversion: flags=0x2000a
  pwq 4: cpus=0-1 flags=0x4 nice=0 active=1 refcnt=4
    in-flight: 123:ext4_end_io_rsv_work [ext4] BAR(456) drain_one [mod], 789(RESCUER):other_work
    pending: ext4_end_io_rsv_work [ext4], 3*wb_workfn BAR(77)
    delayed: 64*iomap_dio_complete_work
pool 4: cpus=0-1 flags=0x4 nice=0 hung=7s workers=3 manager: 12 idle: 5
"""
    (d,) = parse_dumps(text)
    (pwq,) = d.workqueues[0].pwqs
    assert (pwq.active, pwq.max_active, pwq.refcnt) == (1, None, 4)  # "active=N" (newer kernels)
    assert pwq.in_flight == {"ext4_end_io_rsv_work": 1, "other_work": 1}
    assert pwq.in_flight_pids == {123: "ext4_end_io_rsv_work", 789: "other_work"}
    assert pwq.rescuers == [789]
    assert pwq.scheduled == {"BAR(456)": 1, "drain_one": 1}
    assert pwq.pending == {"ext4_end_io_rsv_work": 1, "wb_workfn": 3, "BAR(77)": 1}
    assert pwq.inactive == {"iomap_dio_complete_work": 64}  # "delayed:" and "N*func" forms
    assert d.pools[0].manager == 12 and d.pools[0].idle == [5]
    assert summarize_dump(d) == [
        "ext4-rsv-conversion: active 1, 1 in-flight ext4_end_io_rsv_work, 1 in-flight other_work, "
        "1 pending ext4_end_io_rsv_work, 3 pending wb_workfn, 1 pending BAR(77), "
        "64 inactive iomap_dio_complete_work",
        "pool 4 (cpus=0-1): first pending work waiting 7s, 3 workers, 1 idle",
    ]


UNRELIABLE_TASK = """\
task:kworker/1:0     state:D stack:14584 pid:19    ppid:2      flags:0x00004000
Workqueue: dio/nvme0n1 iomap_dio_complete_work
Call Trace:
 <TASK>
 ? iomap_dio_complete+0x108/0x130
 ? process_one_work+0x1c3/0x310
 </TASK>
"""


def test_unreliable_only_stack_is_reported_as_such():
    # real 6.1 captures show D-state kworkers caught running on another CPU: only "?" entries
    (d,) = parse_dumps("sysrq: Show Blocked State\n" + UNRELIABLE_TASK)
    assert d.tasks[0].stack == [] and d.tasks[0].blocked_in is None
    assert summarize_dump(d) == ["kworker/1:0 (pid 19) D in workqueue dio/nvme0n1 "
                            "(iomap_dio_complete_work), no reliable stack frames"]
    untimed_block = re.sub(r"^\[[^\]]*\] ", "", TASK_BLOCK, flags=re.M)
    (t,) = parse_dumps("sysrq: Show State\n" + UNRELIABLE_TASK + untimed_block + """\
Showing busy workqueues and worker pools:
workqueue dio/nvme0n1: flags=0x8
  pwq 2: cpus=1 node=0 flags=0x0 nice=0 active=3/256 refcnt=4
    in-flight: 19:iomap_dio_complete_work, 23:iomap_dio_complete_work, 31:iomap_dio_complete_work
""")
    # the text stops before the pool lines a work in flight implies: said first
    assert summarize_dump(t)[:2] == [
        "dump cut short before the worker pools: the log ends there",
        "dio/nvme0n1: active 3/256, 1 in-flight iomap_dio_complete_work; "
        "1 kworker with no reliable stack frames, 1 kworker blocked in n_tty_receive_buf_common"]


# ------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw, expected", [
    ("[   12.345678] sysrq: Show State", ("sysrq: Show State", 12.345678, True)),
    ("[   12.345678]  <TASK>\r", (" <TASK>", 12.345678, True)),
    ("[   12.345678][  T123] task:fio", ("task:fio", 12.345678, True)),
    ("<6>[   12.345678] foo", ("foo", 12.345678, True)),
    ("6,1234,12345678,-;Showing busy workqueues", ("Showing busy workqueues", None, True)),
    ("Nov 28 16:55:01 debian kernel: foo bar", ("foo bar", None, True)),
    ("2024-11-28T16:55:01+0000 debian kernel:  __schedule+0x1/0x2",
     (" __schedule+0x1/0x2", None, True)),
    ("[   12.345678] debian kernel: foo", ("foo", 12.345678, True)),
    ("[Thu Nov 28 16:55:01 2024] foo", ("foo", None, True)),
    ("debian login: [   45.123456] BUG: x", ("BUG: x", 45.123456, True)),
    ("\x1b[?2004hroot@kharness:~# [    7.187826] EXT4-fs (nvme0n1): mounted",
     ("EXT4-fs (nvme0n1): mounted", 7.187826, True)),
    ("Jobs: 1 [10%]\rJobs: 1 [20%]\r[   61.223344] WARNING: x\r", ("WARNING: x", 61.223344, True)),
    ("Jobs: 1 [10%]\rJobs: 1 [20%]", ("Jobs: 1 [20%]", None, False)),
    ("[  OK  ] Started foo.service", ("[  OK  ] Started foo.service", None, False)),
    ("plain text  ", ("plain text", None, False)),
])
def test_clean_console_line(raw, expected):
    assert clean_console_line(raw) == expected


@pytest.mark.parametrize("line, expected", [
    (" __schedule+0x34d/0x9e0", Frame("__schedule", "0x34d/0x9e0", None, True)),
    (" ? finish_wait+0x80/0x80", Frame("finish_wait", "0x80/0x80", None, False)),
    (" jbd2_log_wait_commit+0xc5/0x140 [jbd2]", Frame("jbd2_log_wait_commit", "0xc5/0x140",
                                                      "jbd2", True)),
    (" ext4_map_blocks+0x2a4/0x6f0 [ext4 0123abcdef]", Frame("ext4_map_blocks", "0x2a4/0x6f0",
                                                            "ext4", True)),
    (" [<ffffffff8104a5b2>] warn_slowpath_common+0x82/0xc0", Frame("warn_slowpath_common",
                                                                  "0x82/0xc0", None, True)),
    (" finish_task_switch.isra.0+0x7e/0x240", Frame("finish_task_switch.isra.0", "0x7e/0x240",
                                                    None, True)),
    ("RIP: 0010:iomap_dio_complete+0x2a/0x1c0", None),
    ("Call Trace:", None),
    ("EXT4-fs (vdb): mounted filesystem", None),
])
def test_parse_frame(line, expected):
    assert parse_frame(line) == expected


def test_rip_function():
    rip = "RIP: 0010:ext4_dio_write_end_io+0x2a/0x80 [ext4]"
    assert rip_function(rip) == "ext4_dio_write_end_io"
    assert rip_function("RIP: 0033:0x7f6b2c8f5f33") is None


@pytest.mark.parametrize("stack, expected", [
    (["__schedule", "schedule", "io_schedule", "folio_wait_bit_common", "folio_wait_writeback",
      "__filemap_fdatawait_range"], "folio_wait_writeback"),
    (["__schedule", "schedule", "rwsem_down_write_slowpath", "down_write", "ext4_setattr"],
     "ext4_setattr"),
    (["__schedule", "schedule", "schedule_timeout", "wait_for_completion",
      "__flush_work.isra.0", "ext4_sync_fs"], "__flush_work"),
    (["__schedule", "schedule", "schedule_preempt_disabled", "__mutex_lock.constprop.0",
      "jbd2_log_do_checkpoint"], "jbd2_log_do_checkpoint"),
    (["__schedule", "schedule", "bit_wait_io", "__wait_on_bit", "out_of_line_wait_on_bit",
      "__wait_on_buffer", "jbd2_journal_commit_transaction"], "jbd2_journal_commit_transaction"),
    (["__schedule", "schedule"], None),
    ([], None),
])
def test_blocked_in(stack, expected):
    assert blocked_in(stack) == expected


@pytest.mark.parametrize("flags, expected", [
    ("0x8", ["WQ_MEM_RECLAIM"]),
    ("0x20002", ["WQ_UNBOUND", "__WQ_ORDERED"]),
    ("0x0", []),
    (0x100001, ["0x100001"]),
])
def test_wq_flag_names(flags, expected):
    assert wq_flag_names(flags) == expected


# ------------------------------------------------------------------------------------------
# Dumps cut short
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ALL_FIXTURES, ids=ids(ALL_FIXTURES))
def test_complete_fixture_dumps_are_not_truncated(path):
    for d in parse_dumps(read(path)):
        assert (d.truncated, d.cut_in, d.cut_by) == (False, None, None)
        assert not any(line.startswith("dump cut short") for line in summarize_dump(d))


def test_sysrq_w_cut_inside_any_stack_says_so(dio_vdb):
    """Cut the log at every line inside a <TASK>...</TASK> block: the dump says where it was cut;
    cut just after a "</TASK>", it is complete."""
    text, dumps = dio_vdb
    w = dumps[1]
    body = text[:w.end_offset]
    lines = body.splitlines(keepends=True)
    pos, inside, checked = 0, None, 0
    for line in lines:
        pos += len(line)
        if pos <= w.start_offset:
            continue
        if re.search(r"task:(.*?) +state:.* pid:(\d+)", line):
            m = re.search(r"task:(.*?) +state:.* pid:(\d+)", line)
            inside = f"in the stack of {m[1]} (pid {m[2]})"
        (cut,) = [d for d in parse_dumps(body[:pos]) if d.kind == "w"]
        if "</TASK>" in line:
            assert not cut.truncated, line
            inside = None
        elif inside:
            checked += 1
            assert (cut.truncated, cut.cut_in, cut.cut_by) == (True, inside, None), line
            assert summarize_dump(cut)[0] == f"dump cut short {inside}: the log ends there"
            assert cut.end_offset == pos
    assert checked > 50


def test_report_starting_inside_a_stack_cuts_the_dump(sysrq_t):
    text, _ = sysrq_t
    lines = text.splitlines(keepends=True)
    at = next(i for i, line in enumerate(lines) if "jbd2_log_wait_commit+" in line)
    bug = "[  245.121000] BUG: workqueue lockup - pool cpus=0 node=0 flags=0x0 nice=0 stuck for 31s!\n"
    d = parse_dumps("".join(lines[:at] + [bug] + lines[at:]))[0]
    assert d.kind == "t" and d.truncated
    assert d.cut_in == "in the stack of kworker/u4:2 (pid 187)"
    assert d.cut_by == bug.split("] ", 1)[1].strip()
    assert d.tasks[-1].pid == 187 and d.workqueues == []
    assert summarize_dump(d)[0] == ("dump cut short in the stack of kworker/u4:2 (pid 187): interrupted "
                               f"by {d.cut_by!r}")


@pytest.mark.parametrize("stop_after, cut_in", [
    ("Sched Debug Version", "before the workqueue dump"),
    ("Showing busy workqueues", None),  # no busy workqueue is a complete dump
    ("workqueue dio-sync: flags", "in workqueue dio-sync"),
    ("pwq 4:", "in workqueue dio-sync, pwq 4"),
    ("pool 0:", None),
])
def test_sysrq_t_cut_between_tasks_and_pools(sysrq_t, stop_after, cut_in):
    text, _ = sysrq_t
    end = text.index("\n", text.index(stop_after)) + 1
    (d,) = parse_dumps(text[:end])
    assert d.truncated == (cut_in is not None)
    assert d.cut_in == cut_in and d.cut_by is None


def test_in_flight_work_without_pools_is_cut_only_at_a_report_or_the_end():
    wq = ("Showing busy workqueues and worker pools:\nworkqueue events: flags=0x0\n"
          "  pwq 2: cpus=1 node=0 flags=0x0 nice=0 active=1/256 refcnt=2\n"
          "    in-flight: 19:vmstat_update\n")
    assert parse_dumps(wq)[0].cut_in == "before the worker pools"
    (d, _) = parse_dumps(wq + "sysrq: Show Blocked State\n")
    assert d.cut_in == "before the worker pools" and d.cut_by == "sysrq: Show Blocked State"
    assert not parse_dumps(wq + "Any idea what is going on?\n")[0].truncated
    assert not parse_dumps(wq + "pool 2: cpus=1 node=0 flags=0x0 nice=0 hung=0s workers=2\n")[
        0].truncated


def test_sysrq_t_header_alone_is_cut():
    (d,) = parse_dumps("[    1.000000] sysrq: Show State\n")
    assert d.truncated and d.cut_in == "before the workqueue dump"
    assert "cut_in" in to_json(d) and to_json(d)["truncated"] is True


def test_task_header_without_stack_is_cut():
    (d,) = parse_dumps("sysrq: Show Blocked State\n" + TASK_BLOCK.splitlines(keepends=True)[0])
    assert d.truncated and d.cut_in == "in the stack of kworker/0:1 (pid 23)"


def test_stack_without_markers_is_complete_when_it_has_frames():
    """arm64 and old x86 kernels print no <TASK> markers: no way to tell, so not cut."""
    unmarked = re.sub(r"^.*</?TASK>\n", "", TASK_BLOCK, flags=re.M)
    (d,) = parse_dumps("[   10.000000] sysrq: Show Blocked State\n" + unmarked)
    assert d.tasks[0].stack and not d.truncated


# ------------------------------------------------------------------------------------------
# Streaming: files, lines, the CLI
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ALL_FIXTURES, ids=ids(ALL_FIXTURES))
def test_file_parse_equals_text_parse(path):
    assert parse_dumps_file(path) == parse_dumps(read(path))


def test_dumps_are_yielded_as_they_end():
    text = read(FIXTURES / "sysrq" / "synth-6.1-wq-lockup-sysrq-w-dio-vdb-crlf.txt")
    fed: list[int] = []

    def lines():
        for line in iter_console_lines(split_lines(text)):
            fed.append(line.end)
            yield line

    first = next(iter_dumps(lines()))
    assert first.kind == "wq" and fed[-1] < len(text) // 2  # read just past the first dump


def test_long_lines_come_in_pieces_with_exact_offsets(tmp_path):
    long = "é" * (MAX_LINE + 10)
    text = "[    1.000000] sysrq: Show Blocked State\r\n" + long + "\n" + TASK_BLOCK
    pieces = list(split_lines(text))
    assert "".join(pieces) == text and max(map(len, pieces)) == MAX_LINE
    lines = console_lines(text)
    assert [(a.end, b.offset) for a, b in zip(lines, lines[1:], strict=False)] == [
        (a.end, a.end) for a in lines[:-1]]
    assert lines[-1].end == len(text)
    f = tmp_path / "long.log"
    f.write_text(text, encoding="utf-8", newline="")
    assert list(console_file_lines(f)) == lines
    assert parse_dumps_file(f) == parse_dumps(text)


def test_unreadable_file_is_a_harness_error(tmp_path):
    with pytest.raises(HarnessError, match="cannot read"):
        parse_dumps_file(tmp_path / "missing.log")
    with pytest.raises(HarnessError, match="cannot read"):
        list(iter_dumps_file(tmp_path))  # a directory


def test_undecodable_bytes_are_replaced(tmp_path):
    f = tmp_path / "bin.log"
    f.write_bytes(b"\xff\xfe[    1.000000] sysrq: Show Blocked State\n"
                  + TASK_BLOCK.encode() + b"\x80\n")
    (d,) = parse_dumps_file(f)
    assert [t.pid for t in d.tasks] == [23] and not d.truncated


def _cli(argv: list[str], capsys) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser()
    cli_sysrq.add_commands(parser.add_subparsers(dest="cmd"))
    args = parser.parse_args(argv)
    rc = args.func(args)
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


@pytest.mark.parametrize("path", ALL_FIXTURES, ids=ids(ALL_FIXTURES))
def test_cli_json_is_what_the_text_parsers_give(path, capsys):
    rc, out, _ = _cli(["sysrq", "parse", "--json", str(path)], capsys)
    text = read(path)
    expected = {"dumps": [to_json(d) for d in parse_dumps(text)],
                "events": [e.__dict__ for e in scan_console(text)]}
    assert rc == 0
    assert out == json.dumps(expected, indent=1, default=str) + "\n"


def test_cli_text_says_a_dump_was_cut(tmp_path, capsys):
    text = read(FIXTURES / "sysrq" / "synth-6.1-sysrq-t-dio-sync.txt")
    f = tmp_path / "cut.log"
    f.write_text(text[:text.index("Sched Debug Version")], newline="")
    rc, out, _ = _cli(["sysrq", "parse", str(f)], capsys)
    assert rc == 0
    assert "dump 1 (sysrq-t, 8 tasks, 0 busy workqueues)" in out
    assert "dump cut short before the workqueue dump: the log ends there" in out


def test_cli_nothing_found_and_unreadable(tmp_path, capsys):
    f = tmp_path / "quiet.log"
    f.write_text("[    1.000000] Linux version 6.1.0\n")
    rc, out, err = _cli(["sysrq", "parse", str(f)], capsys)
    assert rc == 1 and "no sysrq dumps or kernel events found" in " ".join(err.split())
    with pytest.raises(HarnessError, match="cannot read"):
        _cli(["sysrq", "parse", "--json", str(tmp_path / "missing")], capsys)
    assert capsys.readouterr().out == ""  # nothing written before the error


def test_streaming_memory_does_not_grow_with_the_log(tmp_path):
    """tracemalloc peak while parsing a log file is that of its largest dump: the same for four
    copies of the fixtures as for one (the text parse grows with the log)."""
    chunk = "".join(read(p).replace("\r\n", "\n") for p in SYSRQ_FIXTURES)
    peaks = []
    for copies in (1, 4):
        f = tmp_path / f"log{copies}"
        f.write_text(chunk * copies)
        tracemalloc.start()
        try:
            count = sum(1 for _ in iter_dumps_file(f))
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
        assert count == copies * len(parse_dumps(chunk))
    assert peaks[1] < 1.5 * peaks[0], peaks


@pytest.mark.parametrize("text", [
    "sysrq: Show Blocked State\ntask:x  state:D stack:0 pid:" + "9" * 5000 + " ppid:2 flags:0x0\n",
    "Showing busy workqueues and worker pools:\nworkqueue a: flags=0x0\n  pwq 2: cpus=1 active=1\n"
    "    in-flight: ²:f\n",
    "Showing busy workqueues and worker pools:\nworkqueue a: flags=0x0\n  pwq 2: cpus=1 active=1\n"
    "    pending: " + "9" * 5000 + "*f\n",
    "Showing busy workqueues and worker pools:\npool 1: cpus=0 hung=" + "9" * 5000 + "s workers=2\n",
])
def test_absurd_numbers_do_not_raise(text):
    """Found by test_props_console: int() of 5000 digits or of "²" raised ValueError."""
    (d,) = parse_dumps(text)
    assert all(len(str(t.pid)) < 20 for t in d.tasks)
    summarize_dump(d)
    json.dumps(to_json(d))


# ------------------------------------------------------------------------------------------
# Captured from 6.12 guests (Debian's linux-source-6.12, 6.12.118, under TCG), beside the 6.1
# captures: the suite's evidence boot of patched-6.12 (sysrq-w then sysrq-t), a sampled sysrq-w
# of patched-6.12 with the jbd2 thread mid-commit, and one of baseline-6.12.
# ------------------------------------------------------------------------------------------
def test_612_patched_evidence_boot():
    dumps = parse_dumps(read(FIXTURES / "sysrq" / "captured-6.12.118-patched-ext4-nvme-unwritten-convert-wt.txt"))
    assert [d.kind for d in dumps] == ["w", "t"]
    w, t = dumps
    (worker,) = w.tasks
    # 6.12's sched_show_task() prints tgid beside pid (6.1 did not)
    assert (worker.comm, worker.pid, worker.tgid, worker.state) == ("kworker/u8:1", 32, 32, "D")
    assert (worker.workqueue, worker.function, worker.blocked_in) == (
        "dio-sync", "iomap_dio_complete_work", "jbd2_log_wait_commit")
    (wq,) = t.workqueues
    assert (wq.name, wq.flags, wq.flag_names) == ("dio-sync", "0x2", ["WQ_UNBOUND"])
    (pwq,) = wq.pwqs
    # the 6.9+ show_pwq(): "active=1 refcnt=32", no "/max_active" (6.1: "active=1/1")
    assert (pwq.pool, pwq.cpus, pwq.active, pwq.max_active, pwq.refcnt) == (8, "0-1", 1, None, 32)
    assert pwq.in_flight_pids == {32: "iomap_dio_complete_work"}
    assert pwq.inactive == {"iomap_dio_complete_work": 30}
    assert summarize_dump(t)[0] == ("dio-sync: active 1, 30 inactive iomap_dio_complete_work; "
                                    "1 kworker blocked in jbd2_log_wait_commit")


def test_612_jbd2_thread_is_named_from_its_unreliable_frames():
    """6.12's unwinder gives the jbd2 thread only __schedule/schedule as reliable; the frames
    after them are printed with '?'. The summary names the caller of the wait
    (out_of_line_wait_on_bit), not the stale frame printed before it."""
    (w,) = parse_dumps(read(FIXTURES / "sysrq" / "captured-6.12.118-patched-ext4-nvme-unwritten-convert-w-jbd2.txt"))
    worker, jbd2 = w.tasks
    assert worker.blocked_in == "jbd2_log_wait_commit"
    assert jbd2.comm == "jbd2/nvme0n1-8" and jbd2.stack == ["__schedule", "schedule"]
    assert jbd2.blocked_in == "jbd2_journal_commit_transaction (?)"
    assert summarize_dump(w)[1] == "jbd2/nvme0n1-8 (pid 87) D, blocked in jbd2_journal_commit_transaction (?)"


def test_612_baseline_kworkers_overlap_in_the_per_sb_workqueue():
    (w,) = parse_dumps(read(FIXTURES / "sysrq" / "captured-6.12.118-baseline-ext4-nvme-unwritten-convert-w.txt"))
    dio = [t for t in w.tasks if t.workqueue == "dio/nvme0n1"]
    assert len(dio) >= 10 and all(t.state == "D" for t in dio)
    # a kworker whose wait is printed only with '?' frames, under the scheduler's leftovers
    # ("? update_load_avg", "? pick_next_task_fair", "? schedule"): named by the wait's caller
    k0 = next(t for t in w.tasks if t.pid == 9)
    assert k0.stack == ["__schedule", "schedule"] and k0.blocked_in == "jbd2_log_wait_commit (?)"
    assert {t.blocked_in for t in dio} == {"jbd2_log_wait_commit", "jbd2_log_wait_commit (?)"}
