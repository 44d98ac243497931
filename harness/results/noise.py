"""A two-level noise model: how much of a metric's noise a whole boot shares, how much is left
between runs inside a boot, and what that means for spending boots.

Measurements nest: runs inside boots. Each log value is ``mu + b + e`` with a boot effect ``b``
(SD :attr:`Components.boot_sd`: the host's speed that minute, the boot's page cache and layout)
and a run term ``e`` (SD :attr:`Components.within_sd`). The mean of a side measured in ``B``
boots of ``k`` runs each has variance ``boot_sd**2 / B + within_sd**2 / (B * k)``: more runs a
boot shrink only the second term, more boots both. Kalibera and Jones ("Rigorous benchmarking in
reasonable time", ISMM 2013) choose the runs per boot that buy the most precision a second:
``k* = sqrt((boot cost / run cost) * within_sd**2 / boot_sd**2)``.

* :func:`components`: the two SDs from values grouped by boot (one-way random effects on the
  logs, the method of moments; ``(MS_between - MS_within) / n0``, floored at 0);
* :func:`pooled`: both sides' components as one (a cell's noise, A/A or A/B);
* :func:`mde_pct`: the smallest change ``B`` boots of ``k`` runs a side detect (Welch's t on boot
  means, two-sided alpha, 80% power);
* :func:`best_runs_per_boot`: ``k*`` for given boot and run costs.

The verdict rule (:mod:`.verdict`) takes a boot's runs of a cell as one value (their geometric
mean): runs of one boot share its effect, so counting them as independent would claim a
precision the boots do not have. docs/statistics.md ("Runs per boot") has the measured figures.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from scipy.stats import t as student_t

MAX_RUNS_PER_BOOT = 4     # the most runs of a cell one boot measures when the model asks for more


@dataclass(frozen=True)
class Components:
    """The two SDs of a metric's logs (0.10 reads as 10%) and what they rest on: ``boots`` boots,
    ``runs`` runs in all; ``within_sd`` is None when no boot ran the cell twice (it cannot be
    told apart from the boot effect then, and ``boot_sd`` is the whole between-boot SD)."""

    boot_sd: float
    within_sd: float | None
    boots: int
    runs: int

    @property
    def total_sd(self) -> float:
        """The SD of one run in a fresh boot (what one run a boot measures)."""
        return math.sqrt(self.boot_sd ** 2 + (self.within_sd or 0.0) ** 2)

    def line(self) -> str:
        within = "not measured (one run a boot)" if self.within_sd is None else f"{100 * self.within_sd:.1f}%"
        return f"boot {100 * self.boot_sd:.1f}%, within a boot {within} ({self.runs} runs in {self.boots} boots)"


def _logs(groups: Sequence[Sequence[float]]) -> list[list[float]]:
    return [[math.log(v) for v in g if v > 0] for g in groups if any(v > 0 for v in g)]


def components(groups: Sequence[Sequence[float]]) -> Components | None:
    """The components from one side's values grouped by boot (values <= 0 are left out: the
    model is of logs); None below two boots."""
    gs = _logs(groups)
    a, n = len(gs), sum(len(g) for g in gs)
    if a < 2:
        return None
    means = [statistics.fmean(g) for g in gs]
    grand = sum(sum(g) for g in gs) / n
    ss_w = sum((x - m) ** 2 for g, m in zip(gs, means) for x in g)
    ms_b = sum(len(g) * (m - grand) ** 2 for g, m in zip(gs, means)) / (a - 1)
    if n == a:   # one run a boot: runs and boots cannot be told apart
        return Components(math.sqrt(ms_b), None, a, n)
    ms_w = ss_w / (n - a)
    n0 = (n - sum(len(g) ** 2 for g in gs) / n) / (a - 1)
    return Components(math.sqrt(max(0.0, (ms_b - ms_w) / n0)), math.sqrt(ms_w), a, n)


def pooled(*sides: Components | None) -> Components | None:
    """The sides' components as one, their variances averaged weighted by boots (and by runs in
    boots that repeated, for the within term); None when no side has any."""
    got = [c for c in sides if c is not None]
    if not got:
        return None
    wb = sum(c.boots - 1 for c in got)
    boot = math.sqrt(sum((c.boots - 1) * c.boot_sd ** 2 for c in got) / wb) if wb else got[0].boot_sd
    rep = [(c.runs - c.boots, c.within_sd) for c in got if c.within_sd is not None]
    ww = sum(df for df, _ in rep)
    within = math.sqrt(sum(df * sd ** 2 for df, sd in rep) / ww) if ww else None
    return Components(boot, within, sum(c.boots for c in got), sum(c.runs for c in got))


def side_sd(c: Components, runs_per_boot: float) -> float:
    """The SD of one boot's mean of ``runs_per_boot`` runs."""
    return math.sqrt(c.boot_sd ** 2 + (c.within_sd or 0.0) ** 2 / max(1.0, runs_per_boot))


def mde_pct(c: Components, boots: int, runs_per_boot: float = 1, *, alpha: float = 0.05,
            power: float = 0.8) -> float | None:
    """The smallest change, in percent of the base, that ``boots`` boots a side of
    ``runs_per_boot`` runs each detect with ``power`` (Welch's t on the boots' log means, two
    sided ``alpha``, 2 * boots - 2 degrees of freedom); None below two boots a side."""
    if boots < 2:
        return None
    df = 2 * boots - 2
    d = (student_t.ppf(1 - alpha / 2, df) + student_t.ppf(power, df)) * side_sd(c, runs_per_boot) * math.sqrt(2 / boots)
    return float(-math.expm1(-d) * 100)    # a loss on the ratio scale, as the verdicts state changes


def best_runs_per_boot(c: Components, boot_cost_s: float, run_cost_s: float,
                       cap: int = MAX_RUNS_PER_BOOT) -> int:
    """Kalibera and Jones' ``k*``: the runs a boot that give the most precision per second of
    machine time, for a boot that costs ``boot_cost_s`` beyond its runs and a run that costs
    ``run_cost_s``; 1 to ``cap``. An unmeasured within-boot term gives 1."""
    if c.within_sd is None or c.within_sd == 0 or run_cost_s <= 0:
        return 1
    if c.boot_sd == 0:
        return cap
    k = math.sqrt(max(0.0, boot_cost_s) / run_cost_s * (c.within_sd / c.boot_sd) ** 2)
    return max(1, min(cap, round(k)))
