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

Console lines may carry printk timestamps, syslog/journal ``kernel:`` tags, /dev/kmsg prefixes, CR
characters, and be interleaved with user-space output; see :func:`console_lines`.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from dataclasses import dataclass, field

# --------------------------------------------------------------------------------------------
# Console lines
# --------------------------------------------------------------------------------------------

# printk time "[   12.345678] ", optionally followed by a CONFIG_PRINTK_CALLER id "[T123]"/"[C1]".
_PRINTK_TIME = re.compile(r"\[\s*(\d+\.\d+)\](?:\[\s*[TC]\d+\])?")
# The same, found mid-line after user-space output ("debian login: [  45.123456] ..."); printk
# always prints six decimals, which keeps this from matching arbitrary bracketed numbers.
_PRINTK_TIME_INSIDE = re.compile(r"\[\s*(\d+\.\d{6})\](?:\[\s*[TC]\d+\])?")
_KMSG_RECORD = re.compile(r"^\d+,\d+,\d+,[^;]*;")  # /dev/kmsg: "6,1234,5678901,-;msg"
_LOGLEVEL = re.compile(r"^<\d{1,3}>")  # dmesg -r, syslog PRI
# syslog / journalctl short formats: "Nov 28 16:55:01 host kernel: ", ISO dates, or bare "kernel: ".
_SYSLOG = re.compile(
    r"^(?:(?:[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d|\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d\S*)\s+\S+\s+)?"
    r"kernel: ")
_HOST_KERNEL = re.compile(r"^[\w.-]+ kernel: ")  # journalctl -o short-monotonic after the [time]
_DMESG_CTIME = re.compile(  # dmesg -T
    r"^\[(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \d{4}\] ?")
_DROPPED = re.compile(r"^\*\* \d+ printk messages dropped \*\*")
# Terminal escapes user space writes to the serial console (bracketed paste "\x1b[?2004h", colours).
_ESCAPES = re.compile(r"\x1b(?:\[[0-9;?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])|\x00")


@dataclass
class ConsoleLine:
    """One console line with its transport prefixes removed."""

    text: str  # the kernel message; leading indentation kept, trailing whitespace removed
    offset: int  # offset of the raw line in the text it came from
    end: int  # offset just past the raw line and its newline
    timestamp: float | None = None  # printk time, when present
    kernel: bool = False  # carried a kernel marker: printk time, "kernel:" tag or kmsg prefix


def clean_console_line(raw: str) -> tuple[str, float | None, bool]:
    """Strip CRs, escapes and log prefixes from a raw line: (text, printk time, kernel marker)."""
    line = _ESCAPES.sub("", raw.rstrip("\r\n"))
    if "\r" in line:
        # A carriage return inside a line means two outputs shared it (a login prompt, a progress
        # bar): keep the part that looks like a kernel message, else the last visible part.
        parts = [p for p in line.split("\r") if p.strip()]
        marked = [p for p in parts if _PRINTK_TIME_INSIDE.search(p) or _SYSLOG.match(p)]
        line = marked[0] if marked else (parts[-1] if parts else "")
    kernel = False
    stamp: float | None = None
    m = _KMSG_RECORD.match(line)
    if m:
        line, kernel = line[m.end():], True
    m = _LOGLEVEL.match(line)
    if m:
        line, kernel = line[m.end():], True
    m = _SYSLOG.match(line)
    if m:
        line, kernel = line[m.end():], True
    m = _PRINTK_TIME.match(line) or _PRINTK_TIME_INSIDE.search(line)
    if m:
        stamp, kernel = float(m.group(1)), True
        line = line[m.end():]
        if line.startswith(" "):  # printk prints exactly one space after "]"
            line = line[1:]
        h = _HOST_KERNEL.match(line)
        if h:
            line = line[h.end():]
    else:
        m = _DMESG_CTIME.match(line)
        if m:
            line, kernel = line[m.end():], True
    return line.rstrip(), stamp, kernel


def console_lines(text: str, base_offset: int = 0) -> list[ConsoleLine]:
    """Split console text on newlines into cleaned :class:`ConsoleLine` records."""
    out: list[ConsoleLine] = []
    pos = 0
    pieces = text.split("\n")
    for idx, raw in enumerate(pieces):
        end = pos + len(raw) + (1 if idx < len(pieces) - 1 else 0)
        if raw or idx < len(pieces) - 1:
            body, stamp, kernel = clean_console_line(raw)
            out.append(ConsoleLine(body, base_offset + pos, base_offset + end, stamp, kernel))
        pos = end
    return out


def kernel_lines(lines: list[ConsoleLine]) -> list[ConsoleLine]:
    """Drop user-space lines: once any line carries a kernel marker, unmarked lines are foreign."""
    if any(line.kernel for line in lines):
        return [line for line in lines if line.kernel]
    return lines


# --------------------------------------------------------------------------------------------
# Stack frames
# --------------------------------------------------------------------------------------------

# " __schedule+0x34d/0x9e0", " ? finish_wait+0x80/0x80", " jbd2_log_wait_commit+0xc5/0x140 [jbd2]",
# with CONFIG_STACKTRACE_BUILD_ID " [jbd2 0a1b...]", old kernels' "[<ffffffff8104a5b2>] " address
# prefix, and symbolized tails (" fs/ext4/file.c:123", " [inline]") tolerated.
_FRAME = re.compile(
    r"^(?:\[<[0-9a-f]+>\]\s*)?(?P<unreliable>\?\s+)?(?P<func>[A-Za-z_.$][\w.$]*)"
    r"\+0x(?P<off>[0-9a-f]+)/0x(?P<size>[0-9a-f]+)"
    r"(?:\s+\[(?P<module>[\w-]+)(?:\s+[0-9a-f]+)?\])?(?:\s.*)?$")
# Stack-switch markers printed by x86 show_trace_log_lvl() (" <TASK>" since 5.16-ish; 6.1 has them).
_MARKER = re.compile(r"^</?(?:TASK|IRQ|SOFTIRQ|NMI|EOI|ENTRY_TRAMPOLINE|#DF|#DB|#MC|#VC2?)>$")
# Register dumps that show_regs_if_on_stack() prints inside a stack (x86_64 and i386 names).
_REGS = re.compile(
    r"^(?:RIP|RSP|RAX|RBX|RCX|RDX|RSI|RDI|RBP|R\d\d|FS|GS|CS|DS|ES|CR[0-4]|DR[0-7]|PKRU|Code|"
    r"EIP|ESP|EAX|EBX|ECX|EDX|ESI|EDI|EBP):\s")
# "RIP: 0010:iomap_dio_complete+0x2a/0x1c0" (kernel mode); user mode prints "RIP: 0033:0x7f...".
_RIP_FUNC = re.compile(r"^RIP: [0-9a-f]{4}:(?P<func>[A-Za-z_.$][\w.$]*)\+0x")
_CALL_TRACE = re.compile(r"^Call [Tt]race:$")  # x86 "Call Trace:", arm64 "Call trace:"


@dataclass
class Frame:
    """One stack line: function, "+0x../0x.." offset, module, and whether the unwinder vouched."""

    function: str
    offset: str
    module: str | None = None
    reliable: bool = True


def parse_frame(text: str) -> Frame | None:
    """Parse one stack line ("? foo+0x1/0x2 [mod]"); None when the line is not a frame."""
    m = _FRAME.match(text.strip())
    if not m:
        return None
    return Frame(m["func"], f"0x{m['off']}/0x{m['size']}", m["module"], not m["unreliable"])


def rip_function(text: str) -> str | None:
    """The function of a kernel-mode "RIP: 0010:func+0x../0x.." line, else None."""
    m = _RIP_FUNC.match(text.strip())
    return m["func"] if m else None


def is_stack_line(text: str) -> bool:
    """True for frames, stack-switch markers and register-dump lines that appear inside a stack."""
    s = text.strip()
    return bool(_FRAME.match(s) or _MARKER.match(s) or _REGS.match(s))


def is_call_trace(text: str) -> bool:
    """True for the line that opens a stack dump ("Call Trace:"; arm64 prints "Call trace:")."""
    return bool(_CALL_TRACE.match(text.strip()))


def base_name(func: str) -> str:
    """Drop compiler suffixes (".isra.0", ".constprop.0", ".cold", ".part.0") from a symbol."""
    return func.split(".", 1)[0]


# Frames that say *how* a task waits rather than *what* it waits for; "blocked in X" is the first
# frame not in this list. Names are compared after base_name(). Kept deliberately to scheduler,
# sleeping and lock-slowpath primitives: flush_work/synchronize_rcu/folio_wait_writeback and the
# like stay, because they tell what the task is waiting for.
WAIT_PRIMITIVES: frozenset[str] = frozenset({
    # scheduler core
    "__schedule", "schedule", "schedule_idle", "schedule_preempt_disabled", "schedule_rtlock",
    "preempt_schedule", "preempt_schedule_common", "preempt_schedule_irq",
    "preempt_schedule_notrace", "__cond_resched", "_cond_resched", "context_switch",
    "__switch_to", "__switch_to_asm",
    # timed sleeps
    "schedule_timeout", "schedule_timeout_uninterruptible", "schedule_timeout_interruptible",
    "schedule_timeout_killable", "schedule_timeout_idle", "schedule_hrtimeout",
    "schedule_hrtimeout_range", "schedule_hrtimeout_range_clock", "io_schedule",
    "io_schedule_timeout", "blk_io_schedule", "do_nanosleep", "hrtimer_nanosleep",
    "usleep_range_state", "msleep",
    # wait queues, completions, bit waits
    "wait_woken", "prepare_to_wait", "prepare_to_wait_event", "prepare_to_wait_exclusive",
    "finish_wait", "bit_wait", "bit_wait_io", "bit_wait_timeout", "bit_wait_io_timeout",
    # semaphores, rwsems, mutexes, rt-mutexes, percpu-rwsems
    "down", "down_interruptible", "down_killable", "down_timeout", "down_trylock",
    "down_read", "down_read_killable", "down_read_interruptible", "down_read_nested",
    "down_write", "down_write_killable", "down_write_nested",
    "mutex_lock", "mutex_lock_interruptible", "mutex_lock_killable", "mutex_lock_io",
    "mutex_lock_nested", "mutex_lock_killable_nested", "mutex_lock_interruptible_nested",
    "mutex_lock_io_nested", "rt_mutex_lock", "rt_mutex_lock_interruptible",
    "rt_mutex_lock_killable", "rtlock_slowlock_locked", "rwbase_write_lock",
    "rwbase_read_lock", "percpu_down_write", "percpu_down_read", "__percpu_down_read",
    "percpu_rwsem_wait", "__percpu_rwsem_trylock",
    # spinning
    "queued_spin_lock_slowpath", "native_queued_spin_lock_slowpath",
    "__pv_queued_spin_lock_slowpath", "pv_wait", "kvm_wait", "queued_read_lock_slowpath",
    "queued_write_lock_slowpath", "do_raw_spin_lock", "do_raw_read_lock", "do_raw_write_lock",
})
WAIT_PRIMITIVE_PREFIXES: tuple[str, ...] = (
    "wait_for_completion", "__wait_for_common", "wait_for_common", "do_wait_for_common",
    "__wait_on_bit", "out_of_line_wait_on_bit", "wait_on_bit", "__wait_on_buffer",
    "wait_on_page_bit", "folio_wait_bit", "__folio_lock", "__lock_page", "__wait_event",
    "___wait_event", "__wait_var_event", "rwsem_down_", "__down", "__mutex_lock",
    "__rt_mutex", "rt_mutex_slowlock", "_raw_spin_lock", "_raw_read_lock", "_raw_write_lock",
    "__raw_spin_lock", "__raw_read_lock", "__raw_write_lock", "__percpu_down",
)


def is_wait_primitive(func: str) -> bool:
    """True for scheduler, sleep, wait-queue and lock-slowpath frames (see WAIT_PRIMITIVES)."""
    name = base_name(func)
    return name in WAIT_PRIMITIVES or name.startswith(WAIT_PRIMITIVE_PREFIXES)


def blocked_in(stack: list[str]) -> str | None:
    """The first frame (innermost first) that is not a wait primitive, without compiler suffixes."""
    for func in stack:
        if not is_wait_primitive(func):
            return base_name(func)
    return None


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


# --------------------------------------------------------------------------------------------
# Summaries and JSON
# --------------------------------------------------------------------------------------------


def _count(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _where(task: Task) -> str:
    """ "blocked in X" / "running in X", "no reliable stack frames" when the stack has only "?"
    entries (a task caught running on another CPU), "" without any stack."""
    where = task.blocked_in
    if where:
        return f"{'running' if task.state == 'R' else 'blocked'} in {where}"
    return "no reliable stack frames" if task.raw_stack else ""


def _summarize_workqueue(wq: Workqueue, by_pid: dict[int, Task], linked: set[int]) -> str:
    """One line for a busy workqueue; its workers found among the dump's tasks go into linked."""
    active = sum(p.active for p in wq.pwqs)
    limits = [p.max_active for p in wq.pwqs if p.max_active is not None]
    parts = [f"{wq.name}: active {active}" + (f"/{max(limits)}" if limits else "")]
    in_flight: Counter[str] = Counter()
    pending: Counter[str] = Counter()
    inactive: Counter[str] = Counter()
    workers: Counter[str] = Counter()
    seen: set[int] = set()
    for p in wq.pwqs:
        unlinked = Counter(p.in_flight)
        for pid, func in p.in_flight_pids.items():
            seen.add(pid)
            if pid in by_pid:
                linked.add(pid)
                workers[_where(by_pid[pid])] += 1
                unlinked[func] -= 1
        in_flight.update({f: n for f, n in unlinked.items() if n > 0})
        pending.update(p.pending)
        inactive.update(p.inactive)
    for t in by_pid.values():  # workers named by their Workqueue: line but absent from in-flight
        if t.workqueue == wq.name and t.pid not in seen:
            linked.add(t.pid)
            workers[_where(t)] += 1
    parts += [f"{n} in-flight {f}" for f, n in in_flight.items()]
    parts += [f"{n} pending {f}" for f, n in pending.items()]
    parts += [f"{n} inactive {f}" for f, n in inactive.items()]
    if any(p.mayday for p in wq.pwqs):
        parts.append("MAYDAY")
    line = ", ".join(parts)
    if workers:
        line += "; " + ", ".join(_worker_group(n, where) for where, n in workers.items())
    return line


def _worker_group(n: int, where: str) -> str:
    if where.startswith("no "):
        return f"{_count(n, 'kworker')} with {where}"
    return f"{_count(n, 'kworker')} {where}".rstrip()


def _summarize_task(t: Task) -> str:
    line = f"{t.comm} (pid {t.pid}) {t.state}"
    if t.workqueue:
        line += f" in workqueue {t.workqueue} ({t.function})"
    where = _where(t)
    return f"{line}, {where}" if where else line


def summarize(dump: SysrqDump) -> list[str]:
    """Human-readable lines: one per busy workqueue, per hung pool, and per interesting task.

    In-flight workers whose task appears in the same dump are reported by where they are blocked
    rather than as "in-flight". Tasks listed: all of them for sysrq-w, otherwise D-state tasks and
    workers of busy workqueues.
    """
    by_pid = {t.pid: t for t in dump.tasks}
    linked: set[int] = set()
    out = [_summarize_workqueue(wq, by_pid, linked) for wq in dump.workqueues]
    out += [f"pool {p.id} (cpus={p.cpus}): first pending work waiting {p.hung_seconds}s, "
            f"{_count(p.workers, 'worker')}, {len(p.idle)} idle"
            for p in dump.pools if p.hung_seconds > 0]
    out += [_summarize_task(t) for t in dump.tasks
            if dump.kind == "w" or t.state == "D" or t.pid in linked]
    return out


def to_json(dump: SysrqDump) -> dict:
    """A JSON-serialisable dict of the dump (int dict keys become strings), plus its summary."""
    data = dataclasses.asdict(dump)
    for wq in data["workqueues"]:
        for pwq in wq["pwqs"]:
            pwq["in_flight_pids"] = {str(k): v for k, v in pwq["in_flight_pids"].items()}
        wq["flag_names"] = wq_flag_names(wq["flags"])
    for task in data["tasks"]:
        task["blocked_in"] = blocked_in(task["stack"])
    data["summary"] = summarize(dump)
    return data
