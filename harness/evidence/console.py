"""Console lines and kernel stacks: the layer under the report parsers.

Console text is split into lines and each line is cleaned of what its transport added
(:func:`clean_console_line`): printk timestamps and CONFIG_PRINTK_CALLER ids, syslog/journal
``kernel:`` tags, /dev/kmsg record prefixes, ``dmesg -r``/``-T`` prefixes, CR characters and terminal
escapes. Lines may be interleaved with user-space output; :class:`KernelFilter` drops it once a
line has carried a kernel marker (:func:`kernel_lines` does the same for a whole text at once).

Lines are read as a stream (:func:`iter_console_lines` over :func:`split_lines` of a text or
:func:`read_lines` of a file), so a parser holds one line at a time. A line longer than
:data:`MAX_LINE` characters (no kernel line is: printk records are at most 1024 bytes,
kernel/printk/printk.c ``PRINTKRB_RECORD_MAX``/``LOG_LINE_MAX``) is cut into pieces of that size.

Stack lines are the ones Linux 6.1 prints (checked against the 6.1.192 source) from
arch/x86/kernel/dumpstack.c ``show_trace_log_lvl()``: frames (``? func+0x1/0x2 [mod]``),
``<TASK>``/``<IRQ>`` stack-switch markers and the register dumps of ``show_regs_if_on_stack()``.
:func:`blocked_in` names the first frame of a stack that is not a scheduler, sleep, wait-queue or
lock-slowpath primitive.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from ..errors import HarnessError

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
# Terminal escapes user space writes to the serial console (bracketed paste "\x1b[?2004h", colours,
# window titles, "ESC c" resets), as ECMA-48 defines them: CSI in its 7- and 8-bit forms; the
# OSC/DCS/SOS/PM/APC strings up to BEL or ST (or the end of the line: never past a newline);
# nF escapes ("ESC ( B") and the two-character Fp/Fe/Fs ones ("ESC 7", "ESC c"); a lone ESC.
_ESCAPES = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]"
    r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c\n]*(?:\x07|\x1b\\|\x9c)?"
    r"|\x1b[ -/]*[0-~]"
    r"|\x1b")
# What is left that a terminal would act on: C0 controls but tab and newline, DEL, C1 controls.
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def strip_controls(text: str) -> str:
    """``text`` safe to print on a terminal: escape sequences and control characters removed
    (tab and newline kept)."""
    return _CONTROLS.sub("", _ESCAPES.sub("", text))


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
    line = _CONTROLS.sub("", line)
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


MAX_LINE = 64 * 1024  # characters; longer lines are split into pieces of this size


def split_lines(text: str) -> Iterator[str]:
    """The raw lines of ``text``, each with its "\\n" (the last one may lack it), split on "\\n"
    only; a line longer than MAX_LINE comes in pieces. Lazy: no list of the lines is built."""
    pos, size = 0, len(text)
    while pos < size:
        nl = text.find("\n", pos, pos + MAX_LINE)
        end = nl + 1 if nl >= 0 else min(pos + MAX_LINE, size)
        yield text[pos:end]
        pos = end


def read_lines(fh: TextIO) -> Iterator[str]:
    """The raw lines of a text file opened with newline="\\n" (see :func:`open_console`), cut
    like :func:`split_lines` cuts a text, so both give the same lines and offsets."""
    while True:
        piece = fh.readline(MAX_LINE)
        if not piece:
            return
        yield piece


def open_console(path: Path | str) -> TextIO:
    """Open a console log for :func:`read_lines`: UTF-8 with undecodable bytes replaced, lines
    split on "\\n" only (CRs stay, :func:`clean_console_line` handles them); HarnessError if it
    cannot be opened."""
    try:
        return open(path, encoding="utf-8", errors="replace", newline="\n")
    except OSError as e:
        raise HarnessError(f"cannot read {path}: {e.strerror or e}") from None


def iter_console_lines(raw_lines: Iterable[str], base_offset: int = 0) -> Iterator[ConsoleLine]:
    """Clean a stream of raw lines (as :func:`split_lines`/:func:`read_lines` give them) into
    :class:`ConsoleLine` records; offsets count characters from ``base_offset``."""
    pos = base_offset
    for raw in raw_lines:
        end = pos + len(raw)
        body, stamp, kernel = clean_console_line(raw)
        yield ConsoleLine(body, pos, end, stamp, kernel)
        pos = end


def console_file_lines(path: Path | str) -> Iterator[ConsoleLine]:
    """The cleaned lines of a console log file, read one at a time; HarnessError when the file
    cannot be read."""
    with open_console(path) as fh:
        try:
            yield from iter_console_lines(read_lines(fh))
        except OSError as e:
            raise HarnessError(f"cannot read {path}: {e.strerror or e}") from None


def console_lines(text: str, base_offset: int = 0) -> list[ConsoleLine]:
    """Split console text on newlines into cleaned :class:`ConsoleLine` records."""
    return list(iter_console_lines(split_lines(text), base_offset))


def kernel_lines(lines: list[ConsoleLine]) -> list[ConsoleLine]:
    """Drop user-space lines: once any line carries a kernel marker, unmarked lines are foreign."""
    if any(line.kernel for line in lines):
        return [line for line in lines if line.kernel]
    return lines


class KernelFilter:
    """The streaming form of :func:`kernel_lines`: once a line with a kernel marker has been seen,
    later unmarked lines are user-space output. (Unmarked lines before the first marked one are
    kept: a stream cannot know what comes later.)"""

    def __init__(self) -> None:
        self.kernel_seen = False

    def keep(self, kernel: bool) -> bool:
        """Whether the next line, carrying a kernel marker or not, is kernel output as far as the
        stream so far tells."""
        self.kernel_seen = self.kernel_seen or kernel
        return kernel or not self.kernel_seen


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

