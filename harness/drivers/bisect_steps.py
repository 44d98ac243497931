"""A bisect's records and how the report lists them: :class:`Step` (one tested commit, or one run
of a probabilistic bisect, as ``state.json`` keeps it), :class:`BisectResult`, and the report's
step lines with each step's evidence (runs, failures, and the posterior after it)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .bayes import evidence_line


@dataclass
class Step:
    """One tested commit."""

    phase: str                      # endpoint | step | confirm
    commit: str
    subject: str
    outcome: str                    # good | bad | skip
    reason: str
    kernel_key: str | None = None
    bzimage_sha256: str | None = None
    run_ids: list[str] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    p_value: float | None = None
    pct_change: float | None = None
    reused_from: str | None = None
    seconds: float = 0.0
    runs: int = 0                   # functional runs that gave a verdict, and how many failed
    failures: int = 0
    reference: str | None = None    # a performance round: the commit measured in the boot before it
    reference_values: list[float] = field(default_factory=list)   # ... and its values
    posterior: dict | None = None   # a probabilistic bisect: p_bad (this commit), best, p_best after it


@dataclass
class BisectResult:
    """How a bisect ended: the culprit (or the candidates when skips hid it), every step, and how
    sure it is (``confidence``, as result.json holds it)."""

    culprit: str | None
    candidates: list[str]
    confirmed: bool
    steps: list[Step]
    report: str
    directory: Path
    evidence: dict[str, list[str]] = field(default_factory=dict)
    confidence: dict = field(default_factory=dict)


def slug(text: str) -> str:
    """``text`` as a piece of a file name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")[:60]


def median(values: Sequence[float]) -> float | None:
    """The upper median (None for no values)."""
    return sorted(values)[len(values) // 2] if values else None


def step_lines(steps: Sequence[Step], seconds: float) -> list[str]:
    """The report's lines for the steps, and the totals: checks, kernels, boots, wall time."""
    lines = [f"  {s.phase:8} {s.commit[:12]} {s.outcome:4} {s.seconds:6.0f}s  {s.subject[:50]}  "
             f"{evidence_line(s.runs, s.failures, s.posterior)}{s.reason[:100]}" for s in steps]
    builds = len({s.kernel_key for s in steps if s.kernel_key})
    boots = sum(len(s.run_ids) for s in steps)
    lines.append(f"{len(steps)} checks, {builds} kernels, {boots} boots, {seconds:.0f}s wall time this session")
    return lines
