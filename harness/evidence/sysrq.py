"""Parse sysrq-w / sysrq-t task dumps and "Showing busy workqueues" sections out of console text.

The formats are the ones Linux 6.1 prints (checked against the 6.1.192 source):

* ``sysrq: Show Blocked State`` (sysrq-w: ``show_state_filter(TASK_UNINTERRUPTIBLE)``) and
  ``sysrq: Show State`` (sysrq-t: ``show_state()``, optional sched-debug and lockdep output, then
  ``show_all_workqueues()``), drivers/tty/sysrq.c;
* one ``task:`` block per task, kernel/sched/core.c ``sched_show_task()``: the header line, an
  optional ``Workqueue: NAME FUNC`` line (kernel/workqueue.c ``print_worker_info()``), an optional
  ``Stopper:`` line, then the stack (arch/x86/kernel/dumpstack.c ``show_trace_log_lvl()``, which
  brackets each stack it walks in ``<TASK>``...``</TASK>``, ``<IRQ>``...``</IRQ>``);
* ``Showing busy workqueues and worker pools:`` then ``workqueue``/``pwq``/``in-flight``/
  ``pending``/``inactive`` and ``pool`` lines, kernel/workqueue.c ``show_all_workqueues()``.

Console lines and stack lines are read with :mod:`harness.evidence.console`, which strips printk
timestamps, syslog/journal ``kernel:`` tags, /dev/kmsg prefixes and CR characters, and drops
interleaved user-space output. :class:`DumpParser` takes one line at a time and keeps only the dump
being read, so a console log of any size is parsed in bounded memory (:func:`iter_dumps_file`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from .console import (
    _DROPPED,
    ConsoleLine,
    KernelFilter,
    console_file_lines,
    is_call_trace,
    is_stack_line,
    iter_console_lines,
    parse_frame,
    rip_function,
    split_lines,
)
from .sysrq_records import PoolWorkqueue, SysrqDump, Task, WorkerPool, Workqueue, wq_flag_names  # noqa: F401

# --------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------

# Numbers that become ints are ASCII and bounded (int() refuses more than 4300 digits).
_N = r"[0-9]{1,18}(?![0-9])"
# drivers/tty/sysrq.c: pr_info("%s\n", op_p->action_msg) with pr_fmt "sysrq: "; older kernels
# (before pr_fmt was added to sysrq.c) printed "SysRq : Show Blocked State".
_SYSRQ_HDR = re.compile(r"^(?:sysrq: |SysRq : )Show (Blocked State|State)$")
_WQ_HDR = re.compile(r"^Showing busy workqueues and worker pools:$")
# kernel/sched/core.c sched_show_task(), 6.1:
#   "task:%-15.15s state:%c" ["  running task    "] " stack:%-5lu pid:%-5d ppid:%-6d flags:0x%08lx"
# Later kernels add " tgid:%-5d" before ppid and then " task_flags:0x%04x" before flags; both are
# optional here. The comm is padded to 15 characters and may itself contain spaces (the
# lookbehind keeps a long run of spaces from being rescanned from every position in it).
_TASK_HDR = re.compile(
    r"^task:(?P<comm>.*?)(?<!\s)\s+state:(?P<state>\S)(?:\s+running task)?"
    rf"\s+stack:\s*\d+\s+pid:\s*(?P<pid>{_N})(?:\s+tgid:\s*(?P<tgid>{_N}))?"
    rf"\s+ppid:\s*(?P<ppid>{_N})(?:\s+task_flags:0x[0-9a-f]+)?\s+flags:(?P<flags>0x[0-9a-f]+)")
# print_worker_info(): "Workqueue: %s %ps" [" (%s)" desc]; %ps of a module symbol adds " [mod]".
_WORKER_INFO = re.compile(
    r"^Workqueue: (?P<wq>\S*) (?P<func>[^\s\[(]+)(?: \[[\w-]+\])?(?: \((?P<desc>.*)\))?$")
_STOPPER = re.compile(r"^Stopper: ")
_WQ_LINE = re.compile(r"^workqueue (?P<name>.+?): flags=(?P<flags>0x[0-9a-f]+)$")
_PWQ_LINE = re.compile(rf"^pwq (?P<pool>{_N}):(?P<rest>.*)$")
# 6.1 prints "inactive:" for works held back by max_active; kernels before the
# "delayed" -> "inactive" rename (around 5.13) printed "delayed:".
_LIST_LINE = re.compile(r"^(?P<what>in-flight|pending|inactive|delayed):(?P<body>.*)$")
_POOL_LINE = re.compile(rf"^pool (?P<id>{_N}):(?P<rest>.*)$")
# Output sysrq-t prints between the tasks and the workqueues (CONFIG_SCHED_DEBUG, lockdep).
_TASKS_TRAILER = re.compile(r"^(?:Sched Debug Version:|Showing all locks held in the system:)")
_TRAILER_LIMIT = 50_000  # lines of sched-debug/lockdep output looked through for the workqueues
# Lines that certainly start something else; they end a skip over sched-debug output.
_OTHER_REPORT = re.compile(
    r"^(?:sysrq: |SysRq : |INFO: task |BUG: |WARNING: |Kernel panic|watchdog: |rcu: INFO: |"
    r"general protection fault|Oops: )")


def _sysrq_kind(text: str) -> str | None:
    m = _SYSRQ_HDR.match(text)
    if not m:
        return None
    return "w" if m.group(1) == "Blocked State" else "t"


def iter_dumps(lines: Iterable[ConsoleLine]) -> Iterator[SysrqDump]:
    """Each sysrq-w/-t dump and standalone workqueue dump of a stream of console lines, yielded
    as soon as it ends; only the dump being read is kept."""
    parser = DumpParser()
    for line in lines:
        yield from parser.feed(line)
    yield from parser.close()


def parse_dumps(text: str) -> list[SysrqDump]:
    """Find and parse every sysrq-w/-t dump and every standalone workqueue dump in console text.

    Lines without a kernel marker are dropped once a line with one has been seen
    (:class:`~harness.evidence.console.KernelFilter`), as the event scanner does.
    """
    return list(iter_dumps(iter_console_lines(split_lines(text))))


def iter_dumps_file(path: Path | str) -> Iterator[SysrqDump]:
    """The dumps of a console log file, read a line at a time (offsets count characters of the
    UTF-8-decoded file); HarnessError when it cannot be read."""
    return iter_dumps(console_file_lines(path))


def parse_dumps_file(path: Path | str) -> list[SysrqDump]:
    """Every dump of a console log file (see :func:`iter_dumps_file`)."""
    return list(iter_dumps_file(path))


class DumpParser:
    """Incremental dump parser: feed() cleaned console lines, get back the dumps they completed.

    States while a dump is open: "tasks" (a task header may come next), "body" (after a task
    header: Workqueue:/Stopper: lines, then "Call Trace:"), "stack", "trailer" (sysrq-t's
    sched-debug/lockdep output before its workqueue dump) and "wq" (the workqueue dump).
    """

    def __init__(self) -> None:
        self._filter = KernelFilter()
        self._dump: SysrqDump | None = None
        self._state = ""
        self._task: Task | None = None
        self._call_trace = False  # the current task's "Call Trace:" line was seen
        self._skipped = 0  # trailer lines looked through
        self._wq: Workqueue | None = None
        self._pwq: PoolWorkqueue | None = None
        self._listed = False  # the current pwq has had an in-flight/pending/inactive line
        self._list: str = ""  # the list a continuation line extends ("" = none)
        self._list_len = 0

    def feed(self, line: ConsoleLine) -> list[SysrqDump]:
        """Consume one line; return the dumps it ended (it may also start a new one)."""
        if not self._filter.keep(line.kernel):
            return []
        s = line.text.strip()
        if self._dump is None:
            self._start(line, s)
            return []
        if not s or _DROPPED.match(s):
            return []
        if self._step(line, s):
            return []
        done = self._finish(s)
        self._start(line, s)
        return [done]

    def close(self) -> list[SysrqDump]:
        """End of input: the dump being read, if any, ends here."""
        return [self._finish(None)] if self._dump is not None else []

    # -- dump boundaries ---------------------------------------------------------------------

    def _start(self, line: ConsoleLine, s: str) -> None:
        kind = _sysrq_kind(s)
        if kind is None and not _WQ_HDR.match(s):
            return
        self._dump = SysrqDump(kind=kind or "wq", start_offset=line.offset, end_offset=line.end,
                               timestamp=line.timestamp)
        self._state = "tasks" if kind else "wq"
        self._task, self._wq, self._pwq, self._list = None, None, None, ""

    def _finish(self, cut_by: str | None) -> SysrqDump:
        dump, self._dump = self._dump, None
        assert dump is not None
        where = self._cut_in(dump, cut_by)
        if where:
            dump.truncated, dump.cut_in, dump.cut_by = True, where, cut_by
        return dump

    def _cut_in(self, dump: SysrqDump, cut_by: str | None) -> str | None:
        """Where the dump stopped before its natural end, or None."""
        t = self._task
        if self._state in ("tasks", "body", "stack") and t is not None and not self._complete(t):
            return f"in the stack of {t.comm} (pid {t.pid})"
        if dump.kind == "t" and self._state != "wq":
            # sysrq_handle_showstate() always ends with show_all_workqueues()'s header line
            return "before the workqueue dump"
        if self._state != "wq":
            return None
        if self._wq is not None and not self._wq.pwqs:
            return f"in workqueue {self._wq.name}"  # show_one_workqueue() prints busy pwqs only
        if self._pwq is not None and not self._listed:
            return f"in workqueue {self._wq.name if self._wq else '?'}, pwq {self._pwq.pool}"
        # A work in flight has a busy worker, so its pool is not idle and show_one_worker_pool()
        # prints it after the workqueues; judged only when the log ends or a report interrupts.
        busy = any(p.in_flight for w in dump.workqueues for p in w.pwqs)
        if busy and not dump.pools and (cut_by is None or _OTHER_REPORT.match(cut_by)):
            return "before the worker pools"
        return None

    def _complete(self, t: Task) -> bool:
        """Whether the current task's stack reached its end: "</TASK>" when the stack has
        show_trace_log_lvl()'s markers, else any stack line after "Call Trace:"."""
        if not self._call_trace or not t.raw_stack:
            return False
        if any(x.startswith("<") and x.endswith(">") for x in t.raw_stack):
            return t.raw_stack[-1] == "</TASK>"
        return True

    # -- lines inside a dump -----------------------------------------------------------------

    def _take(self, line: ConsoleLine) -> bool:
        assert self._dump is not None
        self._dump.end_offset = line.end
        return True

    def _step(self, line: ConsoleLine, s: str) -> bool:
        """Consume ``s`` into the open dump; False when it is not part of it (the dump ends)."""
        state = self._state
        if state == "stack":
            if is_stack_line(s):
                assert self._task is not None
                self._task.raw_stack.append(s)
                frame = parse_frame(s)
                func = frame.function if frame and frame.reliable else rip_function(s)
                if func:
                    self._task.stack.append(func)
                return self._take(line)
            state = self._state = "tasks"
        elif state == "body":
            assert self._task is not None
            if w := _WORKER_INFO.match(s):
                self._task.workqueue, self._task.function = w["wq"] or None, w["func"]
                self._task.worker_desc = w["desc"]
                return self._take(line)
            if _STOPPER.match(s):
                return self._take(line)
            if is_call_trace(s):
                self._state, self._call_trace = "stack", True
                return self._take(line)
            state = self._state = "tasks"
        if state == "tasks":
            return self._task_header(line, s)
        if state == "trailer":
            return self._trailer(line, s)
        return self._workqueue_line(line, s)

    def _task_header(self, line: ConsoleLine, s: str) -> bool:
        assert self._dump is not None
        m = _TASK_HDR.match(s)
        if m:
            self._task = Task(comm=m["comm"].strip(), pid=int(m["pid"]), state=m["state"],
                              ppid=int(m["ppid"]), flags=m["flags"],
                              tgid=int(m["tgid"]) if m["tgid"] else None, offset=line.offset)
            self._dump.tasks.append(self._task)
            self._state, self._call_trace = "body", False
            return self._take(line)
        if self._dump.kind != "t":
            return False
        if _WQ_HDR.match(s):
            self._state = "wq"
            return self._take(line)
        if _TASKS_TRAILER.match(s):
            self._state, self._skipped = "trailer", 0
            return True  # not part of the dump's span unless the workqueue dump follows
        return False

    def _trailer(self, line: ConsoleLine, s: str) -> bool:
        if _WQ_HDR.match(s):
            self._state = "wq"
            return self._take(line)
        self._skipped += 1
        return not _OTHER_REPORT.match(s) and self._skipped < _TRAILER_LIMIT

    def _workqueue_line(self, line: ConsoleLine, s: str) -> bool:
        """Workqueue/pwq/list/pool lines (show_one_workqueue(), show_pwq(),
        show_one_worker_pool()); False at an unrelated line."""
        assert self._dump is not None
        wq, pwq = self._wq, self._pwq
        if m := _WQ_LINE.match(s):
            self._wq, self._pwq, self._list = Workqueue(m["name"], m["flags"]), None, ""
            self._dump.workqueues.append(self._wq)
        elif (m := _PWQ_LINE.match(s)) and wq is not None:
            kv = _parse_kv(m["rest"])
            self._pwq = PoolWorkqueue(
                pool=int(m["pool"]), cpus=kv.get("cpus"), node=_opt_int(kv.get("node")),
                pool_flags=kv.get("flags"), nice=_opt_int(kv.get("nice")),
                active=int(kv.get("active", 0)), max_active=_opt_int(kv.get("max_active")),
                refcnt=_opt_int(kv.get("refcnt")), mayday=bool(re.search(r"\bMAYDAY\b", s)))
            wq.pwqs.append(self._pwq)
            self._list, self._listed = "", False
        elif (m := _LIST_LINE.match(s)) and pwq is not None:
            self._list, self._list_len, self._listed = m["what"], len(s), True
            _fill_list(pwq, self._list, m["body"])
        elif self._list and pwq is not None and _is_continuation(s, self._list_len):
            # printk starts a new record when a pr_cont() line outgrows LOG_LINE_MAX (6.1:
            # kernel/printk/printk.c vprintk_store), so long lists continue on a new line.
            self._list_len = len(s)
            _fill_list(pwq, self._list, s)
        elif m := _POOL_LINE.match(s):
            kv = _parse_kv(m["rest"])
            self._dump.pools.append(WorkerPool(
                id=int(m["id"]), cpus=kv.get("cpus"), node=_opt_int(kv.get("node")),
                flags=kv.get("flags"), nice=_opt_int(kv.get("nice")),
                hung_seconds=int(kv.get("hung", 0)), workers=int(kv.get("workers", 0)),
                idle=_pids(kv.get("idle", "")),
                manager=_opt_int(kv.get("manager"))))
            self._wq, self._pwq, self._list = None, None, ""
        else:
            return False
        return self._take(line)


_TOKEN = re.compile(r"[^\s,]+")
_WORKER_TOKEN = re.compile(r"^(?P<id>[^:()]+)(?P<rescuer>\(RESCUER\))?:(?P<func>.+)$")
_MODULE_TOKEN = re.compile(r"^\[[\w-]+\]$")
_PID = re.compile(_N)


def _work_tokens(body: str) -> list[str]:
    """Work names from a list body, dropping " [module]" tokens that %ps adds to module symbols."""
    return [t for t in _TOKEN.findall(body) if not _MODULE_TOKEN.match(t)]


def _add_work(into: dict[str, int], token: str) -> None:
    # Kernels from 6.2 compress repeats as "64*func" (show_pwq run-length encoding); 6.1 repeats.
    m = re.match(rf"^({_N})\*(.+)$", token)
    name, count = (m.group(2), int(m.group(1))) if m else (token, 1)
    into[name] = into.get(name, 0) + count


def _add_in_flight(pwq: PoolWorkqueue, body: str) -> None:
    # show_pwq(): " %d%s:%ps" per busy worker (pid, "(RESCUER)", current function), each followed
    # by the works on that worker's ->scheduled list (" %ps"/" BAR(%d)", no comma).
    for token in _work_tokens(body):
        m = _WORKER_TOKEN.match(token)
        if m and not token.startswith("BAR("):
            func = m["func"]
            pwq.in_flight[func] = pwq.in_flight.get(func, 0) + 1
            if _PID.fullmatch(m["id"]):
                pid = int(m["id"])
                pwq.in_flight_pids[pid] = func
                if m["rescuer"]:
                    pwq.rescuers.append(pid)
        else:
            _add_work(pwq.scheduled, token)


def _parse_kv(rest: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, pattern in (("cpus", r"cpus=(\S+)"), ("node", rf"node=(-?{_N})"),
                         ("flags", r"flags=(0x[0-9a-f]+)"), ("nice", rf"nice=(-?{_N})"),
                         ("active", rf"active=({_N})(?:/({_N}))?"), ("refcnt", rf"refcnt=(-?{_N})"),
                         ("hung", rf"hung=({_N})s"), ("workers", rf"workers=({_N})"),
                         ("manager", rf"manager: ({_N})"), ("idle", r"idle: ([0-9 ]+)")):
        m = re.search(pattern, rest)
        if m:
            out[key] = m.group(1)
            if key == "active" and m.group(2) is not None:
                out["max_active"] = m.group(2)
    return out


def _opt_int(value: str | None) -> int | None:
    return int(value) if value is not None else None


def _pids(text: str) -> list[int]:
    return [int(x) for x in text.split() if _PID.fullmatch(x)]


_WORK_ONLY = re.compile(
    r"^(?:[\w.$]+|BAR\(\d+\)|\d+\*[\w.$]+|[^\s,:()]+(?:\(RESCUER\))?:[\w.$]+)$")


def _is_continuation(text: str, previous_len: int) -> bool:
    """A line that continues a work list: ", func, func" (or, after a line near the record limit,
    a bare "func func") made only of work tokens."""
    tokens = _TOKEN.findall(text)
    if not tokens or not all(_WORK_ONLY.match(t) or _MODULE_TOKEN.match(t) for t in tokens):
        return False
    return text.startswith(",") or previous_len > 800


def _fill_list(pwq: PoolWorkqueue, what: str, body: str) -> None:
    if what == "in-flight":
        _add_in_flight(pwq, body)
        return
    into = pwq.pending if what == "pending" else pwq.inactive
    for token in _work_tokens(body):
        _add_work(into, token)
