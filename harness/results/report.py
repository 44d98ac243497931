"""Human-readable reports of a comparison."""

from __future__ import annotations

import io

from rich.console import Console
from rich.markup import escape
from rich.table import Table


def comparison_table(matrix: object, width: int = 160) -> str:
    """A table: one row per cell and metric (the gating ones, then the counted ones measured on
    both sides, which explain): medians, change with its Hodges-Lehmann interval,
    p and Benjamini-Hochberg q, the minimum detectable effect, runs and verdict."""
    table = Table("cell", "metric", "baseline", "kernel", "change", "interval", "p", "q", "MDE", "runs", "verdict")
    decided = matrix.decided(explain=True)  # type: ignore[attr-defined]
    for cell_id, o in matrix.outcomes.items():  # type: ignore[attr-defined]
        for c in decided.get(cell_id, []):
            style = {"regression": "red", "improvement": "green"}.get(c.verdict, "")
            verdict = c.verdict + (f" (within ±{c.shift.bound():.0f}%)" if c.verdict == "no change" and c.shift else "")
            verdict += " (calibrated)" if c.calibrated else ""
            ci = (f"{c.shift.low:+.0f}%..{c.shift.high:+.0f}% ({c.shift.confidence:.0%})" if c.shift else "-")
            table.add_row(cell_id, c.metric, f"{c.base.median:.0f}", f"{c.new.median:.0f}",
                          f"{c.pct_change:+.1f}%", ci, "-" if c.p_value is None else f"{c.p_value:.3f}",
                          "-" if c.q_value is None else f"{c.q_value:.3f}",
                          "-" if c.mde_pct is None else f"{c.mde_pct:.0f}%",
                          f"{c.base.n}/{c.new.n}", f"[{style}]{verdict}[/{style}]" if style else escape(verdict))
        if o.failures:
            table.add_row(cell_id, "-", "", "", "", "", "", "", "", "", f"[red]{len(o.failures)} failed run(s)[/red]")
    buf = io.StringIO()
    Console(file=buf, width=width, force_terminal=False).print(table)
    noise = [n for n in matrix.noise() if n.within_sd is not None]  # type: ignore[attr-defined]
    if noise:
        buf.write("noise within and between boots, cells run more than once in a boot "
                  "(docs/statistics.md#runs-per-boot):\n")
        buf.writelines(f"  {n.line}\n" for n in noise)
    fits = matrix.calibration(decided)  # type: ignore[attr-defined]
    if fits:
        buf.write("how much of the host each run had (docs/statistics.md#calibrated-boots):\n")
        buf.writelines(f"  {f.line}\n" for f in fits)
    return buf.getvalue()
