"""Detect kernel reports in console text and give them syzbot-style titles.

Recognised (formats checked against the 6.1.192 source):

* hung tasks, kernel/hung_task.c: "INFO: task NAME:PID blocked for more than N seconds."
  -> "INFO: task hung in FUNC", FUNC the first non-wait frame of the task's stack;
* soft lockups, kernel/watchdog.c: "watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [comm:pid]"
  -> "BUG: soft lockup in FUNC"; hard lockups, kernel/watchdog_hld.c;
* RCU stalls, kernel/rcu/tree_stall.h and tree_exp.h: "rcu: INFO: rcu_preempt detected stalls on
  CPUs/tasks:", "... self-detected stall on CPU", "... detected expedited stalls"
  -> "INFO: rcu detected stall in FUNC";
* oopses, arch/x86/mm/fault.c and arch/x86/kernel/{traps,dumpstack}.c: "BUG: kernel NULL pointer
  dereference, address: ...", "BUG: unable to handle page fault for address: ...", "general
  protection fault, ...: 0000 [#1] ...", "Oops: 0000 [#1] ..." -> "... in FUNC" (FUNC from RIP);
* lib/bug.c "kernel BUG at FILE:LINE!", kernel/panic.c "WARNING: CPU: N PID: M at FILE:LINE
  FUNC+0x.." -> "WARNING in FUNC", "Kernel panic - not syncing: MSG" -> "kernel panic: MSG";
* lockdep (kernel/locking/lockdep.c) circular/recursive/irq-inversion/inconsistent reports
  -> "possible deadlock in FUNC" / "inconsistent lock state in FUNC", and kernel/sched/core.c
  "BUG: sleeping function called from invalid context at ..." -> "... in FUNC";
* mm/kasan/report.c "BUG: KASAN: TYPE in FUNC" -> "KASAN: TYPE in FUNC" (no access size);
* kernel/workqueue.c wq_watchdog_timer_fn(): "BUG: workqueue lockup - pool cpus=... stuck for
  Ns!" -> "BUG: workqueue lockup".

Compiler suffixes (".isra.0", ".cold") are dropped from FUNC so titles compare across builds.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .console import (
    MAX_LINE,
    ConsoleLine,
    KernelFilter,
    base_name,
    blocked_in,
    clean_console_line,
    console_file_lines,
    is_call_trace,
    is_stack_line,
    is_wait_primitive,
    iter_console_lines,
    parse_frame,
    rip_function,
    split_lines,
)

KINDS: tuple[str, ...] = ("hung_task", "soft_lockup", "hard_lockup", "rcu_stall", "oops", "bug",
                          "warning", "lockdep", "panic", "workqueue_lockup")


@dataclass
class Event:
    """One kernel report found in console output."""

    kind: str  # one of KINDS
    title: str  # syzbot-style, e.g. "INFO: task hung in jbd2_log_wait_commit"
    offset: int  # offset of the report's first line in the scanned text
    line: str  # that line, prefixes removed
    function: str | None = None  # the function the title names, when there is one
    timestamp: float | None = None  # printk time of the first line


# Frames that are part of the reporting or interrupt machinery, never the culprit; skipped (with
# the wait primitives of harness.evidence.console) when a title names a function from a stack.
GENERIC_FRAMES: frozenset[str] = frozenset({
    "dump_stack", "dump_stack_lvl", "show_stack", "show_regs", "show_trace_log_lvl",
    "sched_show_task", "nmi_cpu_backtrace", "nmi_trigger_cpumask_backtrace",
    "arch_trigger_cpumask_backtrace", "nmi_cpu_backtrace_handler", "nmi_handle", "default_do_nmi",
    "rcu_dump_cpu_stacks", "print_cpu_stall", "print_other_cpu_stall", "check_cpu_stall",
    "rcu_pending", "rcu_sched_clock_irq", "update_process_times", "tick_sched_handle",
    "tick_sched_timer", "tick_sched_do_timer", "tick_nohz_handler", "__hrtimer_run_queues",
    "hrtimer_interrupt", "hrtimer_run_queues", "irq_exit_rcu", "__irq_exit_rcu", "__do_softirq",
    "do_softirq", "watchdog_timer_fn", "__might_resched", "__might_sleep", "__might_fault",
    "__warn", "warn_slowpath_fmt", "report_bug", "handle_bug", "panic", "vpanic",
    "lock_acquire", "__lock_acquire", "lock_release", "lock_acquired", "lock_contended",
})
GENERIC_PREFIXES: tuple[str, ...] = ("asm_sysvec_", "sysvec_", "__sysvec_", "asm_exc_", "exc_",
                                     "asm_common_interrupt", "common_interrupt")
# Where an interrupt interrupted the looping code: stall titles use the frames after the last one.
_INTERRUPT_ENTRY: tuple[str, ...] = ("asm_sysvec_", "asm_common_interrupt", "apic_timer_interrupt",
                                     "asm_exc_nmi", "ret_from_intr")


def is_generic_frame(func: str) -> bool:
    """True for reporting/interrupt machinery frames (GENERIC_FRAMES, GENERIC_PREFIXES)."""
    name = base_name(func)
    return name in GENERIC_FRAMES or name.startswith(GENERIC_PREFIXES)


def first_interesting_frame(frames: list[str]) -> str | None:
    """The first frame that is neither a wait primitive nor generic machinery."""
    for func in frames:
        if not is_wait_primitive(func) and not is_generic_frame(func):
            return base_name(func)
    return None


def _stall_frame(frames: list[str]) -> str | None:
    start = 0
    for i, func in enumerate(frames):
        if base_name(func).startswith(_INTERRUPT_ENTRY):
            start = i + 1
    return first_interesting_frame(frames[start:]) or first_interesting_frame(frames)


# (regex, kind, sub-kind, what the title needs: now | hung | stall | rip | trace | lock)
_HEADERS: list[tuple[re.Pattern[str], str, str, str]] = [
    (re.compile(r"^INFO: task (?P<comm>.+):(?P<pid>\d+) blocked for more than (?P<secs>\d+) "
                r"seconds\."), "hung_task", "hung", "hung"),
    (re.compile(r"^(?:watchdog: )?BUG: soft lockup - CPU#(?P<cpu>\d+) stuck for (?P<secs>\d+)s! "
                r"\[(?P<comm>.*):(?P<pid>\d+)\]"), "soft_lockup", "soft", "stall"),
    (re.compile(r"^(?:NMI watchdog: )?Watchdog detected hard LOCKUP on cpu (?P<cpu>\d+)"),
     "hard_lockup", "hard", "stall"),
    (re.compile(r"^(?:rcu: )?INFO: (?P<flavor>rcu\w*) (?:self-)?detected (?:expedited )?stalls?\b"),
     "rcu_stall", "rcu", "stall"),
    (re.compile(r"^BUG: workqueue lockup - pool(?P<pool>.*?) stuck for (?P<secs>\d+)s!"),
     "workqueue_lockup", "wq", "now"),
    # 6.1 show_fault_oops(): "BUG: kernel NULL pointer dereference, address: %px"; kernels before
    # ~5.1 printed "BUG: unable to handle kernel NULL pointer dereference at %px".
    (re.compile(r"^BUG: (?:unable to handle )?kernel NULL pointer dereference"), "oops", "null",
     "rip"),
    (re.compile(r"^BUG: unable to handle (?:page fault for address|kernel paging request)"),
     "oops", "paging", "rip"),
    (re.compile(r"^BUG: KASAN: (?P<what>[\w-]+) in (?P<func>[A-Za-z_.$][\w.$]*)"), "bug", "kasan",
     "now"),
    (re.compile(r"^BUG: sleeping function called from invalid context at (?P<where>\S+)"),
     "lockdep", "sleeping", "trace"),
    (re.compile(r"^general protection fault\b"), "oops", "gpf", "rip"),
    (re.compile(r"^kernel BUG at (?P<where>\S+:\d+)!"), "bug", "kbug", "rip"),
    (re.compile(r"^Kernel BUG at (?P<func>[A-Za-z_.$][\w.$]*)\+0x"), "bug", "kbug_func", "rip"),
    # 6.1 __warn(): "WARNING: CPU: %d PID: %d at %s:%d %pS" (or "at %pS" without a file).
    (re.compile(r"^WARNING: CPU: (?P<cpu>\d+) PID: (?P<pid>\d+) at (?:(?P<where>\S+:\d+) )?"
                r"(?P<func>[A-Za-z_.$][\w.$]*)\+0x"), "warning", "warn", "now"),
    (re.compile(r"^WARNING: (?:possible circular locking dependency detected|possible recursive "
                r"locking detected|possible irq lock inversion dependency detected|\S+-safe -> "
                r"\S+-unsafe lock order detected)"), "lockdep", "deadlock", "lock"),
    (re.compile(r"^WARNING: inconsistent lock state"), "lockdep", "inconsistent", "lock"),
    (re.compile(r"^Kernel panic - not syncing: (?P<msg>.*)$"), "panic", "panic", "now"),
    (re.compile(r"^BUG: (?P<what>[^:!]+)"), "bug", "generic", "now"),
]
# __die_header() (arch/x86/kernel/dumpstack.c): "%s: %04lx [#%d]..." on 6.1, "Oops: %s: %04lx
# [#%d]..." on 6.12 ("Oops: int3: 0000 [#1]", "Oops: Oops: 0000 [#1]") — folded into the BUG line
# that precedes it, if any.
_DIE = re.compile(r"^(?:Oops: )?(?P<what>Oops|invalid opcode|divide error|stack segment|int3|double fault|"
                  r"stack guard page|Bad pagetable): [0-9a-f]{4} \[#\d+\]")
_LOCK_TRIGGER = re.compile(r"is trying to acquire|just changed the state of lock| takes:$")
_LOCK_AT = re.compile(r", at: (?P<func>[A-Za-z_.$][\w.$]*)\+0x")
_END_MARKER = re.compile(r"^---\[ end ")  # "---[ end trace ... ]---", "---[ end Kernel panic ..."
_DROPPED = re.compile(r"^\*\* \d+ printk messages dropped \*\*")
_MAX_REPORT_LINES = 600  # a report still waiting for its stack gives up after this many lines
_MAX_FOLD_LINES = 30  # "Oops: 0000 [#1]" comes within a few lines of its "BUG:" line


@dataclass
class _Report:
    kind: str
    sub: str
    need: str
    line: str
    offset: int
    timestamp: float | None
    info: dict[str, str]
    frames: list[str] = field(default_factory=list)  # kernel RIP functions and reliable frames
    rip: str | None = None
    in_stack: bool = False
    stack_done: bool = False
    armed: bool = False  # lockdep: saw the "is trying to acquire" line
    folded: bool = False  # absorbed its "Oops: 0000 [#1]" line
    lines: int = 0
    emitted: bool = False


def _title(r: _Report, func: str | None) -> str:
    sub, info = r.sub, r.info
    fixed = {"wq": "BUG: workqueue lockup",
             "panic": f"kernel panic: {info.get('msg', '').strip()}",
             "generic": f"BUG: {info.get('what', '').strip()}",
             "kasan": f"KASAN: {info.get('what')} in {base_name(info.get('func', ''))}",
             "kbug": f"kernel BUG at {info.get('where')}!"}
    if sub in fixed:
        return fixed[sub]
    base = {"hung": "INFO: task hung", "soft": "BUG: soft lockup",
            "hard": "watchdog: hard LOCKUP", "rcu": "INFO: rcu detected stall",
            "null": "BUG: unable to handle kernel NULL pointer dereference",
            "paging": "BUG: unable to handle kernel paging request",
            "gpf": "general protection fault", "kbug_func": "kernel BUG",
            "die": info.get("what", "Oops"), "warn": "WARNING",
            "sleeping": "BUG: sleeping function called from invalid context",
            "deadlock": "possible deadlock", "inconsistent": "inconsistent lock state"}[sub]
    return f"{base} in {func}" if func else base


class EventWatcher:
    """Incremental console scanner: feed() appended text, get back the events it completed.

    Lines split across feed() calls are joined (a line longer than MAX_LINE characters is taken
    in pieces of that size, as :func:`harness.evidence.console.split_lines` cuts it, so the
    watcher holds little more than one report). An event is returned as soon as its title is
    known (for a hung task: once its stack has been read), so a caller tailing a console file
    sees reports promptly. Offsets count characters from the first text fed. Once a line with a
    kernel marker (printk time, "kernel:" tag) has been seen, unmarked lines are treated as
    user-space output and ignored. Callers that already have cleaned lines use feed_line().
    """

    def __init__(self) -> None:
        self.events: list[Event] = []  # every event returned so far
        self._partial = ""
        self._offset = 0  # stream offset of _partial
        self._filter = KernelFilter()
        self._open: _Report | None = None

    def feed(self, text: str) -> list[Event]:
        """Consume more console text; return the events completed by it."""
        new: list[Event] = []
        pos = self._offset
        partial = ""
        for raw in split_lines(self._partial + text):
            if not raw.endswith("\n") and len(raw) < MAX_LINE:
                partial = raw  # only the last piece can be an unfinished line
                break
            new += self._line(raw, pos)
            pos += len(raw)
        self._partial, self._offset = partial, pos
        self.events += new
        return new

    def feed_line(self, line: ConsoleLine) -> list[Event]:
        """Consume one cleaned console line (offsets are the line's own); return the events it
        completed. Do not mix with feed() on the same watcher."""
        new = self._cleaned(line.text, line.timestamp, line.kernel, line.offset)
        self.events += new
        return new

    def flush(self) -> list[Event]:
        """End of input: treat a trailing partial line as complete and close any open report."""
        new: list[Event] = []
        if self._partial:
            new += self._line(self._partial, self._offset)
            self._offset += len(self._partial)
            self._partial = ""
        new += self._close()
        self.events += new
        return new

    # -- internals ---------------------------------------------------------------------------

    def _line(self, raw: str, offset: int) -> list[Event]:
        text, stamp, kernel = clean_console_line(raw)
        return self._cleaned(text, stamp, kernel, offset)

    def _cleaned(self, text: str, stamp: float | None, kernel: bool, offset: int) -> list[Event]:
        if not self._filter.keep(kernel):
            return []
        s = text.strip()
        if not s or _DROPPED.match(s):
            return []
        die = _DIE.match(s)
        r = self._open
        if (die and r is not None and r.kind in ("oops", "bug") and not r.folded
                and r.lines < _MAX_FOLD_LINES):
            r.folded = True
            r.lines += 1
            return []
        header = self._header(s)
        if header is None and die:
            header = ("oops", "die", "rip", {"what": die["what"]})
        if header is not None:
            out = self._close()
            kind, sub, need, info = header
            self._open = _Report(kind, sub, need, s, offset, stamp, info)
            if need == "now":
                out += self._emit(self._open, info.get("func"))
            return out
        if r is None:
            return []
        return self._advance(r, s)

    @staticmethod
    def _header(s: str) -> tuple[str, str, str, dict[str, str]] | None:
        for pattern, kind, sub, need in _HEADERS:
            m = pattern.match(s)
            if m:
                info = {k: v for k, v in m.groupdict().items() if v is not None}
                return kind, sub, need, info
        return None

    def _advance(self, r: _Report, s: str) -> list[Event]:
        r.lines += 1
        if _END_MARKER.match(s):
            return self._close()
        rip = rip_function(s)
        if rip:
            r.frames.append(rip)
            r.rip = r.rip or rip
            if r.need == "rip" and not r.emitted:
                return self._emit(r, base_name(rip))
        if r.need == "lock" and not r.emitted:
            if not r.armed and _LOCK_TRIGGER.search(s):
                r.armed = True
            elif r.armed and (m := _LOCK_AT.search(s)):
                return self._emit(r, base_name(m["func"]))
        if not r.stack_done:
            if is_call_trace(s):
                r.in_stack = True
            elif r.in_stack:
                if is_stack_line(s):
                    frame = parse_frame(s)
                    if frame and frame.reliable:
                        r.frames.append(frame.function)
                    r.stack_done = s == "</TASK>"
                else:
                    r.stack_done = True
                if r.stack_done and not r.emitted and r.need != "lock":
                    return self._emit(r, self._function(r))
        if r.lines > _MAX_REPORT_LINES:
            return self._close()
        return []

    @staticmethod
    def _function(r: _Report) -> str | None:
        if r.need == "hung":
            return blocked_in(r.frames)
        if r.need == "stall":
            return _stall_frame(r.frames)
        if r.need == "rip" and r.rip:
            return base_name(r.rip)
        if r.need == "now":
            return r.info.get("func")
        return first_interesting_frame(r.frames)

    def _emit(self, r: _Report, func: str | None) -> list[Event]:
        r.emitted = True
        func = base_name(func) if func else None
        return [Event(r.kind, _title(r, func), r.offset, r.line, func, r.timestamp)]

    def _close(self) -> list[Event]:
        r, self._open = self._open, None
        if r is None or r.emitted:
            return []
        return self._emit(r, self._function(r) if r.need != "lock" else None)


def scan_lines(lines: Iterable[ConsoleLine]) -> list[Event]:
    """All kernel reports in a stream of cleaned console lines, in order of appearance."""
    watcher = EventWatcher()
    for line in lines:
        watcher.feed_line(line)
    watcher.flush()
    return sorted(watcher.events, key=lambda e: e.offset)


def scan_console(text: str) -> list[Event]:
    """All kernel reports in a console log or dmesg, in order of appearance."""
    return scan_lines(iter_console_lines(split_lines(text)))


def scan_console_file(path: Path | str) -> list[Event]:
    """All kernel reports in a console log file, read a line at a time (offsets count characters
    of the UTF-8-decoded file); HarnessError when it cannot be read."""
    return scan_lines(console_file_lines(path))


def unique_titles(events: list[Event]) -> list[str]:
    """Distinct titles in order of first appearance."""
    return list(dict.fromkeys(e.title for e in events))
