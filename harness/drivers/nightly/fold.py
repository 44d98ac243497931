"""One night's results folded from the results store: per kernel, cell and metric the decision
against the baseline measured the same night and against history; the control cells; the
xfstests diff; the sysrq evidence; the commands that bisect and reproduce each regression.

Reads only the store (runs and measurements under each night's group) and the nightly book
(nights, what each run label was, xfstests outcomes); decisions come from :mod:`harness.results.verdict`
(every same-night comparison of the night decided together, as the suite decides its matrix).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...results.history import (
    Decision,
    PastNight,
    TestAttempts,
    TestDiff,
    attempts_from_rows,
    xfstests_diff,
)
from ...results.metrics import COUNTED, gates
from ...results.stats import format_comparison
from ...results.store import Store
from ...results.verdict import (
    GATING,
    METRICS,
    cell_values,
    decide_cells,
    measured,
    night_vs_baseline,
    night_vs_history,
)
from ...vocab import KernelRef
from .book import NightlyDB, NightRow
from .plans import Plan


def group_of(night: str) -> str:
    return f"nightly/{night}"


def kernel_name(kref: str) -> str:
    """The definition name of a kernel reference ``NAME`` or ``NAME@REF``."""
    return KernelRef.parse(kref).name


@dataclass
class CellRow:
    """One kernel's cell and metric tonight."""

    kref: str
    cell: str
    metric: str
    metric_key: str
    values: list[float]
    baseline: Decision
    history: Decision
    run_ids: list[str] = field(default_factory=list)
    series: list[tuple[str, float]] = field(default_factory=list)   # (night, median), oldest first
    baseline_series: list[tuple[str, float]] = field(default_factory=list)
    bisect: str | None = None
    reproduce: str | None = None
    explains: list[str] = field(default_factory=list)   # flagged counted metrics, same night

    @property
    def verdict(self) -> str:
        if "regression" in (self.baseline.verdict, self.history.verdict):
            return "regression"
        if "improvement" in (self.baseline.verdict, self.history.verdict):
            return "improvement"
        return self.history.verdict if self.history.verdict not in ("no history",) else self.baseline.verdict

    @property
    def flagged(self) -> bool:
        return self.verdict == "regression"


@dataclass(frozen=True)
class CountedSeries:
    """One counted metric of one kernel's cell over the nights (medians, oldest first), the
    baseline's the same nights, and tonight's explaining verdict against the baseline."""

    kref: str
    cell: str
    metric: str
    unit: str
    series: tuple[tuple[str, float], ...]
    baseline_series: tuple[tuple[str, float], ...]
    verdict: str = "no change"


@dataclass
class NightResult:
    night: str
    plan: str
    group: str
    commits: dict[str, str]
    baseline: str = ""
    fio: list[CellRow] = field(default_factory=list)
    counted: list[CountedSeries] = field(default_factory=list)
    control: list[tuple[str, str, Decision]] = field(default_factory=list)   # cell, metric, decision
    control_history: tuple[int, int] = (0, 0)                                   # flagged, compared
    xfstests: dict[str, list[TestDiff]] = field(default_factory=dict)
    xfstests_bisect: dict[tuple[str, str, str], str] = field(default_factory=dict)
    hangs: list[str] = field(default_factory=list)
    evidence: dict[tuple[str, str], dict] = field(default_factory=dict)
    not_run: list[dict] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    ranges: dict[str, dict] = field(default_factory=dict)
    runs: list[dict] = field(default_factory=list)
    harness_failed: bool = False

    @property
    def regressions(self) -> list[CellRow]:
        return [r for r in self.fio if r.flagged]

    @property
    def new_failures(self) -> list[TestDiff]:
        return [d for ds in self.xfstests.values() for d in ds if d.category == "new failure"]

    @property
    def verdict(self) -> str:
        if self.harness_failed:
            return "error"
        return "regression" if self.regressions or self.new_failures or self.hangs else "good"

    @property
    def exit_code(self) -> int:
        return {"good": 0, "regression": 1}.get(self.verdict, 2)


def _cell_signature(spec: dict, cell: str) -> str:
    """The cell's filesystem and fio parameters (nights measured differently are not compared)."""
    for c in (spec.get("workload") or {}).get("cells") or []:
        if "/".join([c["fs"]["fstype"], c["disk"], c["job"]["pattern"], c["job"]["engine"]]) == cell:
            job = {k: v for k, v in c["job"].items() if k not in ("rendered", "directory")}
            return json.dumps([c["fs"], job], sort_keys=True)
    return ""


class NightData:
    """A night's runs and measurements by (role, kernel reference, cell)."""

    def __init__(self, store: Store, night: str, units: dict[str, dict]):
        self.runs = store.runs(group=group_of(night))
        self.units = units
        self.info = {r.run_id: units.get(r.label or "", {}) for r in self.runs}
        self.values: dict[tuple[str, str, str], list] = {}
        self.signature: dict[tuple[str, str], str] = {}
        specs = {r.run_id: r.spec for r in self.runs}
        for m in store.measurements([r.run_id for r in self.runs]):
            info = self.info.get(m.run_id, {})
            if not info or info.get("role") == "evidence":
                continue
            self.values.setdefault((info["role"], info["kref"], m.cell), []).append(m)
            if info["role"] == "new":
                self.signature.setdefault((info["kref"], m.cell), _cell_signature(specs[m.run_id], m.cell))

    def metric(self, role: str, kref: str, cell: str, key: str) -> list[float]:
        return measured(self.values.get((role, kref, cell), []), METRICS).get(key, [])

    def statuses(self, role: str, kref: str, cell: str) -> list[str]:
        return [m.status or "" for m in self.values.get((role, kref, cell), [])]


def _flagged_cells(store: Store, night: str) -> set[tuple[str, str]]:
    """(kernel reference, cell) flagged against history that night: such a night is not a good
    reference for the cell. A standing difference to the baseline does not disqualify a night
    (a tested patch may differ from the baseline every night; its own history is what matters)."""
    return {(v.new_kernel, v.cell) for v in store.verdicts(group_of(night))
            if v.verdict == "regression" and v.base_kernel == "history"}


def _bisect(kref: str, good: str | None, bad: str | None, check: str) -> str | None:
    if not good or not bad or good == bad:
        return None
    return f"kharness bisect --kernel {kernel_name(kref)} --good {good} --bad {bad} --check {check}"


def fold_night(store: Store, db: NightlyDB, plan: Plan, night: str, commits: dict[str, str]) -> NightResult:
    """Everything a report needs about ``night`` (its runs must be in the store)."""
    res = NightResult(night, plan.name, group_of(night), dict(commits), plan.baseline)
    tonight = NightData(store, night, db.units(night))
    res.runs = [{"run_id": r.run_id, "run_dir": r.run_dir, "label": r.label, "status": r.status,
                 "kref": tonight.info.get(r.run_id, {}).get("kref"), "role": r.role,
                 "failures": list(r.record.get("failures") or []),
                 "sysrq_summary": list(r.record.get("sysrq_summary") or [])} for r in tonight.runs]
    earlier = [n for n in db.before(plan.name, night) if n.status == "done" or n.accepted][-plan.history.max_nights:]
    past = [(n, NightData(store, n.night, db.units(n.night)), _flagged_cells(store, n.night)) for n in earlier]
    hp = plan.history
    # every same-night comparison (each kernel's cells, the control cells) is decided together
    control = f"control:{plan.baseline}"
    ms = lambda role, kref, cell: tonight.values.get((role, kref, cell), [])  # noqa: E731
    same_night = {(kref, cell): cell_values(ms("base", plan.baseline, cell), ms("new", kref, cell))
                  for kref in plan.kernels for cell in plan.cells()}
    same_night.update({(control, cell): cell_values(ms("base", plan.baseline, cell),
                                                    ms("control", plan.baseline, cell))
                       for cell in plan.control_cells()})
    vs_base = night_vs_baseline(same_night, min_effect_pct=hp.min_effect_pct)
    # what each kernel did differently from the baseline tonight, counted in the guest: decided
    # in the explaining family, so it never moves a verdict, and shown beside each regression
    counted = decide_cells(same_night, [m.key for m in COUNTED], min_effect_pct=hp.min_effect_pct)
    for kref in plan.kernels:
        for cell in plan.cells():
            sig = tonight.signature.get((kref, cell))
            for mt in GATING:
                key, label = mt.key, mt.label
                now = tonight.metric("new", kref, cell, key)
                hist = []
                for n, data, flagged in past:
                    if sig is not None and data.signature.get((kref, cell), sig) != sig:
                        continue
                    vals = data.metric("new", kref, cell, key)
                    if vals:
                        hist.append(PastNight(n.night, tuple(vals), n.accepted or (kref, cell) not in flagged,
                                          n.commits.get(kref, "")))
                bd = vs_base[(kref, cell)][key]
                hd = night_vs_history(hist, now, mt, min_nights=hp.min_nights, window=hp.window,
                                      alpha=hp.alpha, min_effect_pct=hp.min_effect_pct)
                row = CellRow(kref, cell, label, key, now, bd, hd,
                              series=_medians(tonight, past, night, "new", kref, cell, key),
                              baseline_series=_medians(tonight, past, night, "base", plan.baseline, cell, key,
                                                       same_signature=False))
                status = {r.run_id: r.status for r in tonight.runs}  # reproduce a complete boot first
                row.run_ids = sorted({m.run_id for m in tonight.values.get(("new", kref, cell), [])
                                      if m.status == "ok"}, key=lambda i: (status.get(i) != "done", i))
                if row.flagged:
                    row.explains = [format_comparison(cell, c) for c in counted.get((kref, cell), [])
                                    if c.verdict in ("regression", "improvement")
                                    and not gates(c.metric)]
                    row.reproduce = f"kharness reproduce {row.run_ids[0]} --cell {cell}" if row.run_ids else None
                    bad = commits.get(kref)
                    if hd.flagged:
                        ref = hd.reference if hd.method == "last-good" else _before(hist, hd.change_night)
                        good = next((h.commit for h in hist if h.night == ref), None)
                        row.bisect = _bisect(kref, good, bad, f"fio:{cell}")
                    if row.bisect is None and bd.flagged and kernel_name(kref) == kernel_name(plan.baseline):
                        row.bisect = _bisect(kref, commits.get(plan.baseline), bad, f"fio:{cell}")
                res.fio.append(row)
            res.counted += _counted_series(tonight, past, plan.baseline, kref, cell, night,
                                           {c.metric: c.verdict for c in counted.get((kref, cell), [])})
            statuses = tonight.statuses("new", kref, cell)
            if "hang" in statuses and "hang" not in tonight.statuses("base", plan.baseline, cell):
                res.hangs.append(f"{kref} {cell}: hung on the tested kernel, not on the baseline")
    for cell in plan.control_cells():
        for mt in GATING:
            res.control.append((cell, mt.label, vs_base[(control, cell)][mt.key]))
    # The measured false-alarm rate: flagged control comparisons (3+ runs a side) over every night.
    false_alarms = sum(d.flagged for _, _, d in res.control)
    compared = sum(d.n_then >= 3 and d.n_now >= 3 for _, _, d in res.control)
    for n, _, _ in past:
        vs = [v for v in store.verdicts(group_of(n.night))
              if v.new_kernel.startswith("control:") and (v.n_base or 0) >= 3 and (v.n_new or 0) >= 3]
        false_alarms += sum(v.verdict in ("regression", "improvement") for v in vs)
        compared += len(vs)
    res.control_history = (false_alarms, compared)
    _fold_xfstests(res, store, db, plan, tonight, past)
    return res


def _counted_series(tonight: NightData, past: list, baseline: str, kref: str, cell: str, night: str,
                    verdicts: dict[str, str]) -> list[CountedSeries]:
    """Each counted metric of a kernel's cell over the nights measured like tonight (the history
    plots of docs/nightly.md); metrics never counted for the cell are left out."""
    out = []
    for mt in COUNTED:
        series = _medians(tonight, past, night, "new", kref, cell, mt.key)
        if series:
            base = _medians(tonight, past, night, "base", baseline, cell, mt.key, same_signature=False)
            out.append(CountedSeries(kref, cell, mt.label, mt.unit, tuple(series), tuple(base),
                                     verdicts.get(mt.label, "no change")))
    return out


def _medians(tonight: NightData, past: list, night: str, role: str, ref: str, cell: str, key: str,
             same_signature: bool = True) -> list[tuple[str, float]]:
    """A metric's median per night, oldest first, tonight last: ``ref``'s values in ``role``; with
    ``same_signature`` (a tested kernel's plot) only the nights that measured the cell as tonight
    did, else (the baseline's dashed line) every night."""
    sig = tonight.signature.get((ref, cell)) if same_signature else None
    pts = [(n.night, float(np.median(v))) for n, d, _ in past
           if (sig is None or d.signature.get((ref, cell), sig) == sig) and (v := d.metric(role, ref, cell, key))]
    now = tonight.metric(role, ref, cell, key)
    return pts + ([(night, float(np.median(now)))] if now else [])


def _before(hist: list[PastNight], change_night: str | None) -> str | None:
    ids = [h.night for h in hist]
    if change_night in ids:
        i = ids.index(change_night)
        return ids[i - 1] if i else None
    return ids[-1] if ids else None


def xfstests_attempts(store: Store, data: NightData, role: str, kref: str) -> dict[tuple[str, str], TestAttempts]:
    runs = sorted((r for r in data.runs if data.info.get(r.run_id, {}).get("kind") == "xfstests"
                   and data.info[r.run_id]["role"] == role and data.info[r.run_id]["kref"] == kref),
                  key=lambda r: (data.info[r.run_id].get("attempt", 0), r.started or "", r.run_id))
    order = {r.run_id: i for i, r in enumerate(runs)}
    rows = sorted(store.xfstests([r.run_id for r in runs]), key=lambda x: order[x.run_id])
    return attempts_from_rows((x.section, x.test, x.status, x.message or "") for x in rows)


def _fold_xfstests(res: NightResult, store: Store, db: NightlyDB, plan: Plan, tonight: NightData,
                   past: list[tuple[NightRow, Any, Any]]) -> None:
    if not plan.xfstests:
        return
    base = xfstests_attempts(store, tonight, "base", plan.baseline)
    for tag_kref in [plan.baseline, *plan.kernels]:
        role = "base" if tag_kref == plan.baseline else "new"
        mine = base if role == "base" else xfstests_attempts(store, tonight, "new", tag_kref)
        db.record_attempts(res.night, tag_kref, [(s, t, a.ran, a.failures, a.outcome) for (s, t), a in mine.items()])
        if role == "base":
            continue
        last: dict[tuple[str, str], str] = {}
        last_commit: dict[tuple[str, str], str] = {}
        for n, _, _ in past:  # oldest first: later nights overwrite
            for k, o in db.outcomes(n.night, tag_kref).items():
                if o != "notrun":
                    last[k] = o
                    if o == "pass":
                        last_commit[k] = n.commits.get(tag_kref, "")
        diff = xfstests_diff(mine, base, last)
        res.xfstests[tag_kref] = diff
        for d in diff:
            if d.category == "new failure":
                good = last_commit.get((d.section, d.test))
                if not good and kernel_name(tag_kref) == kernel_name(plan.baseline) and d.baseline == "pass":
                    good = res.commits.get(plan.baseline)
                cmd = _bisect(tag_kref, good, res.commits.get(tag_kref), f"xfstests:{d.test}@{d.section}")
                if cmd:
                    res.xfstests_bisect[(tag_kref, d.section, d.test)] = cmd


def verdict_rows(res: NightResult, plan: Plan) -> list[dict]:
    """Rows for :meth:`Store.add_verdicts`: against the baseline, against history, and controls."""
    rows = []
    for r in res.fio:
        for base_kernel, d in ((plan.baseline, r.baseline), ("history", r.history)):
            rows.append({"cell": r.cell, "metric": r.metric, "base_kernel": base_kernel, "new_kernel": r.kref,
                         "verdict": d.verdict, "base_median": d.then, "new_median": d.now, "pct_change": d.pct,
                         "p_value": d.p_value, "n_base": d.n_then, "n_new": d.n_now,
                         "detail": {"method": d.method, "reference": d.reference, "change_night": d.change_night,
                                    "detail": d.detail, "q_value": d.q_value}})
    for cell, metric, d in res.control:
        rows.append({"cell": cell, "metric": metric, "base_kernel": plan.baseline,
                     "new_kernel": f"control:{plan.baseline}", "verdict": d.verdict, "base_median": d.then,
                     "new_median": d.now, "pct_change": d.pct, "p_value": d.p_value, "n_base": d.n_then,
                     "n_new": d.n_now, "detail": {"method": "control", "q_value": d.q_value}})
    return [{k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in r.items()} for r in rows]
