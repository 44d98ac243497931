"""How busy the host was while a guest worked: the share of the host's CPU time that went to
processes other than the guest's QEMU, from /proc/stat and /proc/PID/stat (proc(5)). Under TCG a
host busy with other work slows every emulated CPU and every handoff between QEMU's threads,
so a run measured then is slow for reasons that are not the kernel's (docs/statistics.md,
"Calibrated boots")."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CpuSample:
    """The host's busy and total CPU time and one process's CPU time, in clock ticks."""

    busy: int
    total: int
    process: int


def sample(pid: int) -> CpuSample | None:
    """The host's and ``pid``'s CPU time now; None when /proc cannot say (another OS, a process
    that is gone)."""
    try:
        with open("/proc/stat") as fh:
            fields = [int(x) for x in fh.readline().split()[1:9]]
        with open(f"/proc/{pid}/stat") as fh:
            stat = fh.read()
    except (OSError, ValueError):
        return None
    # user nice system idle iowait irq softirq steal; guest time is inside user already
    user, nice, system, idle, iowait, irq, softirq, steal = fields
    after_comm = stat[stat.rfind(")") + 2:].split()    # the command may hold spaces and ')'
    try:
        utime, stime = int(after_comm[11]), int(after_comm[12])     # fields 14 and 15 of proc(5)
    except (IndexError, ValueError):
        return None
    return CpuSample(user + nice + system + irq + softirq + steal, sum(fields), utime + stime)


def free_share(before: CpuSample | None, after: CpuSample | None) -> float | None:
    """The share of the host's CPU time, between two samples, that processes other than the
    sampled one left unused (1.0: nothing else ran; 0.5: others took half the host). None
    without two samples or when no time passed."""
    if before is None or after is None or after.total <= before.total:
        return None
    others = (after.busy - before.busy) - (after.process - before.process)
    return min(1.0, max(0.0, 1.0 - others / (after.total - before.total)))

