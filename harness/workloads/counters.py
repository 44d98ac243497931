"""Counted mechanism metrics: what the kernel did around one measured fio job, read in the guest.

A guest script (:func:`guest_script`) is sent in with the job file. fio runs it as the measured
job's ``exec_prerun`` (after the job's files are laid out, before its clock starts: fio
``backend.c`` ``thread_main()``) and ``exec_postrun`` (after its last I/O is reaped, before the
files are closed and unlinked), so the prep jobs and the layout are outside the window. Each run
of it snapshots, into a file in the guest:

* ``/sys/block/<dev>/stat``: field 5, write requests completed, and field 16, flush requests
  completed (``part_stat_show()`` in ``block/genhd.c``; Documentation/admin-guide/iostats.rst).
  FUA writes are not counted apart anywhere in the block layer's statistics: they are among the
  writes (a ``REQ_FUA`` write is one request), so no FUA count is reported;
* ``/proc/fs/jbd2/<dev>-8/info``, ext4's journal: its first number is ``ts_tid``, the
  transactions committed (``jbd2_seq_info_show()`` in ``fs/jbd2/journal.c``);
* ``/proc/fs/xfs/stat``, line ``log``: ``xs_log_writes xs_log_blocks xs_log_noiclogs
  xs_log_force xs_log_force_sleep`` (``xfs_stats_format()`` in ``fs/xfs/xfs_stats.c``; the file
  sums every mounted XFS);
* ``ctxt`` of ``/proc/stat``: context switches of the whole guest.

With ``trace`` on, the script also records the tracefs events ``workqueue:workqueue_queue_work``
(filtered to workqueues named ``dio*``: in 6.1 the event carries the workqueue's name,
``include/trace/events/workqueue.h``; the superblock's ``dio/<dev>``, ``dio-sync`` with the
shipped patch), ``workqueue_execute_start`` and ``workqueue_execute_end`` between the two
snapshots (``trace_clock`` ``global``, so the CPUs' events merge in one order).
:func:`parse_workqueue_trace` matches each execution to a work queued on a ``dio*`` workqueue
(``sb->s_dio_done_wq``, where ``iomap_dio_bio_end_io()`` queues ``iomap_dio_complete_work()``)
and counts the items executed, the peak number executing at once and their mean time from start
to end. The guest kernel needs event tracing (``CONFIG_EVENT_TRACING``); without tracefs the
script says so and the workqueue figures are absent.

Everything here is pure but :func:`guest_script`'s text: parsers take the captured text.
"""

from __future__ import annotations

import re
import shlex
from collections import Counter
from dataclasses import dataclass

from ..errors import WorkloadError

DIO_WQ_PREFIX = "dio"             # "dio/<dev>" in 6.1, "dio-sync" with the shipped patch
TRACEFS = "/sys/kernel/tracing"
TRACE_BUFFER_KB = 8192          # per CPU: about 60 bytes an event, three events a write
SECTION = "## "                 # a snapshot's section header: "## <file read>"
PART = "@@ "                    # a capture's part header: "@@ before", "@@ after", "@@ trace"
NO_TRACEFS = "kharness: no tracefs"
_DEV = re.compile(r"^[a-z][a-z0-9]{0,31}$")
_PATH = re.compile(r"^/[A-Za-z0-9_./-]{1,200}$")


@dataclass(frozen=True)
class Snapshot:
    """Counters read at one moment; None where the file was absent (no such filesystem)."""

    writes: int | None = None
    flushes: int | None = None
    jbd2_transactions: int | None = None
    xfs_log_writes: int | None = None
    xfs_log_forces: int | None = None
    ctxt: int | None = None


@dataclass(frozen=True)
class WorkqueueTrace:
    """Work items of the ``dio*`` workqueues in a trace: executed, the peak executing at once,
    their mean start-to-end time in microseconds, and the events the ring buffer dropped
    (``lost`` > 0: ``items`` and the mean are undercounts, ``peak`` a lower bound)."""

    items: int
    peak: int
    mean_us: float | None
    lost: int = 0


@dataclass(frozen=True)
class Capture:
    """The snapshots around a job and, if it was traced, its workqueue figures."""

    before: Snapshot
    after: Snapshot
    trace: WorkqueueTrace | None
    note: str = ""


def _check(dev: str, paths: tuple[str, ...]) -> None:
    if not _DEV.match(dev):
        raise WorkloadError(f"counters: block device name {dev!r}: want [a-z][a-z0-9]*")
    for p in paths:
        if not _PATH.match(p) or ".." in p:
            raise WorkloadError(f"counters: guest path {p!r}: want an absolute path of [A-Za-z0-9_./-]")


def guest_script(dev: str, stem: str, trace: bool, fstype: str = "") -> str:
    """The guest shell script for block device ``dev`` (``nvme0n1``) holding a ``fstype``
    filesystem (ext4 and ocfs2 journal through jbd2, XFS has its log statistics; '' reads
    both), keeping its snapshots in
    ``<stem>.before``/``<stem>.after``. Its first argument is the step: ``setup`` (tracefs
    ready and stopped), ``before [MARKER]`` (snapshot, tracing on, touch MARKER), ``after``
    (snapshot), ``collect`` (tracing off; print both snapshots and the trace; events off).
    With ``numjobs`` > 1 every clone runs the hooks: the first clone to start takes the
    ``before`` snapshot, the last to finish leaves the ``after`` one, and the trace runs until
    ``collect`` (no dio work is queued once the job's I/O is reaped)."""
    _check(dev, (stem,))
    q = shlex.quote
    t = TRACEFS
    events = " ".join(f"{t}/events/workqueue/workqueue_{e}/enable"
                      for e in ("queue_work", "execute_start", "execute_end"))
    lines = [
        "#!/bin/sh",
        "# kharness counters: rendered by harness.workloads.counters",
        f"DEV={q(dev)}; STEM={q(stem)}; T={t}; TRACE={1 if trace else 0}; JBD2={int(fstype != 'xfs')}; "
        f"XFS={int(fstype in ('xfs', ''))}",
        "snap() {",
        '  echo "## /sys/block/$DEV/stat"; cat "/sys/block/$DEV/stat"',
        '  [ "$JBD2" = 1 ] && for f in /proc/fs/jbd2/"$DEV"-*/info; do',
        '    [ -r "$f" ] && { echo "## $f"; cat "$f"; }',
        "  done",
        '  [ "$XFS" = 1 ] && [ -r /proc/fs/xfs/stat ] && { echo "## /proc/fs/xfs/stat"; cat /proc/fs/xfs/stat; }',
        '  echo "## /proc/stat"; grep "^ctxt " /proc/stat',
        "}",
        'case "$1" in',
        "setup)",
        '  rm -f "$STEM.before" "$STEM.after" "$STEM.notrace"',
        '  [ "$TRACE" = 1 ] || exit 0',
        '  [ -e "$T/trace" ] || mount -t tracefs nodev "$T" 2>/dev/null',
        '  if [ ! -w "$T/events/workqueue/workqueue_execute_start/enable" ]; then',
        f'    echo "{NO_TRACEFS}" > "$STEM.notrace"; exit 0',
        "  fi",
        '  echo 0 > "$T/tracing_on"',
        '  echo global > "$T/trace_clock"',
        f'  echo {TRACE_BUFFER_KB} > "$T/buffer_size_kb"',
        f"  echo 'workqueue ~ \"{DIO_WQ_PREFIX}*\"' "
        '> "$T/events/workqueue/workqueue_queue_work/filter" 2>/dev/null',
        # The events are enabled on the kernel command line, before the other CPUs start
        # (harness/vm/machine.py TRACE_EVENTS): enabling one flips a static key, patching text
        # through an int3 that another vCPU under multi-threaded TCG can take as a stray
        # breakpoint (harness/evidence/infra.py). Only a guest booted without them enables them
        # here, once; they stay on, and tracing_on (which patches nothing) gates the buffer.
        '  if [ "$(cat "$T/events/workqueue/workqueue_execute_end/enable")" != 1 ]; then',
        f'    for e in {events}; do echo 1 > "$e"; done',
        "  fi",
        '  : > "$T/trace" ;;',
        "before)",
        '  [ -e "$STEM.before" ] || snap > "$STEM.before"',
        '  [ "$TRACE" = 1 ] && [ ! -e "$STEM.notrace" ] && echo 1 > "$T/tracing_on"',
        '  [ -n "$2" ] && touch "$2"',
        "  exit 0 ;;",
        "after)",
        '  snap > "$STEM.after" ;;',
        "collect)",
        '  echo "@@ before"; cat "$STEM.before"; echo "@@ after"; cat "$STEM.after"',
        '  [ "$TRACE" = 1 ] || exit 0',
        '  if [ -e "$STEM.notrace" ]; then echo "@@ notrace"; cat "$STEM.notrace"; exit 0; fi',
        '  echo 0 > "$T/tracing_on"; echo "@@ trace"; cat "$T/trace"',
        '  : > "$T/trace" ;;',
        "esac",
    ]
    return "\n".join(lines) + "\n"


# -- parsers of the files read ---------------------------------------------------------------------
def _ints(text: str, where: str) -> list[int]:
    try:
        return [int(x) for x in text.split()]
    except ValueError:
        raise WorkloadError(f"counters: {where}: not a line of integers: {text.strip()[:120]!r}") from None


def parse_diskstat(text: str) -> tuple[int, int | None]:
    """(write requests completed, flush requests completed) from ``/sys/block/<dev>/stat``:
    fields 5 and 16 (iostats.rst; a kernel before 5.5 has no field 16: None)."""
    fields = _ints(text, "block stat")
    if len(fields) < 11:
        raise WorkloadError(f"counters: block stat: {len(fields)} fields, want at least 11")
    return fields[4], fields[15] if len(fields) >= 17 else None


def parse_jbd2_info(text: str) -> int:
    """Transactions committed (``ts_tid``) from ``/proc/fs/jbd2/<dev>-8/info``'s first line
    ``N transactions (M requested), each up to B blocks``."""
    m = re.match(r"\s*(\d+) transactions \((\d+) requested\)", text)
    if not m:
        raise WorkloadError(f"counters: jbd2 info: unexpected first line {text.strip()[:120]!r}")
    return int(m.group(1))


def parse_xfs_log(text: str) -> tuple[int, int]:
    """(log writes, log forces) from the ``log`` line of ``/proc/fs/xfs/stat``."""
    for line in text.splitlines():
        if line.startswith("log "):
            v = _ints(line[4:], "xfs stat log")
            if len(v) < 4:
                break
            return v[0], v[3]
    raise WorkloadError("counters: /proc/fs/xfs/stat: no 'log' line of five numbers")


def parse_ctxt(text: str) -> int:
    """Context switches, the ``ctxt`` line of ``/proc/stat``."""
    m = re.search(r"^ctxt (\d+)\s*$", text, re.MULTILINE)
    if not m:
        raise WorkloadError("counters: /proc/stat: no ctxt line")
    return int(m.group(1))


def _split(text: str, header: str) -> dict[str, str]:
    parts: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith(header):
            current = parts.setdefault(line[len(header):].strip(), [])
        elif current is not None:
            current.append(line)
    return {k: "\n".join(v) + "\n" for k, v in parts.items()}


def parse_snapshot(text: str) -> Snapshot:
    """A snapshot from the script's ``snap`` output: ``## <file>`` sections of each file read."""
    writes = flushes = jbd2 = log_writes = log_forces = ctxt = None
    for name, body in _split(text, SECTION).items():
        if name.startswith("/sys/block/"):
            writes, flushes = parse_diskstat(body)
        elif name.startswith("/proc/fs/jbd2/"):
            jbd2 = parse_jbd2_info(body)
        elif name == "/proc/fs/xfs/stat":
            log_writes, log_forces = parse_xfs_log(body)
        elif name == "/proc/stat":
            ctxt = parse_ctxt(body)
    if writes is None:
        raise WorkloadError(f"counters: no block stat in the snapshot: {text.strip()[:200]!r}")
    return Snapshot(writes, flushes, jbd2, log_writes, log_forces, ctxt)


# -- the workqueue trace ---------------------------------------------------------------------------
# "<task>-<pid> [<cpu>] <flags> <seconds>: <event>: <fields>" (kernel/trace/trace_output.c; the
# flags column is there while the irq-info option is on, the default)
_LINE = re.compile(r"^\s*(?P<task>.+?)-(?P<pid>\d+)\s+(?:\(\s*[\d-]+\)\s+)?\[(?P<cpu>\d+)\]\s+(?:\S+\s+)?"
                   r"(?P<ts>\d+\.\d+):\s+(?P<event>\w+):\s+(?P<body>.*)$")
_QUEUE = re.compile(r"work struct=(?P<work>\S+) function=\S+ workqueue=(?P<wq>\S+)")
_EXEC = re.compile(r"work struct (?P<work>[0-9a-fx]+):")
_ENTRIES = re.compile(r"^# entries-in-buffer/entries-written: (\d+)/(\d+)", re.MULTILINE)
_LOST = re.compile(r"\[LOST (\d+) EVENTS\]")


def parse_workqueue_trace(text: str, prefix: str = DIO_WQ_PREFIX) -> WorkqueueTrace:
    """Items of workqueues named ``prefix*`` in a tracefs ``trace`` text: an execution counts when
    its work was queued on such a workqueue (``workqueue_queue_work``) and not yet started; it
    runs on its worker's pid from ``workqueue_execute_start`` to that pid's next
    ``workqueue_execute_end`` (a work struct may be freed and queued again while its function
    still runs, so the worker, not the pointer, closes it). Lines that are not events are
    skipped."""
    pending: Counter[str] = Counter()
    running: dict[str, float] = {}
    items = peak = 0
    busy = 0.0
    for line in text.splitlines():
        m = _LINE.match(line)
        if not m:
            continue
        event, body, pid, ts = m.group("event"), m.group("body"), m.group("pid"), float(m.group("ts"))
        if event == "workqueue_queue_work":
            q = _QUEUE.match(body)
            if q and q.group("wq").startswith(prefix):
                pending[q.group("work")] += 1
        elif event == "workqueue_execute_start":
            e = _EXEC.match(body)
            if e and pending[e.group("work")] > 0:
                pending[e.group("work")] -= 1
                running[pid] = ts
                items += 1
                peak = max(peak, len(running))
        elif event == "workqueue_execute_end" and pid in running:
            busy += ts - running.pop(pid)
    entries = _ENTRIES.search(text)
    lost = int(entries.group(2)) - int(entries.group(1)) if entries else 0
    lost += sum(int(n) for n in _LOST.findall(text))
    done = items - len(running)
    return WorkqueueTrace(items, peak, round(busy / done * 1e6, 1) if done else None, lost)


def parse_capture(text: str) -> Capture:
    """The ``collect`` step's output: both snapshots and, if traced, the workqueue figures."""
    parts = _split(text, PART)
    if "before" not in parts or "after" not in parts:
        raise WorkloadError(f"counters: no before/after snapshots in {text.strip()[:200]!r}")
    trace = parse_workqueue_trace(parts["trace"]) if "trace" in parts else None
    note = parts.get("notrace", "").strip()
    return Capture(parse_snapshot(parts["before"]), parse_snapshot(parts["after"]), trace, note)


def kept(text: str, trace_lines: int = 200) -> str:
    """``collect`` output as a run directory keeps it: the snapshots whole, the trace cut after
    ``trace_lines`` lines (a 3 s job traces megabytes) with a line saying how much was cut."""
    head, sep, trace = text.partition(f"\n{PART}trace\n")
    if not sep:
        return text
    lines = trace.splitlines()
    cut = f"# kharness: trace cut here, {len(lines) - trace_lines} more lines\n" if len(lines) > trace_lines else ""
    return head + sep + "\n".join(lines[:trace_lines]) + "\n" + cut


# -- per-1000-writes figures -----------------------------------------------------------------------
def _delta(a: int | None, b: int | None) -> int | None:
    return None if a is None or b is None or b < a else b - a


def deltas(c: Capture) -> dict[str, float]:
    """The counters' changes over the job (and the trace's figures), by name; absent counters
    are left out."""
    out: dict[str, float | None] = {
        f: _delta(getattr(c.before, f), getattr(c.after, f))
        for f in ("writes", "flushes", "jbd2_transactions", "xfs_log_writes", "xfs_log_forces", "ctxt")}
    if c.trace is not None:
        # a ring buffer that dropped events undercounts the items: only the peak (a lower bound) is kept
        whole = c.trace.lost == 0
        out.update(dio_wq_items=c.trace.items if whole else None, dio_wq_peak=c.trace.peak,
                   dio_wq_mean_us=c.trace.mean_us if whole else None, trace_lost=c.trace.lost)
    return {k: float(v) for k, v in out.items() if v is not None}


def per_kwrite(d: dict[str, float], fio_writes: int) -> dict[str, float]:
    """The counted metrics of one job (the keys of :data:`harness.results.metrics.METRICS`):
    counts per 1000 of the job's own writes (fio's ``total_ios``) and the workqueue's peak
    concurrency and mean item time. A job that wrote nothing has none."""
    if fio_writes <= 0:
        return {}
    k = 1000.0 / fio_writes
    names = {"writes": "dev_writes_per_kwrite", "flushes": "flushes_per_kwrite",
             "jbd2_transactions": "jbd2_commits_per_kwrite", "xfs_log_writes": "xfs_log_writes_per_kwrite",
             "xfs_log_forces": "xfs_log_forces_per_kwrite", "ctxt": "ctxsw_per_kwrite",
             "dio_wq_items": "dio_wq_items_per_kwrite"}
    out = {metric: round(d[raw] * k, 3) for raw, metric in names.items() if raw in d}
    if "dio_wq_peak" in d:
        out["dio_wq_peak_concurrency"] = d["dio_wq_peak"]
    if d.get("dio_wq_mean_us") is not None:
        out["dio_wq_mean_us"] = d["dio_wq_mean_us"]
    return out
