"""One-line summaries and JSON of parsed sysrq dumps (:mod:`harness.evidence.sysrq`).

:func:`summarize_dump` gives one line per busy workqueue, per hung worker pool and per task of interest,
after a first line saying so when the dump was cut short (:attr:`SysrqDump.truncated`):

* ``dump cut short WHERE: the log ends there`` / ``...: interrupted by 'LINE'``;

* a workqueue line, ``NAME: active A/MAX, N in-flight FUNC, N pending FUNC, N inactive FUNC``
  [``, MAYDAY``] [``; N kworkers blocked in X``]: ``active``/``max_active`` and ``MAYDAY`` come
  from the ``pwq N:`` lines and the work lists from the ``in-flight:``/``pending:``/``inactive:``
  lines of kernel/workqueue.c ``show_pwq()``. In-flight workers whose task block is in the same
  dump (matched by the pid printed in ``in-flight:``, or by the task's ``Workqueue:`` line from
  ``print_worker_info()``) are counted by where their stack is blocked instead of as in-flight;
* a pool line, ``pool ID (cpus=CPUS): first pending work waiting Ns, N workers, N idle``, from the
  ``pool N:`` lines of ``show_one_worker_pool()`` (``hung=``, ``workers=``, ``idle:``), only for
  pools with a non-zero ``hung=``;
* a task line, ``COMM (pid PID) STATE [in workqueue WQ (FUNC)], blocked in FRAME``, from the
  ``task:`` header of kernel/sched/core.c ``sched_show_task()`` (comm, pid, state letter of
  ``task_state_to_char()``), the ``Workqueue:`` line and the first stack frame that is not a wait
  primitive (:func:`harness.evidence.console.blocked_in`); ``running in`` for R-state tasks and
  ``no reliable stack frames`` when every frame was printed with ``?``. Every task of a sysrq-w
  dump is listed; of other dumps, D-state tasks and workers of busy workqueues.

:func:`to_json` is the dump as a JSON-serialisable dict with the decoded WQ_* flag names, each
task's ``blocked_in`` and the summary lines.
"""

from __future__ import annotations

import dataclasses
from collections import Counter

from .console import blocked_in
from .sysrq import SysrqDump, Task, Workqueue, wq_flag_names


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


def cut_line(dump: SysrqDump) -> str | None:
    """The summary line of a dump that was cut short, else None."""
    if not dump.truncated:
        return None
    why = f"interrupted by {dump.cut_by[:100]!r}" if dump.cut_by else "the log ends there"
    return f"dump cut short {dump.cut_in or 'before its end'}: {why}"


def summarize_dump(dump: SysrqDump) -> list[str]:
    """Human-readable lines: one per busy workqueue, per hung pool, and per interesting task,
    after one saying where the dump was cut short if it was.

    In-flight workers whose task appears in the same dump are reported by where they are blocked
    rather than as "in-flight". Tasks listed: all of them for sysrq-w, otherwise D-state tasks and
    workers of busy workqueues.
    """
    by_pid = {t.pid: t for t in dump.tasks}
    linked: set[int] = set()
    cut = cut_line(dump)
    out = [cut] if cut else []
    out += [_summarize_workqueue(wq, by_pid, linked) for wq in dump.workqueues]
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
    data["summary"] = summarize_dump(dump)
    return data
