"""Static HTML reports of nightly runs: one self-contained page per night and an index of nights.

Pages need no network: styles are inline and every plot is an inline SVG drawn here (a night
series is a polyline with a point per night; a few dozen points need no plotting library). Links to
console logs and evidence files are relative to the night's directory, so a night's directory can
be copied or served as it is. Templates are jinja2 with autoescaping (every recorded string is
data, never markup).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from ...results.export import export_junit
from ...results.history import expunge_lines
from ...util import write_json, write_text_atomic
from .book import NightlyDB
from .fold import NightResult
from .kcidb import night_kcidb

TEMPLATES = Path(__file__).resolve().parent / "templates"


def _env() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["num"] = fmt_num
    env.filters["pct"] = fmt_pct
    env.filters["p"] = fmt_p
    return env


def fmt_num(x: Any) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return f"{x:.0f}" if abs(x) >= 100 else f"{x:.3g}"


def fmt_pct(x: Any) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return f"{x:+.1f}%"


def fmt_p(x: Any) -> str:
    if x is None:
        return "-"
    return "<0.001" if x < 0.001 else f"{x:.3f}"


def svg_series(series: Sequence[tuple[str, float]], *, baseline: Sequence[tuple[str, float]] = (),
               title: str = "", highlight: str | None = None, width: int = 460, height: int = 160) -> Markup:
    """An inline SVG line plot of per-night medians (and the baseline's, dashed)."""
    nights = list(dict.fromkeys([n for n, _ in baseline] + [n for n, _ in series]))
    if not nights:
        return Markup("")
    vals = [v for _, v in series] + [v for _, v in baseline]
    lo, hi = min(vals), max(vals)
    pad = (hi - lo) * 0.1 or abs(hi) * 0.1 or 1.0
    lo, hi = lo - pad, hi + pad
    left, right, top, bottom = 46, 10, 18, 28
    w, h = width - left - right, height - top - bottom

    def x(n: str) -> float:
        i = nights.index(n)
        return left + (w * i / (len(nights) - 1) if len(nights) > 1 else w / 2)

    def y(v: float) -> float:
        return top + h - (v - lo) / (hi - lo) * h

    def esc(s: str) -> str:
        return str(Markup.escape(s))

    parts = [(f'<svg xmlns="http://www.w3.org/2000/svg" class="plot" width="{width}" height="{height}" '
              f'viewBox="0 0 {width} {height}" role="img" aria-label="{esc(title)}">'),
             f'<text x="{left}" y="12" class="t">{esc(title)}</text>',
             f'<line x1="{left}" y1="{top + h}" x2="{left + w}" y2="{top + h}" class="ax"/>',
             f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + h}" class="ax"/>']
    for v in (lo + pad, hi - pad):
        parts.append(f'<text x="{left - 4}" y="{y(v) + 4:.1f}" class="yl">{fmt_num(v)}</text>')
    for name, pts, cls in (("baseline", baseline, "base"), ("kernel", series, "kern")):
        if not pts:
            continue
        coords = " ".join(f"{x(n):.1f},{y(v):.1f}" for n, v in pts)
        parts.append(f'<polyline points="{coords}" class="{cls}"><title>{name}</title></polyline>')
        for n, v in pts:
            hl = " hl" if n == highlight and cls == "kern" else ""
            parts.append(f'<circle cx="{x(n):.1f}" cy="{y(v):.1f}" r="{4 if hl else 2.5}" class="{cls}{hl}">'
                         f'<title>{esc(n)}: {fmt_num(v)}</title></circle>')
    step = max(1, len(nights) // 4)
    for i, n in enumerate(nights):
        if i % step == 0 or i == len(nights) - 1:
            parts.append(f'<text x="{x(n):.1f}" y="{height - 8}" class="xl">{esc(n[-8:])}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def counted_groups(res: NightResult) -> list[dict]:
    """The counted metrics' plots, a group per kernel and cell: open when the cell regressed or
    one of its counted metrics changed tonight, those groups first."""
    groups: dict[tuple[str, str], dict] = {}
    flagged = {(r.kref, r.cell) for r in res.regressions}
    for s in res.counted:
        g = groups.setdefault((s.kref, s.cell), {"title": f"{s.kref} {s.cell}", "plots": [], "changed": [],
                                                 "open": (s.kref, s.cell) in flagged})
        changed = s.verdict in ("regression", "improvement")
        if changed:
            g["changed"].append(f"{s.metric} ({s.verdict})")
            g["open"] = True
        g["plots"].append({"title": f"{s.metric}: {s.unit}" + (f", {s.verdict} tonight" if changed else ""),
                           "svg": svg_series(s.series, baseline=s.baseline_series, title=f"{s.cell} {s.metric}",
                                             highlight=res.night)})
    return sorted(groups.values(), key=lambda g: (not g["open"], g["title"]))


def _rel(path: str | os.PathLike, start: Path) -> str:
    return os.path.relpath(os.fspath(path), start)


def night_context(res: NightResult, night_dir: Path, db: NightlyDB | None = None, *,
                  started: str = "", finished: str = "") -> dict:
    """Everything the night template shows, with links relative to ``night_dir``."""
    plots = []
    for r in res.fio:
        if r.metric_key == "iops" and (len(r.series) > 1 or r.flagged):
            plots.append({"title": f"{r.kref} {r.cell} IOPS", "flagged": r.flagged,
                          "svg": svg_series(r.series, baseline=r.baseline_series, title=f"{r.cell} IOPS",
                                            highlight=res.night)})
    plots.sort(key=lambda p: not p["flagged"])
    counted = counted_groups(res)
    runs = [{**r, "console": _rel(Path(r["run_dir"]) / "console.log", night_dir),
             "dir": _rel(r["run_dir"], night_dir)} for r in res.runs]
    evidence = [{"kref": k, "cell": c, **e, "dir": _rel(e["run_dir"], night_dir),
                 "console": _rel(Path(e["run_dir"]) / "console.log", night_dir),
                 "links": [_rel(Path(e["run_dir"]) / f, night_dir) for f in e["files"]]}
                for (k, c), e in res.evidence.items()]
    flaky = db.flaky_rates(res.plan) if db is not None else []
    flagged, compared = res.control_history
    return {"res": res, "plots": plots, "counted": counted, "runs": runs, "evidence": evidence,
            "flaky": [f for f in flaky if f.failures], "expunges": expunge_lines(flaky, source=res.night),
            "control_rate": (flagged / compared) if compared else None, "control_flagged": flagged,
            "control_compared": compared, "started": started, "finished": finished}


def write_night_report(res: NightResult, night_dir: Path, db: NightlyDB | None = None, **kw: str) -> Path:
    html = _env().get_template("night.html.j2").render(**night_context(res, night_dir, db, **kw))
    path = night_dir / "report.html"
    write_text_atomic(path, html)
    return path


def write_index(root: Path, db: NightlyDB) -> Path:
    """``index.html`` over every night in the book whose directory is under ``root``."""
    nights = []
    for n in reversed(db.nights()):
        d = root / n.night
        if d.is_dir():
            nights.append({"n": n, "link": f"{n.night}/report.html" if (d / "report.html").exists() else None,
                           "log": f"{n.night}/nightly.log" if (d / "nightly.log").exists() else None})
    path = root / "index.html"
    write_text_atomic(path, _env().get_template("index.html.j2").render(nights=nights))
    return path


def write_reports(res: NightResult, night_dir: Path, store: Any, db: NightlyDB) -> Path:
    """Everything a night leaves beside its log: report.html, junit.xml, kcidb.json, summary.json,
    and the index one level up. Returns the HTML report's path."""
    row = db.night(res.night)
    path = write_night_report(res, night_dir, db, started=row.started if row else "",
                              finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    run_ids = [r["run_id"] for r in res.runs]
    if run_ids:
        write_text_atomic(night_dir / "junit.xml", export_junit(store, run_ids))
    write_json(night_dir / "kcidb.json", night_kcidb(res, store), indent=1, sort_keys=False)
    summary = {"night": res.night, "plan": res.plan, "verdict": res.verdict, "exit_code": res.exit_code,
               "commits": res.commits,
               "regressions": [{"kernel": r.kref, "cell": r.cell, "metric": r.metric, "bisect": r.bisect,
                                "reproduce": r.reproduce, "explains": r.explains, "baseline": r.baseline.__dict__,
                                "history": r.history.__dict__}
                               for r in res.regressions],
               "new_failures": [d.__dict__ for d in res.new_failures], "hangs": res.hangs,
               "not_run": res.not_run, "failures": res.failures,
               "evidence": {f"{k} {c}": e["summary"] for (k, c), e in res.evidence.items()},
               "ranges": res.ranges}
    write_json(night_dir / "summary.json", summary, indent=1, sort_keys=False)
    write_index(night_dir.parent, db)
    return path
