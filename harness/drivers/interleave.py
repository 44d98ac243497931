"""A kernel measured against a reference in alternating boots (reference, kernel, reference, ...),
decided by the paired rule of :func:`harness.results.verdict.paired_rule` on the per-round
ratios: a performance bisect's steps (each against its last good commit, re-measured beside it)
and its confirmation (the culprit against its parent). A host whose speed swings from minute to
minute moves both boots of a round together, so the round's ratio cancels it, where references
measured at the start of the bisect would not.

The measuring is a callable, so the simulation of ``benchmarks/bisect_accuracy.py`` drives the
same code with synthetic boots.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ..results.verdict import PairedStep, paired_rule
from ..run.records import BootRecord
from ..vocab import Say

Measure = Callable[[str], tuple[list[float], list[BootRecord]]]


@dataclass(frozen=True)
class Alternation:
    """What alternating boots said: ``outcome`` good | bad | skip for the kernel (open after the
    last round, or a boot without a measurement, is a skip), with each round's values (in boot
    order: the good reference, the kernel, then the bad reference if there is one) and each
    side's records; ``paired`` the kernel against the good reference, ``paired_bad`` the bad
    reference against the kernel."""

    outcome: str
    reason: str
    rounds: tuple[tuple[tuple[float, ...], ...], ...]
    records: dict[str, list[BootRecord]] = field(default_factory=dict)
    paired: PairedStep | None = None
    paired_bad: PairedStep | None = None

    def values(self, side: int) -> list[float]:
        """Every value of one side (0: the good reference, 1: the kernel, 2: the bad reference)."""
        return [v for r in self.rounds for v in r[side]]


def alternate(measure: Measure, reference: str, kernel: str, *, min_effect_pct: float, least: int = 2,
              most: int = 3, say: Say = lambda _m: None, bad: str | None = None, key: str = "iops") -> Alternation:
    """Measure ``reference`` (a good kernel), ``kernel`` (and ``bad``, a bad kernel, if given) in
    alternating boots, one each a round, at least ``least`` rounds (2 or more: the paired rule
    needs two ratios) and while the verdict is open up to ``most``.

    Against the good reference alone (a confirmation: the culprit against its parent), the
    paired rule's verdict stands: bad is a regression of ``min_effect_pct`` or more, good is a
    change smaller than that. With a bad reference too (a bisect step), each side needs the
    evidence, as the step rule of ``verdict.step_rule`` asks of unpaired values: bad when the
    kernel is that regression from the good reference, good when the bad reference is that
    regression from the kernel, open otherwise (and when both say so: a kernel half-way).
    ``key`` is the measured metric (its direction decides which way is a regression)."""
    least = max(2, least)
    order = [reference, kernel] + ([bad] if bad else [])
    records: dict[str, list[BootRecord]] = {ref: [] for ref in order}
    rounds: list[tuple[tuple[float, ...], ...]] = []
    ps = pb = None
    outcome = "skip"
    for round_ in range(max(least, most)):
        got: list[list[float]] = []
        for ref in order:
            say(f"  {ref} round {round_ + 1} (alternating)")
            vals, recs = measure(ref)
            got.append(vals)
            records[ref] += recs
        if not all(got):
            failures = [f for recs in records.values() for r in recs for f in r.failures]
            return Alternation("skip", "no measurement: " + "; ".join(failures)[:300], tuple(rounds), records, ps, pb)
        rounds.append(tuple(tuple(v) for v in got))
        if len(rounds) < least:
            continue
        ps = paired_rule([(r[0], r[1]) for r in rounds], min_effect_pct=min_effect_pct, key=key)
        if bad is None:
            outcome = {"open": "skip"}.get(ps.outcome, ps.outcome)
        else:
            pb = paired_rule([(r[1], r[2]) for r in rounds], min_effect_pct=min_effect_pct, key=key)
            says_bad, says_good = ps.outcome == "bad", pb.outcome == "bad"
            outcome = "bad" if says_bad and not says_good else "good" if says_good and not says_bad else "skip"
        if outcome != "skip":
            break
    assert ps is not None
    why = ps.line if pb is None else f"against the good reference: {ps.line}; the bad reference against it: {pb.line}"
    return Alternation(outcome, why, tuple(rounds), records, ps, pb)
