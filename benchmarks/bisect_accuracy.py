#!/usr/bin/env python3
"""How often a bisect names the right culprit under noise: a SIMULATION, not real VMs. It drives
the harness's own decision code with synthetic boots:

* performance: 16-commit histories, the culprit at a random position, a change of -70%, -30% or
  -15%; each boot's IOPS are log-normal with a between-boot CV drawn from 12-19% (measured here:
  docs/benchmarks.md) and 5% within a boot (3 runs a boot), on a host whose speed drifts from boot
  to boot and now and then jumps 3x up or down for a stretch (seen in a real bisect: issue 23).
  ``PerfBisect``'s decisions: the endpoints in alternating rounds until the paired rule decides
  (``paired_rule``, ``levels``), then rounds chosen by ``bayes_perf.choose`` from the posterior
  until the culprit holds ``--confidence`` after rounds against its parent, or the boots run
  out. The first design (git's walk, each step against the endpoints' values from the start by
  the unpaired step rule, kept here as ``old_step`` since the harness dropped it) beside it.
* flaky: a check that fails 1 run in 2 or 1 in 4 on bad kernels, never on good ones: the
  probabilistic bisection (``bayes.plan_endpoint``, ``bayes.choose``: the driver's calls) at
  ``--confidence``, and the old deterministic bisect with one run a step and the culprit
  confirmed by one more run of it and of its parent.

Correct: a confirmed (or confident) culprit that is the real one; wrong: a confirmed culprit that
is not; cannot say: no confirmed culprit.

    .venv/bin/python -m benchmarks.bisect_accuracy [--trials 200] [--seed 1] [--budget 60]
        [--perf-budget 80] [--only perf|flaky|likelihood]
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
from collections.abc import Callable
from dataclasses import dataclass

from harness.drivers import bayes, bayes_perf
from harness.drivers.bisect_perf import DEFAULT_BUDGET, DEFAULT_CONFIDENCE, ENDPOINT_ROUNDS
from harness.drivers.checks import parse_check
from harness.results.verdict import CellValues, decide_cells, levels, paired_rule, round_logs

N = 16                                   # candidates after the good endpoint; the last is the bad endpoint
CHECK = parse_check("fio:ext4/nvme/unwritten-convert/libaio:10%")
SECONDS_A_BOOT = 33                       # a round of two boots took 64-66 s in test_09 (TCG, 2 cores, 3 runs of 4 s)
SECONDS_A_RUN = 15                       # a guest command check: boot to SSH 4.7 s, command, shutdown, host work


@dataclass
class Outcome:
    verdict: str                         # correct | wrong | cannot say
    boots: int


class Host:
    """Synthetic boots of a 16-commit history: kernel ``i`` (``-1`` the good endpoint) measures
    ``1000 * (1 + effect if i >= culprit)`` IOPS, times the host's speed, a boot effect and run noise."""

    def __init__(self, rng: random.Random, culprit: int, effect: float, cv: float):
        self.rng, self.culprit, self.effect, self.cv = rng, culprit, effect, cv
        self.log_speed, self.boots = 0.0, 0

    def measure(self, ref: str) -> tuple[list[float], list]:
        i = int(ref)
        self.boots += 1
        self.log_speed += self.rng.gauss(0.0, 0.03)
        if self.rng.random() < 0.01:              # a stretch 3x faster or slower (issue 23)
            self.log_speed += self.rng.choice((1, -1)) * math.log(3)
        level = 1000.0 * (1 + self.effect if i >= self.culprit else 1.0) * math.exp(self.log_speed)
        boot = level * math.exp(self.rng.gauss(0.0, self.cv))
        return [boot * math.exp(self.rng.gauss(0.0, 0.05)) for _ in range(3)], []


def endpoints(host: Host) -> list[tuple[list[float], list[float]]] | None:
    """``PerfBisect._endpoints``: rounds of (good, bad), at least ``ENDPOINT_ROUNDS[0]`` and until
    the paired rule says bad; None when they do not differ by then."""
    rounds: list[tuple[list[float], list[float]]] = []
    least, most = ENDPOINT_ROUNDS
    while True:
        v = paired_rule(rounds, min_effect_pct=CHECK.min_effect_pct)
        if len(rounds) >= most or (len(rounds) >= least and v.outcome == "bad"):
            return rounds if v.outcome == "bad" else None
        rounds.append((host.measure("-1")[0], host.measure(str(N - 1))[0]))


def walk(judge: Callable[[int, int, int], str]) -> int | None:
    """git bisect on a linear history: test the middle of what is left, ``judge(commit,
    last_good, first_bad)``; a skip tries the middle of the rest. The first bad commit, or None."""
    lo, hi, skipped = -1, N - 1, set()
    while hi - lo > 1:
        left = [c for c in range(lo + 1, hi) if c not in skipped]
        if not left:
            return None
        mid = min(left, key=lambda c: (abs(c - (lo + hi) / 2), c))
        out = judge(mid, lo, hi)
        if out == "bad":
            hi = mid
        elif out == "good":
            lo = mid
        else:
            skipped.add(mid)
    return hi


def perf_bisect(rng: random.Random, effect: float, cv: float, confidence: float, budget: int) -> Outcome:
    """One performance bisect as ``PerfBisect`` runs it: the endpoints' rounds, then rounds chosen
    by ``bayes_perf.choose`` until it stops."""
    culprit = rng.randrange(N)
    host = Host(rng, culprit, effect, cv)
    ends = endpoints(host)
    if ends is None:
        return Outcome("cannot say", host.boots)
    lv, start = levels(ends), host.boots
    rounds = [bayes_perf.Round(-1, N - 1, x) for x in round_logs(ends)]
    while not isinstance(d := bayes_perf.choose(N, rounds, lv, boots=host.boots - start, budget=budget,
                                                 confidence=confidence), bayes_perf.Stop):
        ref, new = host.measure(str(d.reference))[0], host.measure(str(d.kernel))[0]
        rounds.append(bayes_perf.Round(d.reference, d.kernel, round_logs([(ref, new)])[0]))
    if d.why != "confident":
        return Outcome("cannot say", host.boots)
    return Outcome("correct" if d.best == culprit else "wrong", host.boots)


def _unpaired(base: list[float], new: list[float], min_effect_pct: float) -> str:
    """The matrix's comparison of two sets of runs, alone in its family (regression, ...)."""
    (c,) = decide_cells({0: CellValues({"iops": base}, {"iops": new})}, ("iops",), min_effect_pct=min_effect_pct)[0]
    return c.verdict


def old_step(good: list[float], new: list[float], bad: list[float] | None = None) -> str:
    """The first design's step rule, as the harness had it before checks alternated boots: bad at
    a regression of at least the minimum effect against the good values from the start (between
    endpoints, also at least half their gap on the ratio scale); good at no change (or, between
    endpoints, when the bad endpoint is that far below); otherwise skip."""
    eff = CHECK.min_effect_pct
    if bad is not None:
        g, b = statistics.median(good), statistics.median(bad)
        eff = max(eff, (1 - math.sqrt(b / g)) * 100 if 0 < b < g else 0.0)
    vs_good = _unpaired(good, new, eff)
    if vs_good == "regression":
        return "bad"
    if bad is None:
        return "good" if vs_good in ("no change", "improvement") else "skip"
    return "good" if _unpaired(new, bad, eff) == "regression" else "skip"


def old_perf_bisect(rng: random.Random, effect: float, cv: float) -> Outcome:
    """The first design: git's walk, each step against the endpoints' values from the start
    (``old_step``, rounds while open), the culprit confirmed the same way (bad again, and
    its parent good)."""
    culprit = rng.randrange(N)
    host = Host(rng, culprit, effect, cv)
    good: list[float] = []
    bad: list[float] = []
    for _ in range(3):
        good += host.measure("-1")[0]
        bad += host.measure(str(N - 1))[0]
        if old_step(good, bad) == "bad":
            break
    else:
        return Outcome("cannot say", host.boots)

    def judge(commit: int, _lg: int = 0, _fb: int = 0) -> str:
        if commit < 0:
            return "good"
        values: list[float] = []
        for _ in range(3):
            values += host.measure(str(commit))[0]
            v = old_step(good, values, bad)
            if v != "skip":
                return v
        return "skip"
    found = walk(judge)
    if found is None or judge(found) != "bad" or judge(found - 1) != "good":
        return Outcome("cannot say", host.boots)
    return Outcome("correct" if found == culprit else "wrong", host.boots)


def flaky_bisect(rng: random.Random, q: float, confidence: float, budget: int) -> Outcome:
    """The probabilistic bisection, decision by decision as ``FlakyBisect`` makes them."""
    culprit = rng.randrange(N)
    t: dict[int, bayes.Tally] = {}
    boots = 2                                     # the good endpoint's runs: always pass
    while bayes.plan_endpoint(t.get(N - 1, bayes.Tally())):
        t[N - 1] = t.get(N - 1, bayes.Tally()).plus(rng.random() < q)
        boots += 1
    if not t[N - 1].failures:
        return Outcome("cannot say", boots)
    while not isinstance(d := bayes.choose(N, t, (), boots=boots, budget=budget, confidence=confidence),
                         bayes.Stop):
        t[d] = t.get(d, bayes.Tally()).plus(d >= culprit and rng.random() < q)
        boots += 1
    if d.why != "confident":
        return Outcome("cannot say", boots)
    return Outcome("correct" if d.best == culprit else "wrong", boots)


def old_flaky_bisect(rng: random.Random, q: float) -> Outcome:
    """The deterministic bisect: one run a step; the culprit confirmed by a failing run of it and
    a passing run of its parent."""
    culprit = rng.randrange(N)
    boots = 0

    def run(commit: int) -> str:
        nonlocal boots
        boots += 1
        return "bad" if commit >= culprit and rng.random() < q else "good"
    if run(-1) != "good" or run(N - 1) != "bad":
        return Outcome("cannot say", boots)
    found = walk(lambda c, _lg, _fb: run(c))
    if found is None or run(found) != "bad" or (found > 0 and run(found - 1) != "good"):
        return Outcome("cannot say", boots)
    return Outcome("correct" if found == culprit else "wrong", boots)


def row(name: str, outs: list[Outcome], seconds: float) -> str:
    n = len(outs)
    share = {k: sum(o.verdict == k for o in outs) / n for k in ("correct", "wrong", "cannot say")}
    boots = [o.boots for o in outs]
    return (f"| {name} | {n} | {share['correct']:.1%} | {share['wrong']:.1%} | {share['cannot say']:.1%} | "
            f"{statistics.mean(boots):.1f} ({min(boots)}-{max(boots)}) | {statistics.mean(boots) * seconds / 60:.0f} |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=200, help="simulated bisects per case")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--budget", type=int, default=60, help="boots a probabilistic bisect may spend")
    ap.add_argument("--perf-budget", type=int, default=DEFAULT_BUDGET,
                    help="boots of rounds a performance bisect may spend after its endpoints")
    ap.add_argument("--only", choices=("perf", "flaky", "likelihood"),
                    help="only the performance cases, only the flaky ones, or only the driver's performance design")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    print(f"SIMULATION (synthetic boots through the harness's decision code), {N}-commit histories, "
          f"{args.trials} bisects a case, seed {args.seed}")
    print("| case | bisects | correct | wrong | cannot say | boots a bisect, mean (range) | minutes (est.) |")
    print("|---|---|---|---|---|---|---|")
    for effect in (-0.70, -0.30, -0.15) if args.only != "flaky" else ():
        for confidence in (0.95, DEFAULT_CONFIDENCE):
            outs = [perf_bisect(rng, effect, rng.uniform(0.12, 0.19), confidence, args.perf_budget)
                    for _ in range(args.trials)]
            print(row(f"performance {effect:+.0%}: --confidence {confidence} --max-boots {args.perf_budget}",
                      outs, SECONDS_A_BOOT))
        if args.only != "likelihood":
            outs = [old_perf_bisect(rng, effect, rng.uniform(0.12, 0.19)) for _ in range(args.trials)]
            print(row(f"performance {effect:+.0%}: old, each step against the endpoints' values from the start",
                      outs, SECONDS_A_BOOT))
    for q, label in ((0.5, "1 in 2"), (0.25, "1 in 4")) if args.only in (None, "flaky") else ():
        for confidence in (0.95, 0.99):
            outs = [flaky_bisect(rng, q, confidence, args.budget) for _ in range(args.trials)]
            print(row(f"flaky, fails {label}: --confidence {confidence} --max-boots {args.budget}", outs,
                      SECONDS_A_RUN))
        outs = [old_flaky_bisect(rng, q) for _ in range(args.trials)]
        print(row(f"flaky, fails {label}: old, one run a step, confirmed by one more", outs, SECONDS_A_RUN))


if __name__ == "__main__":
    main()
