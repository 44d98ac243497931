"""How a matrix spends its adaptive repeats: more runs in a boot, or more boots.

Each round of repeats is one more boot a side and disk with the cells still open. Before it
boots, :func:`plan_repeat` asks the two-level noise model (:mod:`harness.results.noise`) how
many times that boot should run each open cell:

* while no boot of this matrix has run an open cell twice, the within-boot noise is unknown, so
  the round runs each cell twice (the first experiment Kalibera and Jones prescribe);
* then, per open cell and gating metric, the between-boot and within-boot SDs from this matrix's
  own boots, and the boot and run costs from its records, give ``k*`` runs a boot
  (:func:`harness.results.noise.best_runs_per_boot`); the round takes the median over the cells.

:func:`cell_noise` reports the components and the minimum detectable effect they imply per cell
and metric (in comparison.json and the suite's table).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..results.metrics import GATING
from ..results.noise import MAX_RUNS_PER_BOOT, Components, best_runs_per_boot, components, mde_pct, pooled
from ..results.verdict import by_boot
from ..run.records import BootRecord

__all__ = ["MAX_RUNS_PER_BOOT", "CellNoise", "RepeatPlan", "boot_costs", "cell_noise", "plan_repeat"]

FIRST_REPEAT_RUNS = 2     # runs a boot while the within-boot noise is unknown


@dataclass(frozen=True)
class RepeatPlan:
    """One round of repeats: runs of each open cell in its boots, and why."""

    runs_per_boot: int
    reason: str
    boot_cost_s: float | None = None
    run_cost_s: float | None = None
    boot_sd: float | None = None      # the open cells' median components (logs)
    within_sd: float | None = None

    @property
    def line(self) -> str:
        return f"{self.runs_per_boot} run(s) of each a boot ({self.reason})"


@dataclass(frozen=True)
class CellNoise:
    """A cell's gating metric's components (both sides pooled) and what they imply: the minimum
    detectable effect at 3 and at 8 boots a side of one run each, and at the runs a boot the
    model would choose (``best_runs_per_boot``) for this matrix's costs."""

    cell: str
    metric: str
    boot_sd: float
    within_sd: float | None
    boots: int
    runs: int
    mde_3_pct: float | None
    mde_8_pct: float | None
    best_runs_per_boot: int | None = None
    mde_8_best_pct: float | None = None

    @property
    def line(self) -> str:
        c = Components(self.boot_sd, self.within_sd, self.boots, self.runs)
        mde = "; MDE at 3 boots a side {}, at 8 {}".format(*(f"{x:.0f}%" if x is not None else "n/a"
                                                            for x in (self.mde_3_pct, self.mde_8_pct)))
        if self.best_runs_per_boot and self.best_runs_per_boot > 1 and self.mde_8_best_pct is not None:
            mde += f" ({self.mde_8_best_pct:.0f}% at {self.best_runs_per_boot} runs a boot)"
        return f"{self.cell}: {self.metric} {c.line()}{mde}"


def _seconds(stamp: str) -> float | None:
    try:
        return time.mktime(time.strptime(stamp, "%Y-%m-%dT%H:%M:%S%z"))
    except (TypeError, ValueError):
        return None


def boot_costs(records: Sequence[BootRecord]) -> tuple[float, float] | None:
    """(seconds a boot costs beyond its runs, seconds a run costs) from measured boots: a line
    fitted to each boot's wall time against its number of runs when the boots ran different
    numbers, else the boot to SSH and the rest shared by the runs; None without such boots."""
    pts = []
    for r in records:
        t0, t1 = _seconds(r.started), _seconds(r.finished or "")
        n = sum(m.status == "ok" for m in r.measurements)
        if t0 is not None and t1 is not None and n and not r.lost and r.spec.role in ("base", "new"):
            pts.append((n, t1 - t0, r.boot_seconds or 0.0))
    if not pts:
        return None
    ns = [n for n, _, _ in pts]
    if len(set(ns)) > 1:
        mn, mw = statistics.fmean(ns), statistics.fmean(w for _, w, _ in pts)
        b = sum((n - mn) * (w - mw) for n, w, _ in pts) / sum((n - mn) ** 2 for n in ns)
        a = mw - b * mn
        if b > 0 and a > 0:
            return a, b
    boot = statistics.median(s for _, _, s in pts)
    run = statistics.median(max(0.1, (w - s) / n) for n, w, s in pts)
    return boot, run


def _components(o: object, key: str) -> Components | None:
    """A cell outcome's components, both sides pooled (outcomes whose boots are not recorded:
    each run a boot, as :meth:`CellOutcome.cell_values` reads them)."""
    return pooled(components(by_boot(o.base, key, o.base_boots or None)),   # type: ignore[attr-defined]
                  components(by_boot(o.new, key, o.new_boots or None)))     # type: ignore[attr-defined]


def plan_repeat(outcomes: Mapping[str, object], open_cells: Sequence[str], records: Sequence[BootRecord], *,
                fixed: int = 0) -> RepeatPlan:
    """The runs a boot for the next round of repeats of ``open_cells`` (module docstring);
    ``fixed`` (a profile's ``runs_per_boot``) overrides the model."""
    if fixed:
        return RepeatPlan(fixed, "fixed by the profile")
    comps = [c for cid in open_cells for m in GATING if (c := _components(outcomes[cid], m.key)) is not None]
    measured = [c for c in comps if c.within_sd is not None]
    if not measured:
        return RepeatPlan(FIRST_REPEAT_RUNS, "to measure the noise within a boot")
    costs = boot_costs(records)
    if costs is None:
        return RepeatPlan(1, "no boot costs measured")
    boot_s, run_s = costs
    ks = [best_runs_per_boot(c, boot_s, run_s) for c in measured]
    k = max(1, round(statistics.median(ks)))
    bsd = statistics.median(c.boot_sd for c in measured)
    wsd = statistics.median(c.within_sd or 0.0 for c in measured)
    return RepeatPlan(k, f"model: boot {100 * bsd:.0f}%, within {100 * wsd:.0f}%, boot {boot_s:.0f} s, "
                         f"run {run_s:.0f} s", boot_s, run_s, bsd, wsd)


def cell_noise(outcomes: Mapping[str, object], records: Sequence[BootRecord] = ()) -> list[CellNoise]:
    """Each cell's gating metrics' noise components (cells measured in at least two boots a
    side) and the minimum detectable effects they imply (:class:`CellNoise`)."""
    costs = boot_costs(records) if records else None
    out = []
    for cid, o in outcomes.items():
        for m in GATING:
            c = _components(o, m.key)
            if c is None or not math.isfinite(c.boot_sd):
                continue
            k = best_runs_per_boot(c, *costs) if costs and c.within_sd is not None else None
            out.append(CellNoise(cid, m.label, c.boot_sd, c.within_sd, c.boots, c.runs, mde_pct(c, 3), mde_pct(c, 8),
                                 k, mde_pct(c, 8, k) if k else None))
    return out
