"""How well the nightly history detector finds steps in noisy series, on synthetic nights.

Each synthetic cell has ``--history`` earlier nights, ``--runs`` boots a night, and between-boot
noise drawn per cell uniformly from 5-9% (coefficient of variation, as measured between boots on
the 2-core TCG machine). A step of 5% or 10% (a regression: IOPS down) starts at night
``history``; the detector (:func:`harness.results.verdict.night_vs_history`, exactly as
``kharness nightly`` calls it) decides each night from the step on, seeing only the nights so far.

Reported:
  recall      steps flagged as a regression within 3 nights of the step
  nights      how many nights it took (1 = the night of the step)
  false alarm nights without any step flagged as a regression (per decision), with
              min_nights..history+2 nights of history (change-point regime) and with 1..4
              (tonight against the last good night)

    .venv/bin/python -m benchmarks.history_detector [--trials 400] [--seed 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np

from harness.results.history import PastNight
from harness.results.verdict import metric, night_vs_history


def series(rng: np.random.Generator, nights: int, runs: int, step_at: int | None, step: float) -> list[list[float]]:
    cv = rng.uniform(0.05, 0.09)
    out = []
    for i in range(nights):
        level = 1000.0 * ((1 - step) if step_at is not None and i >= step_at else 1.0)
        out.append(list(level * (1 + rng.normal(0, cv, runs))))
    return out


def decide(nights: list[list[float]], upto: int, **policy) -> str:
    hist = [PastNight(str(i), tuple(v)) for i, v in enumerate(nights[:upto])]
    return night_vs_history(hist, nights[upto], metric("iops"), **policy).verdict


def run(trials: int, seed: int, history: int, runs: int, policy: dict) -> dict:
    rng = np.random.default_rng(seed)
    out: dict = {}
    for step in (0.05, 0.10, 0.20):
        found, took = 0, []
        for _ in range(trials):
            s = series(rng, history + 3, runs, history, step)
            for k in range(3):
                if decide(s, history + k, **policy) == "regression":
                    found += 1
                    took.append(k + 1)
                    break
        out[f"step{int(step * 100)}"] = (found / trials, statistics.mean(took) if took else None,
                                         max(took) if took else None)
    fa = fa_any = n = 0
    for _ in range(trials):
        s = series(rng, history + 3, runs, None, 0.0)
        for k in range(policy["min_nights"], history + 3):
            v = decide(s, k, **policy)
            n += 1
            fa += v == "regression"
            fa_any += v in ("regression", "improvement")
    out["false_alarm_cpd"] = (fa / n, fa_any / n, n)
    fa = fa_any = n = 0
    for _ in range(trials):
        s = series(rng, policy["min_nights"], runs, None, 0.0)
        for k in range(1, policy["min_nights"]):
            v = decide(s, k, **policy)
            n += 1
            fa += v == "regression"
            fa_any += v in ("regression", "improvement")
    out["false_alarm_last_good"] = (fa / n, fa_any / n, n)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=400)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--history", type=int, default=10, help="nights before the step")
    ap.add_argument("--runs", type=int, default=3, help="boots a night")
    ap.add_argument("--min-nights", type=int, default=5)
    ap.add_argument("--window", type=int, default=3)
    ap.add_argument("--alpha", type=float, default=0.05)
    ap.add_argument("--min-effect", type=float, default=5.0)
    a = ap.parse_args()
    policy = dict(min_nights=a.min_nights, window=a.window, alpha=a.alpha, min_effect_pct=a.min_effect)
    t0 = time.monotonic()
    r = run(a.trials, a.seed, a.history, a.runs, policy)
    print(f"history detector: {a.trials} trials, {a.history} nights of history, {a.runs} boots a night, "
          f"noise 5-9% between boots; policy {policy}")
    for step in (5, 10, 20):
        rec, mean, worst = r[f"step{step}"]
        print(f"  {step:2d}% step: recall {rec:6.1%} within 3 nights"
              + (f", flagged after {mean:.2f} nights on average (worst {worst})" if mean else ""))
    fa, fa_any, n = r["false_alarm_cpd"]
    print(f"  false alarms, change-point regime: {fa:.1%} regression ({fa_any:.1%} either direction) of {n} nights")
    fa, fa_any, n = r["false_alarm_last_good"]
    print(f"  false alarms, last-good regime (<{a.min_nights} nights): {fa:.1%} regression "
          f"({fa_any:.1%} either direction) of {n} nights")
    print(f"  ({time.monotonic() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
