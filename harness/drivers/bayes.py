"""Probabilistic bisection for a flaky check: a posterior over "which candidate is the first bad
commit", updated by every run; pure (no I/O), so the driver (``drivers/bisect_flaky.py``) and the
simulation (``benchmarks/bisect_accuracy.py``) run the same decisions.

The model. Candidates ``0..n-1`` are the commits after the good endpoint, oldest first; the last
is the bad endpoint. Hypothesis ``H_i``: candidate ``i`` is the first bad commit (uniform prior).
Under ``H_i`` every candidate ``j >= i`` is a bad kernel, whose runs fail independently with an
unknown rate ``q`` (prior ``Beta(a, b)``), and every ``j < i`` is a good kernel, whose runs fail
with a small fixed rate ``false_fail`` (a failure unrelated to the change). Integrating ``q`` out
gives the exact marginal likelihood

    P(data | H_i) = prod_{j<i} e^f_j (1-e)^p_j  *  B(a + F_i, b + P_i) / B(a, b)

with ``F_i``, ``P_i`` the failures and passes counted on candidates ``i..n-1``: the bad
endpoint's runs (which every hypothesis counts as bad) are what estimate ``q``.

The next commit to test maximises the expected information gain about the first bad commit (the
mutual information between one more run's outcome and ``H``), not the posterior median: with a
flaky check a failure is near proof that a commit is bad while a pass is weak evidence that it
is good, and the median ignores that asymmetry (it is optimal only for symmetric noise). The
gain also says when to re-run a commit already tested (the culprit's parent, typically) and is
zero where no run can help (only untestable commits left), which is a stop.

The stop. The posterior alone is over-confident when a bad kernel fails rarely: the search stops
just when the runs look favourable, e.g. a culprit's 2 failures in 2 runs make q look high, and
then a few passes of its parent look like proof that the parent is good (a simulation at q = 1/4
named a wrong culprit at P >= 0.95 in 6% of bisects). So a culprit is ``confident`` only when its
posterior reaches the confidence AND its parent is clear (:func:`parent_clear`): even if a bad
kernel failed only at ``q_lo``, the lowest rate the failures on the culprit and later commits
allow (a one-sided ``1 - confidence`` bound), a bad parent would pass all its runs at most
``1 - confidence`` of the time.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

GAIN_FLOOR = 1e-4   # bits: below this no run is worth a boot


@dataclass(frozen=True)
class Tally:
    """The evidence on one commit: runs that gave a verdict, and how many of them failed."""

    runs: int = 0
    failures: int = 0

    @property
    def passes(self) -> int:
        return self.runs - self.failures

    def plus(self, failed: bool) -> Tally:
        """This tally with one more run."""
        return Tally(self.runs + 1, self.failures + int(failed))


@dataclass(frozen=True)
class Model:
    """The priors: ``Beta(a, b)`` on a bad kernel's failure rate; a good kernel's failure rate."""

    a: float = 1.0
    b: float = 1.0
    false_fail: float = 0.01


@dataclass(frozen=True)
class Posterior:
    """P(first bad = candidate i) for every candidate, and each hypothesis' mean failure rate."""

    probs: tuple[float, ...]
    rates: tuple[float, ...]        # E[q | data, H_i]

    @property
    def best(self) -> int:
        """The most probable first bad candidate (the oldest on a tie)."""
        return max(range(len(self.probs)), key=lambda i: (self.probs[i], -i))

    @property
    def p_best(self) -> float:
        return self.probs[self.best]

    @property
    def fail_rate(self) -> float:
        """A bad kernel's failure rate, the posterior mean over the hypotheses."""
        return sum(p * q for p, q in zip(self.probs, self.rates))

    def p_bad(self, j: int) -> float:
        """P(candidate ``j`` is a bad kernel) = P(first bad <= j)."""
        return sum(self.probs[: j + 1])

    def credible(self, mass: float) -> list[int]:
        """The fewest candidates whose probabilities add up to ``mass`` (most probable first)."""
        order = sorted(range(len(self.probs)), key=lambda i: (-self.probs[i], i))
        out: list[int] = []
        total = 0.0
        for i in order:
            out.append(i)
            total += self.probs[i]
            if total >= mass - 1e-12:
                break
        return sorted(out)


def _log(x: float) -> float:
    return math.log(x) if x > 0 else -math.inf


def _log_beta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def posterior(n: int, tallies: Mapping[int, Tally], model: Model = Model()) -> Posterior:
    """The posterior over the first bad commit among ``n`` candidates, given each candidate's
    tally (indices outside ``0..n-1``, e.g. -1 for the good endpoint, are ignored: they weigh
    the same under every hypothesis)."""
    if n < 1:
        raise ValueError("a bisect needs at least one candidate")
    f = [tallies.get(j, Tally()).failures for j in range(n)]
    p = [tallies.get(j, Tally()).passes for j in range(n)]
    le, l1e = _log(model.false_fail), _log(1 - model.false_fail)
    logs, rates = [0.0] * n, [0.0] * n
    below = 0.0                                  # log-likelihood of candidates 0..i-1 as good kernels
    fs, ps = sum(f), sum(p)                      # failures and passes on candidates i..n-1
    base = _log_beta(model.a, model.b)
    for i in range(n):
        logs[i] = below + _log_beta(model.a + fs, model.b + ps) - base
        rates[i] = (model.a + fs) / (model.a + model.b + fs + ps)
        below += (f[i] * le if f[i] else 0.0) + (p[i] * l1e if p[i] else 0.0)
        fs, ps = fs - f[i], ps - p[i]
    top = max(logs)
    if top == -math.inf:                         # only possible with false_fail 0 and contradictions
        raise ValueError("no candidate is consistent with the evidence")
    w = [math.exp(x - top) for x in logs]
    total = sum(w)
    return Posterior(tuple(x / total for x in w), tuple(rates))


def _h(p: float) -> float:
    """Binary entropy in bits."""
    return 0.0 if p <= 0 or p >= 1 else -(p * math.log2(p) + (1 - p) * math.log2(1 - p))


def gains(post: Posterior, model: Model = Model()) -> list[float]:
    """The expected information gain (bits) about the first bad commit of one more run of each
    candidate ``j``: H(outcome) - E[H(outcome | H)], where under ``H_i`` the run fails with
    ``rates[i]`` if ``j >= i`` and with ``false_fail`` otherwise. Prefix sums: O(n)."""
    e = model.false_fail
    out, w, fail, cond = [], 0.0, 0.0, 0.0
    for pi, qi in zip(post.probs, post.rates):
        w, fail, cond = w + pi, fail + pi * qi, cond + pi * _h(qi)
        p_fail = fail + (1 - w) * e
        out.append(max(0.0, _h(min(1.0, p_fail)) - cond - (1 - w) * _h(e)))
    return out


def next_commit(post: Posterior, testable: Collection[int], model: Model = Model()) -> int | None:
    """The testable candidate whose next run tells most about the first bad commit; None when no
    run would tell more than :data:`GAIN_FLOOR` bits. Ties go to the one nearest the median."""
    g = gains(post, model)
    median = next(i for i in range(len(post.probs)) if post.p_bad(i) >= 0.5)
    choices = [j for j in testable if 0 <= j < len(g) and g[j] >= GAIN_FLOOR]
    if not choices:
        return None
    return max(choices, key=lambda j: (round(g[j], 9), -abs(j - median), -j))


@dataclass(frozen=True)
class Stop:
    """Why a probabilistic bisect ended: ``confident`` (one candidate at the confidence),
    ``budget`` (the boots were spent) or ``stuck`` (no testable commit can tell more)."""

    why: str
    best: int
    p_best: float


def rate_floor(failures: int, runs: int, alpha: float) -> float:
    """The one-sided ``1 - alpha`` lower bound of a failure rate that gave ``failures`` in ``runs``
    (Clopper-Pearson): the lowest rate under which that many failures or more have ``alpha`` chance."""
    if failures <= 0 or runs <= 0:
        return 0.0

    def tail(q: float) -> float:          # P(at least `failures` failures in `runs` runs at rate q)
        return sum(math.exp(math.lgamma(runs + 1) - math.lgamma(k + 1) - math.lgamma(runs - k + 1)
                            + k * math.log(q) + (runs - k) * math.log1p(-q)) for k in range(failures, runs + 1))
    lo, hi = 0.0, min(1.0, failures / runs)
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if tail(mid) < alpha else (lo, mid)
    return lo


def parent_clear(n: int, tallies: Mapping[int, Tally], culprit: int, confidence: float,
                 model: Model = Model()) -> bool:
    """Whether the culprit's parent has run enough to rule out that it is bad too: at ``q_lo``, the
    :func:`rate_floor` (at ``1 - confidence``) of the failures on the culprit and later commits, a bad
    kernel gives the parent's runs at most ``1 - confidence`` times as often as a good kernel does
    (with no failure: ``(1 - q_lo) ** passes <= 1 - confidence``). The good endpoint is good."""
    if culprit == 0:
        return True
    bad = [tallies.get(j, Tally()) for j in range(culprit, n)]
    alpha = 1 - confidence
    q_lo = rate_floor(sum(t.failures for t in bad), sum(t.runs for t in bad), alpha)
    if q_lo <= 0:
        return False
    t, e = tallies.get(culprit - 1, Tally()), model.false_fail
    ratio = t.failures * (_log(q_lo) - _log(e)) + t.passes * (math.log1p(-q_lo) - _log(1 - e))
    return ratio <= math.log(alpha)


def stop(post: Posterior, confidence: float, boots: int, budget: int, nxt: int | None,
         clear: bool = True) -> Stop | None:
    """The stop rule: a candidate at ``confidence`` or more whose parent is ``clear``
    (:func:`parent_clear`); else the budget spent; else nothing worth testing (``nxt`` is
    :func:`next_commit`'s answer); else go on (None)."""
    if post.p_best >= confidence and clear:
        return Stop("confident", post.best, post.p_best)
    if boots >= budget:
        return Stop("budget", post.best, post.p_best)
    if nxt is None:
        return Stop("stuck", post.best, post.p_best)
    return None


@dataclass(frozen=True)
class Advice:
    """What would make ``culprit`` confident (P(first bad) at the confidence, its parent clear): ``parent_passes`` more
    passing runs of the parent (None: not reachable that way within 200 runs, or the parent is
    the good endpoint), and P after one more failing run of the culprit."""

    culprit: int
    parent_passes: int | None
    p_after_culprit_fails: float


def advice(n: int, tallies: Mapping[int, Tally], culprit: int, confidence: float,
           model: Model = Model()) -> Advice:
    """How many more passes of the culprit's parent would bring the culprit to ``confidence`` with
    its parent clear (:func:`parent_clear`), and where one more failure of the culprit would bring it."""
    after_fail = dict(tallies)
    after_fail[culprit] = tallies.get(culprit, Tally()).plus(True)
    p_fail = posterior(n, after_fail, model).probs[culprit]
    if culprit == 0:
        return Advice(culprit, None, p_fail)
    t = dict(tallies)
    for k in range(1, 201):
        t[culprit - 1] = t.get(culprit - 1, Tally()).plus(False)
        if posterior(n, t, model).probs[culprit] >= confidence and parent_clear(n, t, culprit, confidence, model):
            return Advice(culprit, k, p_fail)
    return Advice(culprit, None, p_fail)


def choose(n: int, tallies: Mapping[int, Tally], untestable: Collection[int], *, boots: int, budget: int,
           confidence: float, model: Model = Model()) -> int | Stop:
    """One decision of the search: the candidate to run next, or why to stop (:func:`stop`).
    The driver and the simulation both call this, once per run.

    The gain of one run counts what it tells about the first bad commit, not about the failure
    rate q; but how much a pass of a good-looking commit tells depends on q (a bad kernel that
    fails 1 run in 50 passes as often as a good one). So the bad endpoint (``n - 1``, bad under
    every hypothesis: it tells only of q) is weighed by a two-run look-ahead: its run and then
    the best run after it, against the best run now and the best after that."""
    post = posterior(n, tallies, model)
    testable = [j for j in range(n - 1) if j not in untestable]
    nxt = next_commit(post, testable, model)
    clear = post.p_best >= confidence and parent_clear(n, tallies, post.best, confidence, model)
    done = stop(post, confidence, boots, budget, nxt, clear)
    if done is not None or nxt is None:
        return done or Stop("stuck", post.best, post.p_best)
    return n - 1 if _lookahead(n, tallies, n - 1, testable, model) > _lookahead(n, tallies, nxt, testable, model) \
        else nxt


def _lookahead(n: int, tallies: Mapping[int, Tally], j: int, testable: Sequence[int], model: Model) -> float:
    """The expected gain of a run of ``j`` and then of the best testable run after it (bits)."""
    post = posterior(n, tallies, model)
    p_fail = sum(p * (q if j >= i else model.false_fail)
                 for i, (p, q) in enumerate(zip(post.probs, post.rates)))
    total = gains(post, model)[j]
    for failed, w in ((True, p_fail), (False, 1 - p_fail)):
        if w <= 0:
            continue
        t = dict(tallies)
        t[j] = t.get(j, Tally()).plus(failed)
        g = gains(posterior(n, t, model), model)
        total += w * max(g[k] for k in testable)
    return total


def plan_endpoint(bad: Tally, *, least: int = 2, cap: int = 10) -> bool:
    """Whether the bad endpoint needs another run before the search: at least ``least`` runs and
    one failure, at most ``cap`` runs (no failure by then: it is not bad)."""
    return bad.runs < cap and (bad.runs < least or bad.failures == 0)


def summary(commits: Sequence[str], post: Posterior) -> str:
    """One line: the best candidate, its probability, and the runner-up."""
    order = sorted(range(len(post.probs)), key=lambda i: -post.probs[i])
    parts = [f"{commits[i][:12]} {post.probs[i]:.3f}" for i in order[:2]]
    return "P(first bad): " + ", ".join(parts)


def tallies(commits: Sequence[str], steps: Sequence[Mapping]) -> dict[int, Tally]:
    """Each candidate's tally from a bisect's recorded steps (state.json's dicts): the runs and
    failures a step counted (an older step without counts: one run by its outcome); a verdict
    reused from a byte-identical kernel ran nothing and counts nothing."""
    index = {c: i for i, c in enumerate(commits)}
    out: dict[int, Tally] = {}
    for s in steps:
        i = index.get(s["commit"])
        if i is None or s.get("reused_from"):
            continue
        runs, failures = s.get("runs"), s.get("failures", 0)
        if runs is None:
            runs, failures = (1, int(s["outcome"] == "bad")) if s["outcome"] != "skip" else (0, 0)
        t = out.get(i, Tally())
        out[i] = Tally(t.runs + runs, t.failures + failures)
    return out


def explain(commits: Sequence[str], steps: Sequence[Mapping], culprit: str, confidence: float, *,
            model: Model = Model(), note: str = "") -> dict:
    """How sure a bisect is of ``culprit`` given its steps' runs: P(first bad commit), the
    candidates that hold ``confidence`` of the mass, a bad kernel's failure rate, and what would
    raise P (:func:`advice`); ``lines`` says it for the report."""
    t = tallies(commits, steps)
    post = posterior(len(commits), t, model)
    k = commits.index(culprit)
    adv = advice(len(commits), t, k, confidence, model)
    cred = [commits[i] for i in post.credible(confidence)]
    p = post.probs[k]
    clear = parent_clear(len(commits), t, k, confidence, model)
    lines = [f"confidence: P(first bad commit = {culprit[:12]}) = {p:.3f}" + (f" ({note})" if note else ""),
             f"  a bad kernel fails {post.fail_rate:.0%} of runs (posterior mean); "
             f"{len(cred)} candidate(s) hold {confidence:.0%}: {', '.join(c[:12] for c in cred)}"]
    if p < confidence or not clear:
        raise_ = []
        if adv.parent_passes is not None:
            raise_.append(f"{adv.parent_passes} more passing run(s) of the parent {commits[k - 1][:12]}")
        raise_.append(f"one more failing run of {culprit[:12]} would make it {adv.p_after_culprit_fails:.3f}")
        lines.append(f"  to reach {confidence:.0%}: " + "; ".join(raise_))
    return {"p_first_bad": p, "fail_rate": post.fail_rate, "credible": cred, "confidence": confidence,
            "parent_clear": clear, "parent_passes_needed": adv.parent_passes,
            "p_after_culprit_fails": adv.p_after_culprit_fails,
            "probabilities": {commits[i]: round(x, 6) for i, x in enumerate(post.probs) if x >= 1e-4},
            "lines": lines}


def evidence_line(runs: int, failures: int, post: Mapping | None) -> str:
    """A step's evidence for the report: ``[1/2 failed; P(bad) 0.97, best abc 0.81] `` (empty
    when the step counted no runs)."""
    if not runs:
        return ""
    text = f"{failures}/{runs} failed"
    if post:
        text += f"; P(bad) {post['p_bad']:.2f}, best {post['best'][:12]} {post['p_best']:.2f}"
    return f"[{text}] "
