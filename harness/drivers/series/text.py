"""The plain-text report of a try, ready to paste into a reply on the list (pure: rendered from
the verdict rows the matrix decided, the cells' evidence and the recorded selection)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class ReportInput:
    """Everything the report says, as recorded."""

    subject: str
    series: str
    patches: int
    kernel: str
    baseline: str
    commits: Mapping[str, str]          # kernel ref -> source commit (or cache key) built
    accel: str
    rows: Sequence[Mapping]             # MatrixRun.rows(): one per cell and gating metric
    evidence: Mapping[str, Sequence[str]]   # cell -> sysrq summary lines (flagged cells)
    failures: Mapping[str, Sequence[str]]
    selection_reasons: Sequence[str]
    xfstests_selected: Sequence[str]        # SECTION:TEST
    xfstests_results: Sequence[tuple[str, str, str]]   # (SECTION:TEST, category, detail) as classified
    xfstests_not_run: str                   # why none ran ("" when they did)
    reproduce: Sequence[str]
    tester: str = "kharness"


def _ci(r: Mapping) -> str:
    if r.get("ci_low") is None:
        return ""
    return f", {r['ci_confidence']:.0%} interval {r['ci_low']:+.0f}%..{r['ci_high']:+.0f}%"


def render(inp: ReportInput) -> str:
    """The report text; a Tested-by trailer only when nothing regressed and nothing failed."""
    regressed = [r for r in inp.rows if r["verdict"] == "regression"]
    improved = [r for r in inp.rows if r["verdict"] == "improvement"]
    cells = sorted({r["cell"] for r in inp.rows})
    out = [f"Tested: {inp.subject}", f"Series: {inp.series} ({inp.patches} patch(es))",
           f"Kernels: {inp.kernel} ({inp.commits.get(inp.kernel, '?')}) against {inp.baseline} "
           f"({inp.commits.get(inp.baseline, '?')}), QEMU {inp.accel}",
           "", "What ran (chosen from the patch):"]
    out += [f"  {s}" for s in inp.selection_reasons]
    out.append(f"  {len(cells)} fio cell(s), AIO O_DIRECT|O_DSYNC, fresh interleaved boots: " + ", ".join(cells))
    if inp.xfstests_selected:
        out.append(f"  xfstests: {', '.join(inp.xfstests_selected)}"
                   + (f" (not run: {inp.xfstests_not_run})" if inp.xfstests_not_run else ""))
    new_fail = [x for x in inp.xfstests_results if x[1] == "new failure"]
    out.append("")
    for item, cat, detail in inp.xfstests_results:
        out.append(f"xfstests {'new failure' if cat == 'new failure' else 'result'}: {item}: "
                   + (detail if cat == "new failure" else f"{cat}, {detail}"))
    if regressed:
        bad_cells = list(dict.fromkeys(r["cell"] for r in regressed))
        out.append(f"Regressions ({len(regressed)} comparison(s) in {len(bad_cells)} cell(s)):")
        for cell in bad_cells:
            for r in (r for r in regressed if r["cell"] == cell):
                out.append(f"  {r['cell']} {r['metric']}: {r['base_median']:.0f} -> {r['new_median']:.0f} "
                           f"({r['pct_change']:+.1f}%{_ci(r)}, q={r['q_value']:.3g}, runs {r['n_base']}/{r['n_new']})")
            for line in list(dict.fromkeys(inp.evidence.get(cell, [])))[:6]:
                out.append(f"    sysrq: {line}")
    elif not new_fail:
        out.append("No regression found.")
    if improved:
        out.append(f"Improvements ({len(improved)}):")
        out += [f"  {r['cell']} {r['metric']}: {r['pct_change']:+.1f}%{_ci(r)}" for r in improved]
    same = [r for r in inp.rows if r["verdict"] not in ("regression", "improvement")]
    if same:
        out.append(f"Unchanged or open: {len(same)} comparison(s), e.g. "
                   + "; ".join(f"{r['cell']} {r['metric']} {r['pct_change']:+.1f}% ({r['verdict']})" for r in same[:3]))
    if inp.failures:
        out.append("Failed runs:")
        out += [f"  {c}: {f}" for c, fs in inp.failures.items() for f in fs[:3]]
    out += ["", "Reproduce:"] + [f"  {c}" for c in inp.reproduce]
    if not regressed and not new_fail and not inp.failures:
        out += ["", f"Tested-by: {inp.tester}"]
    return "\n".join(out) + "\n"
