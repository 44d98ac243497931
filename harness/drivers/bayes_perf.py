"""The decisions of a performance bisect, pure: where the first bad commit is, from every alternating
round measured so far, and which pair of kernels to measure next.

A bisect of a performance change knows the size of the change from its endpoints (their rounds give
:class:`harness.results.verdict.Levels`: the log ratio ``gap`` bad/good and a round's noise
``sd``). The candidates are the first-parent chain after good up to bad, ``0 .. n-1`` (``n-1`` is
the bad endpoint, ``-1`` the good one); hypothesis ``i`` says candidates from ``i`` on carry the
change. One round measures a reference ``r`` and a kernel ``k`` in adjacent boots; its log ratio
k/r has the mean ``gap * ([k >= i] - [r >= i])`` under hypothesis ``i`` (the gap that best explains
the rounds under it, the endpoints' among them) and Student-t noise of scale ``sd`` with
:data:`~harness.results.verdict.TAIL_DF` degrees of freedom, so every round updates every
hypothesis and no step is ever decided once and for all (a wrong call cannot send the search
astray, as it does in a deterministic bisect: docs/bisect.md). The next kernel is the posterior's
median, the probabilistic bisection of Horstein (1963) and Waeber, Frazier and Henderson (2013),
measured against the newest commit that is almost surely good; once one commit holds half the
probability, rounds of it against its parent confirm it (the interleaved confirmation), until it
holds ``confidence`` or the boots run out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence, Set
from dataclasses import dataclass

from ..results.verdict import TAIL_DF, Levels

SURELY_GOOD = 0.02      # a reference: P(the first bad commit is at or before it) at most this
CONFIRM_ROUNDS = 2      # rounds of the culprit against its parent before it may be named


@dataclass(frozen=True)
class Round:
    """One alternating round: ``kernel`` against ``reference`` (candidate indices, -1 the good
    endpoint) and the log ratio of their medians."""

    reference: int
    kernel: int
    log_ratio: float


@dataclass(frozen=True)
class Measure:
    """Measure ``kernel`` against ``reference`` next (``confirming``: the leader against its parent)."""

    reference: int
    kernel: int
    confirming: bool


@dataclass(frozen=True)
class Stop:
    """Stop: ``best`` with probability ``p_best``; ``why`` confident | budget."""

    best: int
    p_best: float
    why: str


def _t_log(x: float, sd: float) -> float:
    """log of the Student-t density of :data:`TAIL_DF` degrees of freedom and scale ``sd`` at ``x``,
    less what is the same for every hypothesis."""
    return -(TAIL_DF + 1) / 2 * math.log1p((x / sd) ** 2 / TAIL_DF)


def _fit_gap(ys: Sequence[float], sd: float, start: float) -> float:
    """The change that best explains the rounds that measured it (sign-adjusted log ratios):
    the Student-t location, by a few reweighted means."""
    g = start
    for _ in range(4):
        w = [(TAIL_DF + 1) / (TAIL_DF + ((y - g) / sd) ** 2) for y in ys]
        g = sum(wi * y for wi, y in zip(w, ys)) / sum(w)
    return g


def posterior(n: int, rounds: Sequence[Round], lv: Levels, impossible: Set[int] = frozenset()) -> list[float]:
    """P(candidate i is the first bad commit | rounds), i in 0..n-1, from a uniform prior over
    the candidates not ``impossible`` (a kernel byte-identical to its parent's cannot be it).
    Under each hypothesis the change is the one that best explains the rounds that measured it
    (the endpoints' rounds among them), starting from ``lv.gap``: an endpoints' estimate that
    came out too small or too large does not favour a wrong commit."""
    logp = [-math.inf if i in impossible else 0.0 for i in range(n)]
    for i in range(n):
        if i in impossible:
            continue
        signs = [(r.kernel >= i) - (r.reference >= i) for r in rounds]
        ys = [sg * r.log_ratio for sg, r in zip(signs, rounds) if sg]
        g = _fit_gap(ys, lv.sd, lv.gap) if ys else lv.gap
        logp[i] = sum(_t_log(r.log_ratio - sg * g, lv.sd) for sg, r in zip(signs, rounds))
    top = max(logp)
    if top == -math.inf:                      # every candidate ruled out: say nothing
        return [1.0 / n] * n
    w = [0.0 if x == -math.inf else math.exp(x - top) for x in logp]
    total = sum(w)
    return [x / total for x in w]



def credible(post: Sequence[float], mass: float) -> list[int]:
    """The fewest candidates holding ``mass`` of the probability, most probable first."""
    out, held = [], 0.0
    for i in sorted(range(len(post)), key=lambda i: -post[i]):
        out.append(i)
        held += post[i]
        if held >= mass:
            break
    return out


def median(post: Sequence[float]) -> int:
    """The first candidate whose cumulative probability reaches one half (within rounding): two
    candidates tied at 0.5 may sum to 0.49999... at the first, and the second one, measured
    against the same reference again and again, could never part them."""
    cdf = 0.0
    for i, p in enumerate(post):
        cdf += p
        if cdf >= 0.5 - 1e-9:
            return i
    return len(post) - 1


def _testable_near(i: int, n: int, untestable: Set[int]) -> int | None:
    """``i``, or the testable candidate nearest to it (the later one on a tie)."""
    for step in range(n):
        for j in (i + step, i - step):
            if 0 <= j < n and j not in untestable:
                return j
    return None


def choose(n: int, rounds: Sequence[Round], lv: Levels, *, boots: int, budget: int, confidence: float = 0.95,
           untestable: Set[int] = frozenset(), impossible: Set[int] = frozenset()) -> Measure | Stop:
    """The next round, or stop: ``confident`` when the leader holds ``confidence`` after at least
    :data:`CONFIRM_ROUNDS` rounds against its parent; ``budget`` when two more boots would pass
    ``budget``; ``stuck`` when the leader (or its parent) cannot be built, so nothing can part it
    from its neighbours."""
    post = posterior(n, rounds, lv, impossible)
    best = max(range(n), key=lambda i: post[i])
    confirmed = sum(r.kernel == best and r.reference == best - 1 for r in rounds)
    if post[best] >= confidence and confirmed >= CONFIRM_ROUNDS:
        return Stop(best, post[best], "confident")
    if boots + 2 > budget:
        return Stop(best, post[best], "budget")
    if post[best] >= 0.5:
        if best in untestable or best - 1 in untestable:
            return Stop(best, post[best], "stuck")
        return Measure(best - 1, best, True)
    kernel = _testable_near(median(post), n, untestable)
    if kernel is None:
        return Stop(best, post[best], "stuck")
    reference, cdf = -1, 0.0
    for i in range(kernel):
        cdf += post[i]
        if cdf > SURELY_GOOD:
            break
        if i not in untestable:
            reference = i
    return Measure(reference, kernel, False)
