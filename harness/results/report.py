"""Human-readable reports of a comparison."""

from __future__ import annotations

import io

from rich.console import Console
from rich.table import Table


def comparison_table(matrix: object, width: int = 140) -> str:
    """A table: one row per cell and metric, with medians, %change, p-value and verdict."""
    table = Table("cell", "metric", "baseline", "kernel", "change", "p", "runs", "verdict")
    for cell_id, o in matrix.outcomes.items():  # type: ignore[attr-defined]
        comps = o.comparisons()
        for c in comps:
            style = {"regression": "red", "improvement": "green"}.get(c.verdict, "")
            table.add_row(cell_id, c.metric, f"{c.base.median:.0f}", f"{c.new.median:.0f}",
                          f"{c.pct_change:+.1f}%", "-" if c.p_value is None else f"{c.p_value:.3f}",
                          f"{c.base.n}/{c.new.n}", f"[{style}]{c.verdict}[/{style}]" if style else c.verdict)
        if o.failures:
            table.add_row(cell_id, "-", "", "", "", "", "", f"[red]{len(o.failures)} failed run(s)[/red]")
    buf = io.StringIO()
    Console(file=buf, width=width, force_terminal=False).print(table)
    return buf.getvalue()
