"""Parse sysrq-w / sysrq-t task dumps and "Showing busy workqueues" sections out of console text.

The formats are the ones Linux 6.1 prints (checked against the 6.1.192 source):

* ``sysrq: Show Blocked State`` (sysrq-w: ``show_state_filter(TASK_UNINTERRUPTIBLE)``) and
  ``sysrq: Show State`` (sysrq-t: ``show_state()``, optional sched-debug and lockdep output, then
  ``show_all_workqueues()``), drivers/tty/sysrq.c;
* one ``task:`` block per task, kernel/sched/core.c ``sched_show_task()``: the header line, an
  optional ``Workqueue: NAME FUNC`` line (kernel/workqueue.c ``print_worker_info()``), an optional
  ``Stopper:`` line, then the stack (arch/x86/kernel/dumpstack.c ``show_trace_log_lvl()``);
* ``Showing busy workqueues and worker pools:`` then ``workqueue``/``pwq``/``in-flight``/
  ``pending``/``inactive`` and ``pool`` lines, kernel/workqueue.c ``show_all_workqueues()``.

Console lines and stack lines are read with :mod:`harness.evidence.console`, which strips printk
timestamps, syslog/journal ``kernel:`` tags, /dev/kmsg prefixes and CR characters, and drops
interleaved user-space output.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .console import (_DROPPED, ConsoleLine, blocked_in, console_lines, is_call_trace,
                      is_stack_line, kernel_lines, parse_frame, rip_function)

# --------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------


@dataclass
class Task:
    """One task from a sched_show_task() block."""

    comm: str
    pid: int
    state: str  # task_state_to_char(): R S D T t X Z P I
    ppid: int | None = None
    flags: str | None = None  # thread-info flags as printed, "0x00004000"
    workqueue: str | None = None  # from "Workqueue: NAME FUNC" (kworkers executing a work item)
    function: str | None = None  # the work function from that line
    stack: list[str] = field(default_factory=list)  # reliable frames, innermost first, no offsets
    raw_stack: list[str] = field(default_factory=list)  # every stack line as printed (stripped)
    tgid: int | None = None  # printed by kernels after 6.1 only
    worker_desc: str | None = None  # set_worker_desc() text, "(desc)" after the function
    offset: int = 0  # offset of the "task:" line

    @property
    def blocked_in(self) -> str | None:
        """First non-wait-primitive frame of the stack."""
        return blocked_in(self.stack)


@dataclass
class PoolWorkqueue:
    """One "pwq N:" entry of a workqueue, with its in-flight, pending and inactive work items."""

    pool: int
    cpus: str | None = None  # cpumask list as printed, "0-1"
    node: int | None = None  # printed only when the pool has a NUMA node
    pool_flags: str | None = None  # worker_pool flags, "0x4" = POOL_DISASSOCIATED (unbound)
    nice: int | None = None
    active: int = 0
    max_active: int | None = None  # not printed per pwq by kernels after ~6.9
    refcnt: int | None = None
    mayday: bool = False  # " MAYDAY": the pwq asked the rescuer for help
    in_flight: dict[str, int] = field(default_factory=dict)  # function -> executing workers
    pending: dict[str, int] = field(default_factory=dict)  # function -> items on the pool worklist
    inactive: dict[str, int] = field(default_factory=dict)  # function -> items held by max_active
    in_flight_pids: dict[int, str] = field(default_factory=dict)  # worker pid -> its function
    rescuers: list[int] = field(default_factory=list)  # pids printed with "(RESCUER)"
    scheduled: dict[str, int] = field(default_factory=dict)  # works queued behind a busy worker


@dataclass
class Workqueue:
    """A busy workqueue: name, flags as printed ("0x8") and its busy pool_workqueues."""

    name: str
    flags: str
    pwqs: list[PoolWorkqueue] = field(default_factory=list)

    @property
    def flag_names(self) -> list[str]:
        """Symbolic WQ_* flags (6.1 values)."""
        return wq_flag_names(self.flags)


@dataclass
class WorkerPool:
    """One "pool N:" line: a worker pool that has busy workers."""

    id: int
    cpus: str | None = None
    node: int | None = None
    flags: str | None = None
    nice: int | None = None
    hung_seconds: int = 0  # how long the first pending work has waited for a worker
    workers: int = 0
    idle: list[int] = field(default_factory=list)  # idle worker pids
    manager: int | None = None  # pid of the worker currently managing the pool


@dataclass
class SysrqDump:
    """One parsed dump: kind 'w' (sysrq-w), 't' (sysrq-t) or 'wq' (a workqueue dump on its own,
    e.g. after "BUG: workqueue lockup" or a failed freeze)."""

    tasks: list[Task] = field(default_factory=list)
    workqueues: list[Workqueue] = field(default_factory=list)
    pools: list[WorkerPool] = field(default_factory=list)
    kind: str = "w"
    start_offset: int = 0  # offset of the header line in the parsed text
    end_offset: int = 0  # offset just past the last line that belonged to the dump
    timestamp: float | None = None  # printk time of the header line


# include/linux/workqueue.h, 6.1.
_WQ_FLAGS = [
    (1 << 1, "WQ_UNBOUND"), (1 << 2, "WQ_FREEZABLE"), (1 << 3, "WQ_MEM_RECLAIM"),
    (1 << 4, "WQ_HIGHPRI"), (1 << 5, "WQ_CPU_INTENSIVE"), (1 << 6, "WQ_SYSFS"),
    (1 << 7, "WQ_POWER_EFFICIENT"), (1 << 16, "__WQ_DRAINING"), (1 << 17, "__WQ_ORDERED"),
    (1 << 18, "__WQ_LEGACY"), (1 << 19, "__WQ_ORDERED_EXPLICIT"),
]


def wq_flag_names(flags: str | int) -> list[str]:
    """Decode workqueue flags ("0xa000a") into WQ_* names using the 6.1 bit values."""
    value = int(flags, 16) if isinstance(flags, str) else flags
    names = [name for bit, name in _WQ_FLAGS if value & bit]
    rest = value & ~sum(bit for bit, _ in _WQ_FLAGS)
    return names + ([hex(rest)] if rest else [])


# --------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------

# drivers/tty/sysrq.c: pr_info("%s\n", op_p->action_msg) with pr_fmt "sysrq: "; older kernels
# (before pr_fmt was added to sysrq.c) printed "SysRq : Show Blocked State".
_SYSRQ_HDR = re.compile(r"^(?:sysrq: |SysRq : )Show (Blocked State|State)$")
_WQ_HDR = re.compile(r"^Showing busy workqueues and worker pools:$")
# kernel/sched/core.c sched_show_task(), 6.1:
#   "task:%-15.15s state:%c" ["  running task    "] " stack:%-5lu pid:%-5d ppid:%-6d flags:0x%08lx"
# Later kernels add " tgid:%-5d" before ppid and then " task_flags:0x%04x" before flags; both are
# optional here. The comm is padded to 15 characters and may itself contain spaces.
_TASK_HDR = re.compile(
    r"^task:(?P<comm>.*?)\s+state:(?P<state>\S)(?:\s+running task)?"
    r"\s+stack:\s*\d+\s+pid:\s*(?P<pid>\d+)(?:\s+tgid:\s*(?P<tgid>\d+))?"
    r"\s+ppid:\s*(?P<ppid>\d+)(?:\s+task_flags:0x[0-9a-f]+)?\s+flags:(?P<flags>0x[0-9a-f]+)")
# print_worker_info(): "Workqueue: %s %ps" [" (%s)" desc]; %ps of a module symbol adds " [mod]".
_WORKER_INFO = re.compile(
    r"^Workqueue: (?P<wq>\S*) (?P<func>[^\s\[(]+)(?: \[[\w-]+\])?(?: \((?P<desc>.*)\))?$")
_STOPPER = re.compile(r"^Stopper: ")
_WQ_LINE = re.compile(r"^workqueue (?P<name>.+?): flags=(?P<flags>0x[0-9a-f]+)$")
_PWQ_LINE = re.compile(r"^pwq (?P<pool>\d+):(?P<rest>.*)$")
# 6.1 prints "inactive:" for works held back by max_active; kernels before the
# "delayed" -> "inactive" rename (around 5.13) printed "delayed:".
_LIST_LINE = re.compile(r"^(?P<what>in-flight|pending|inactive|delayed):(?P<body>.*)$")
_POOL_LINE = re.compile(r"^pool (?P<id>\d+):(?P<rest>.*)$")
# Output sysrq-t prints between the tasks and the workqueues (CONFIG_SCHED_DEBUG, lockdep).
_TASKS_TRAILER = re.compile(r"^(?:Sched Debug Version:|Showing all locks held in the system:)")
# Lines that certainly start something else; they end a skip over sched-debug output.
_OTHER_REPORT = re.compile(
    r"^(?:sysrq: |SysRq : |INFO: task |BUG: |WARNING: |Kernel panic|watchdog: |rcu: INFO: |"
    r"general protection fault|Oops: )")


def _sysrq_kind(text: str) -> str | None:
    m = _SYSRQ_HDR.match(text)
    if not m:
        return None
    return "w" if m.group(1) == "Blocked State" else "t"


def parse_dumps(text: str) -> list[SysrqDump]:
    """Find and parse every sysrq-w/-t dump and every standalone workqueue dump in console text."""
    lines = kernel_lines(console_lines(text))
    dumps: list[SysrqDump] = []
    i = 0
    while i < len(lines):
        s = lines[i].text.strip()
        kind = _sysrq_kind(s)
        if kind is None and not _WQ_HDR.match(s):
            i += 1
            continue
        dump = SysrqDump(kind=kind or "wq", start_offset=lines[i].offset,
                         timestamp=lines[i].timestamp)
        last = i
        if kind is None:
            i, last = _parse_workqueues(lines, i + 1, dump, last)
        else:
            i, last = _parse_tasks(lines, i + 1, dump.tasks, last)
            if kind == "t":
                j = _find_workqueue_header(lines, i)
                if j is not None:
                    i, last = _parse_workqueues(lines, j + 1, dump, j)
        dump.end_offset = lines[last].end
        dumps.append(dump)
    return dumps


def _skip_blank(lines: list[ConsoleLine], i: int) -> int:
    while i < len(lines) and (not lines[i].text.strip() or _DROPPED.match(lines[i].text.strip())):
        i += 1
    return i


def _parse_tasks(lines: list[ConsoleLine], i: int, out: list[Task], last: int) -> tuple[int, int]:
    """Parse consecutive task blocks from lines[i]; return (next index, last consumed index)."""
    while True:
        i = _skip_blank(lines, i)
        if i >= len(lines):
            return i, last
        m = _TASK_HDR.match(lines[i].text.strip())
        if not m:
            return i, last
        task = Task(comm=m["comm"].strip(), pid=int(m["pid"]), state=m["state"],
                    ppid=int(m["ppid"]), flags=m["flags"],
                    tgid=int(m["tgid"]) if m["tgid"] else None, offset=lines[i].offset)
        last, i = i, i + 1
        i, last = _parse_task_body(lines, i, task, last)
        out.append(task)


def _parse_task_body(lines: list[ConsoleLine], i: int, task: Task, last: int) -> tuple[int, int]:
    """Read the Workqueue:/Stopper: lines and the stack that follow a task header."""
    while True:
        i = _skip_blank(lines, i)
        if i >= len(lines):
            return i, last
        s = lines[i].text.strip()
        w = _WORKER_INFO.match(s)
        if w:
            task.workqueue, task.function = w["wq"] or None, w["func"]
            task.worker_desc = w["desc"]
        elif not _STOPPER.match(s):
            break
        last, i = i, i + 1
    if not is_call_trace(lines[i].text):
        return i, last
    last, i = i, i + 1
    while True:
        i = _skip_blank(lines, i)
        if i >= len(lines):
            return i, last
        s = lines[i].text.strip()
        if not is_stack_line(s):
            return i, last
        task.raw_stack.append(s)
        frame = parse_frame(s)
        func = frame.function if frame and frame.reliable else rip_function(s)
        if func:
            task.stack.append(func)
        last, i = i, i + 1


def _find_workqueue_header(lines: list[ConsoleLine], i: int) -> int | None:
    """After sysrq-t's tasks: the index of "Showing busy workqueues", skipping sched-debug and
    lockdep output in between, or None when something unrelated comes first."""
    i = _skip_blank(lines, i)
    if i >= len(lines):
        return None
    if _WQ_HDR.match(lines[i].text.strip()):
        return i
    if not _TASKS_TRAILER.match(lines[i].text.strip()):
        return None
    for j in range(i + 1, min(len(lines), i + 50_000)):
        s = lines[j].text.strip()
        if _WQ_HDR.match(s):
            return j
        if _OTHER_REPORT.match(s):
            return None
    return None


_TOKEN = re.compile(r"[^\s,]+")
_WORKER_TOKEN = re.compile(r"^(?P<id>[^:()]+)(?P<rescuer>\(RESCUER\))?:(?P<func>.+)$")
_MODULE_TOKEN = re.compile(r"^\[[\w-]+\]$")


def _work_tokens(body: str) -> list[str]:
    """Work names from a list body, dropping " [module]" tokens that %ps adds to module symbols."""
    return [t for t in _TOKEN.findall(body) if not _MODULE_TOKEN.match(t)]


def _add_work(into: dict[str, int], token: str) -> None:
    # Kernels from 6.2 compress repeats as "64*func" (show_pwq run-length encoding); 6.1 repeats.
    m = re.match(r"^(\d+)\*(.+)$", token)
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
            if m["id"].isdigit():
                pid = int(m["id"])
                pwq.in_flight_pids[pid] = func
                if m["rescuer"]:
                    pwq.rescuers.append(pid)
        else:
            _add_work(pwq.scheduled, token)


def _parse_kv(rest: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, pattern in (("cpus", r"cpus=(\S+)"), ("node", r"node=(-?\d+)"),
                         ("flags", r"flags=(0x[0-9a-f]+)"), ("nice", r"nice=(-?\d+)"),
                         ("active", r"active=(\d+)(?:/(\d+))?"), ("refcnt", r"refcnt=(-?\d+)"),
                         ("hung", r"hung=(\d+)s"), ("workers", r"workers=(\d+)"),
                         ("manager", r"manager: (\d+)"), ("idle", r"idle: ([\d ]+)")):
        m = re.search(pattern, rest)
        if m:
            out[key] = m.group(1)
            if key == "active" and m.group(2) is not None:
                out["max_active"] = m.group(2)
    return out


def _opt_int(value: str | None) -> int | None:
    return int(value) if value is not None else None


def _parse_workqueues(lines: list[ConsoleLine], i: int, dump: SysrqDump,
                      last: int) -> tuple[int, int]:
    """Parse workqueue/pwq/list/pool lines from lines[i] until an unrelated line."""
    wq: Workqueue | None = None
    pwq: PoolWorkqueue | None = None
    current: dict[str, int] | None = None  # the list a continuation line extends
    current_kind = ""
    current_len = 0
    while True:
        i = _skip_blank(lines, i)
        if i >= len(lines):
            return i, last
        s = lines[i].text.strip()
        if m := _WQ_LINE.match(s):
            wq, pwq, current = Workqueue(m["name"], m["flags"]), None, None
            dump.workqueues.append(wq)
        elif (m := _PWQ_LINE.match(s)) and wq is not None:
            kv = _parse_kv(m["rest"])
            pwq = PoolWorkqueue(
                pool=int(m["pool"]), cpus=kv.get("cpus"), node=_opt_int(kv.get("node")),
                pool_flags=kv.get("flags"), nice=_opt_int(kv.get("nice")),
                active=int(kv.get("active", 0)), max_active=_opt_int(kv.get("max_active")),
                refcnt=_opt_int(kv.get("refcnt")), mayday=bool(re.search(r"\bMAYDAY\b", s)))
            wq.pwqs.append(pwq)
            current = None
        elif (m := _LIST_LINE.match(s)) and pwq is not None:
            current_kind, current_len = m["what"], len(s)
            current = {"in-flight": pwq.in_flight, "pending": pwq.pending}.get(
                current_kind, pwq.inactive)
            _fill_list(pwq, current_kind, m["body"])
        elif current is not None and pwq is not None and _is_continuation(s, current_len):
            # printk starts a new record when a pr_cont() line outgrows LOG_LINE_MAX (6.1:
            # kernel/printk/printk.c vprintk_store), so long lists continue on a new line.
            current_len = len(s)
            _fill_list(pwq, current_kind, s)
        elif m := _POOL_LINE.match(s):
            kv = _parse_kv(m["rest"])
            dump.pools.append(WorkerPool(
                id=int(m["id"]), cpus=kv.get("cpus"), node=_opt_int(kv.get("node")),
                flags=kv.get("flags"), nice=_opt_int(kv.get("nice")),
                hung_seconds=int(kv.get("hung", 0)), workers=int(kv.get("workers", 0)),
                idle=[int(x) for x in kv.get("idle", "").split()],
                manager=_opt_int(kv.get("manager"))))
            wq, pwq, current = None, None, None
        else:
            return i, last
        last, i = i, i + 1


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
