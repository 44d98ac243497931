"""The records :mod:`harness.evidence.sysrq` parses dumps into: tasks, workqueues, pools, dumps.

Field meanings follow what Linux 6.1 prints (kernel/sched/core.c ``sched_show_task()``,
kernel/workqueue.c ``show_pwq()``/``show_one_worker_pool()``); :func:`wq_flag_names` decodes
workqueue flags with include/linux/workqueue.h's 6.1 values.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .console import base_name, blocked_in, is_wait_primitive, parse_frame

# '?' frames never taken as where a task waits: thread and work-item entry points (kthread,
# worker_thread) that every stack ends in, stale return addresses of entry code, and what the
# scheduler and wake-ups leave on a stack (6.12 guests, tests/fixtures/sysrq/captured-6.12.*:
# "? update_load_avg", "? __dequeue_entity" under a kworker's reliable "schedule"; "? __wake_up",
# "? autoremove_wake_function" in a jbd2 thread's). "__pfx_*" symbols are the padding in front of
# every function of a kernel built with CONFIG_CALL_PADDING (6.2 and later), never a caller.
GUESS_SKIPS = frozenset({"ret_from_fork", "ret_from_fork_asm", "kthread", "worker_thread", "process_one_work",
                         "entry_SYSCALL_64_after_hwframe", "do_syscall_64",
                         "update_load_avg", "update_curr", "__dequeue_entity", "dequeue_entity",
                         "dequeue_task_fair", "dequeue_entities", "set_next_entity", "pick_next_task_fair",
                         "pick_next_task", "put_prev_task_fair", "finish_task_switch", "__update_load_avg_se",
                         "__wake_up", "__wake_up_common", "__wake_up_common_lock", "autoremove_wake_function",
                         "wake_bit_function", "wake_up_bit", "__wake_up_bit", "try_to_wake_up",
                         "default_wake_function", "pollwake"})


def _guess(unreliable: list[str]) -> str | None:
    """Where a task whose reliable frames are all wait primitives waits, from its '?' frames
    (addresses found on the stack that the unwinder did not reach: x86's show_trace_log_lvl(),
    arch/x86/kernel/dumpstack.c). Frames printed before a wait primitive are deeper than the
    wait, so stale; the first candidate after one is the wait's caller. Without a wait
    primitive among them, the first candidate."""
    candidates = [(i, f) for i, f in enumerate(unreliable)
                  if not is_wait_primitive(f) and base_name(f) not in GUESS_SKIPS and not f.startswith("__pfx_")]
    waits = [i for i, f in enumerate(unreliable) if is_wait_primitive(f)]
    after = [f for i, f in candidates if waits and i > waits[0]]
    pick = after[0] if after else candidates[0][1] if candidates else None
    return base_name(pick) if pick else None

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
        """First non-wait-primitive frame of the stack. When every reliable frame is a wait
        primitive, a guess from the frames printed with '?' (:func:`_guess`), marked "(?)":
        6.12's unwinder prints a jbd2 thread waiting for its commit I/O as reliable only down to
        schedule, then "? out_of_line_wait_on_bit", "? jbd2_journal_commit_transaction" and
        "? kjournald2"."""
        where = blocked_in(self.stack)
        if where or not self.stack:   # no reliable frame at all (a task caught running): no guess
            return where
        guess = _guess([f.function for f in map(parse_frame, self.raw_stack) if f is not None and not f.reliable])
        return f"{guess} (?)" if guess else None


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
    # Cut short: the log ended, or something else was printed, before the dump's natural end (a
    # task stack without its closing "</TASK>", sysrq-t without its workqueue dump, a workqueue
    # without its pwq lines, ...). The cut is at end_offset; cut_in says in what, cut_by is the
    # line that interrupted it (None: the log ended).
    truncated: bool = False
    cut_in: str | None = None
    cut_by: str | None = None


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
