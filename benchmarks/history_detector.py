"""How well the nightly history detector finds steps in noisy series, on synthetic nights.

Each synthetic cell has ``--history`` earlier nights and ``--runs`` boots a night (one run a boot,
as a night measures). The noise comes from a named class (``--noise``):

* ``synthetic-5-9`` (the old headline): per cell a CV drawn uniformly from 5-9%, normal,
  no night-to-night shift. Reproduces the figures measured before the noise was measured per metric.
* ``iops``, ``p99``, ``jbd2``, ``ctxsw``: measured on this machine (2-core TCG host) by
  ``benchmarks/noise_by_metric.py`` from every finished boot on it (:data:`NOISE`, with n and
  source). Per cell, the between-boot SD of the logs is drawn from the measured conditions' SDs
  (one kernel, cell and session each; a loud cell stays loud), each night moves as a whole by a
  normal shift with the measured session-to-session SD, and each boot is log-normal around it.
  ``--noise-json FILE`` takes the classes from a fresh ``noise_by_metric --json`` instead.

``--night-sd`` and ``--cv`` override the night shift and fix the between-boot SD (what-ifs; with a
night shift, ``synthetic-5-9`` draws log-normal boots). ``--test nights`` swaps the change-point
test for :func:`nights_test` (nightly medians as the unit): a what-if of the detector, not its rule.

A step of 5%, 10% or 20% in the metric's worse direction (IOPS down, latency and counts up)
starts at night ``history``; the detector (:func:`harness.results.verdict.night_vs_history`, exactly
as ``kharness nightly`` calls it) decides each night from the step on, seeing only the nights so far.

Reported:
  recall      steps flagged as a regression within 3 nights of the step
  nights      how many nights it took (1 = the night of the step)
  false alarm nights without any step flagged as a regression (per decision), with
              min_nights..history+2 nights of history (change-point regime) and with 1..4
              (tonight against the last good night)

    .venv/bin/python -m benchmarks.history_detector [--noise iops] [--trials 400] [--runs 5] [--seed 1]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from scipy.stats import t as student_t

from harness.results.history import SIGMA_FLOOR, PastNight, change_points
from harness.results.verdict import metric, night_vs_history

# Measured on this machine (2-core TCG, no KVM) by benchmarks/noise_by_metric.py on 2026-12-06 from
# 137 boots in 33 sessions (suite, nightly, bisect and try runs of the VM tests, the 6.12 side-by-side
# runs, the clock-mode runs without icount): ``sds`` are the between-boot SDs of the logs of every
# condition (one kernel, cell and session) with at least 3 boots, one run a boot; ``night`` the
# session-to-session SD of the same kernel and cell (random effects over 11 series in 34 sessions
# for IOPS and p99, 9 in 30 for the counts). jbd2: only cells where a commit is not already taken
# for every write (mean below 990 per 1000 writes; at 1000 the count cannot rise and never varies).
NOISE: dict[str, dict] = {
    "synthetic-5-9": dict(metric="iops", sds=None, night=0.0,
                          source="uniform 5-9% CV a cell, normal, no night shift (the old headline)"),
    "iops": dict(metric="iops", night=0.101, source="45 conditions, 184 boots, 12 sessions", sds=(
        0.036, 0.049, 0.059, 0.059, 0.062, 0.068, 0.072, 0.075, 0.091, 0.098, 0.100, 0.100, 0.105, 0.109,
        0.111, 0.119, 0.127, 0.132, 0.132, 0.137, 0.139, 0.146, 0.147, 0.147, 0.149, 0.150, 0.153, 0.171,
        0.191, 0.203, 0.220, 0.249, 0.253, 0.278, 0.286, 0.293, 0.329, 0.333, 0.422, 0.430, 0.443, 0.510,
        0.569, 0.737, 0.748)),
    "p99": dict(metric="clat_p99_us", night=0.175, source="45 conditions, 184 boots, 12 sessions", sds=(
        0.037, 0.045, 0.048, 0.051, 0.056, 0.056, 0.064, 0.074, 0.082, 0.098, 0.120, 0.128, 0.134, 0.135,
        0.138, 0.140, 0.143, 0.146, 0.146, 0.152, 0.159, 0.174, 0.186, 0.188, 0.201, 0.202, 0.205, 0.207,
        0.217, 0.231, 0.246, 0.276, 0.326, 0.346, 0.351, 0.442, 0.480, 0.504, 0.511, 0.533, 0.534, 0.604,
        0.663, 0.769, 0.894)),
    "jbd2": dict(metric="jbd2_commits_per_kwrite", night=0.002,
                 source="15 conditions, 60 boots, 11 sessions (unsaturated cells)", sds=(
        0.019, 0.039, 0.049, 0.054, 0.057, 0.092, 0.096, 0.097, 0.102, 0.105, 0.106, 0.108, 0.111, 0.119,
        0.119)),
    "ctxsw": dict(metric="ctxsw_per_kwrite", night=0.0, source="41 conditions, 172 boots, 11 sessions", sds=(
        0.002, 0.006, 0.007, 0.009, 0.011, 0.012, 0.013, 0.016, 0.016, 0.016, 0.017, 0.017, 0.017, 0.018,
        0.018, 0.018, 0.019, 0.019, 0.020, 0.022, 0.026, 0.030, 0.033, 0.033, 0.035, 0.035, 0.035, 0.036,
        0.037, 0.039, 0.043, 0.044, 0.044, 0.044, 0.045, 0.052, 0.057, 0.058, 0.062, 0.067, 0.080)),
}
JSON_KEYS = {"iops": "iops", "p99": "clat_p99_us", "jbd2": "jbd2_commits_per_kwrite", "ctxsw": "ctxsw_per_kwrite"}


def from_json(path: Path, name: str) -> dict:
    """A noise class from ``benchmarks.noise_by_metric --json`` output, chosen as :data:`NOISE` is."""
    key = JSON_KEYS[name]
    r = json.loads(path.read_text())[key]
    conds = [c for c in r["conditions"] if c["boots"] >= 3 and (name != "jbd2" or c["mean"] < 990)]
    return dict(metric=key, night=r["session"] or 0.0, sds=tuple(sorted(c["sd"] for c in conds)),
                source=f"{path}: {len(conds)} conditions, {sum(c['boots'] for c in conds)} boots")


def series(rng: np.random.Generator, nights: int, runs: int, step_at: int | None, step: float,
           noise: dict | None = None) -> list[list[float]]:
    """One cell's nights of per-boot values; the step is in the metric's worse direction."""
    if noise is None:
        cv = rng.uniform(0.05, 0.09)      # the old model, kept bit for bit (same draws, same seed)
        out = []
        for i in range(nights):
            level = 1000.0 * ((1 - step) if step_at is not None and i >= step_at else 1.0)
            out.append(list(level * (1 + rng.normal(0, cv, runs))))
        return out
    worse = -1.0 if metric(noise["metric"]).higher_is_better else 1.0
    if noise.get("cv") is not None:
        sd = noise["cv"]
    elif noise.get("sds") is None:        # synthetic-5-9 with a night shift: log-normal, 5-9% a cell
        sd = rng.uniform(0.05, 0.09)
    else:
        sd = float(rng.choice(noise["sds"]))
    out = []
    for i in range(nights):
        stepped = step_at is not None and i >= step_at
        level = 1000.0 * (1 + worse * step if stepped else 1.0) * math.exp(rng.normal(0, noise["night"]))
        out.append(list(level * np.exp(rng.normal(0, sd, runs))))
    return out


def decide(nights: list[list[float]], upto: int, key: str = "iops", test: str = "pooled", **policy) -> str:
    if test == "nights" and upto >= policy["min_nights"]:
        return nights_test(nights[:upto + 1], higher_is_better=metric(key).higher_is_better, window=policy["window"],
                           alpha=policy["alpha"], min_effect_pct=policy["min_effect_pct"])
    hist = [PastNight(str(i), tuple(v)) for i, v in enumerate(nights[:upto])]
    return night_vs_history(hist, nights[upto], metric(key), **policy).verdict


def nights_test(nights: list[list[float]], *, higher_is_better: bool, window: int, alpha: float,
                min_effect_pct: float) -> str:
    """A what-if, not the harness's rule (``--test nights``): the change-point decision of
    :func:`harness.results.history.detect_change` with the **night** as the unit instead of the boot.
    Same segment (PELT), same splits of the last ``window`` nights, Bonferroni and minimum effect;
    but the test is a one-sided t on the logs of the nightly medians, the segment's nights before the
    split giving the variance (so a night that moves as a whole is noise, not evidence)."""
    med = [float(np.median(v)) for v in nights]
    logs = [math.log(m) for m in med]
    n = len(nights)
    old = [c for c in change_points(med) if c < n - window]
    prev = old[-1] if old else 0
    best: tuple[float, float] | None = None
    tried = 0
    for c in range(max(prev + 3, n - window), n):
        before, after = logs[prev:c], logs[c:]
        d = statistics.fmean(after) - statistics.fmean(before)
        tried += 1
        if abs(math.expm1(d)) * 100 < min_effect_pct:
            continue
        sd = max(statistics.stdev(before), SIGMA_FLOOR)
        p = float(student_t.sf(abs(d) / (sd * math.sqrt(1 / len(before) + 1 / len(after))), len(before) - 1))
        if best is None or p < best[0]:
            best = (p, d)
    if best is None or best[0] >= alpha / tried:
        return "no change"
    tonight = logs[-1] - statistics.fmean(logs[prev:n - 1])
    if (tonight > 0) != (best[1] > 0) or abs(math.expm1(tonight)) * 100 < min_effect_pct / 2:
        return "no change"
    return "improvement" if (best[1] > 0) == higher_is_better else "regression"


def run(trials: int, seed: int, history: int, runs: int, policy: dict, noise: dict | None = None,
        test: str = "pooled") -> dict:
    rng = np.random.default_rng(seed)
    key = noise["metric"] if noise else "iops"
    policy = dict(policy, test=test)
    out: dict = {}
    for step in (0.05, 0.10, 0.20):
        found, took = 0, []
        for _ in range(trials):
            s = series(rng, history + 3, runs, history, step, noise)
            for k in range(3):
                if decide(s, history + k, key, **policy) == "regression":
                    found += 1
                    took.append(k + 1)
                    break
        out[f"step{int(step * 100)}"] = (found / trials, statistics.mean(took) if took else None,
                                         max(took) if took else None)
    fa = fa_any = n = 0
    for _ in range(trials):
        s = series(rng, history + 3, runs, None, 0.0, noise)
        for k in range(policy["min_nights"], history + 3):
            v = decide(s, k, key, **policy)
            n += 1
            fa += v == "regression"
            fa_any += v in ("regression", "improvement")
    out["false_alarm_cpd"] = (fa / n, fa_any / n, n)
    fa = fa_any = n = 0
    for _ in range(trials):
        s = series(rng, policy["min_nights"], runs, None, 0.0, noise)
        for k in range(1, policy["min_nights"]):
            v = decide(s, k, key, **policy)
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
    ap.add_argument("--runs", type=int, default=5, help="boots a night (nightly/default.yaml: 5)")
    ap.add_argument("--noise", choices=sorted(NOISE), default="iops", help="noise class (see above)")
    ap.add_argument("--noise-json", type=Path, help="take the class from benchmarks.noise_by_metric --json")
    ap.add_argument("--night-sd", type=float, help="override the night-to-night SD (0.10 = 10%%)")
    ap.add_argument("--cv", type=float, help="fix the between-boot SD instead of drawing it per cell")
    ap.add_argument("--test", choices=("pooled", "nights"), default="pooled",
                    help="pooled: the harness's rule (boots pooled across nights); nights: the what-if of "
                         "nights_test (nightly medians as the unit), change-point regime only")
    ap.add_argument("--min-nights", type=int, default=5)
    ap.add_argument("--window", type=int, default=3)
    ap.add_argument("--alpha", type=float, default=0.05)
    ap.add_argument("--min-effect", type=float, default=5.0)
    a = ap.parse_args()
    policy = dict(min_nights=a.min_nights, window=a.window, alpha=a.alpha, min_effect_pct=a.min_effect)
    noise = dict(NOISE[a.noise])
    if a.noise_json and a.noise in JSON_KEYS:
        noise = from_json(a.noise_json, a.noise)
    if a.night_sd is not None:
        noise["night"] = a.night_sd
    if a.cv is not None:
        noise["cv"] = a.cv
        noise.setdefault("night", 0.0)
    if a.noise == "synthetic-5-9" and a.cv is None and not noise.get("night"):
        noise = None        # the old model exactly
    t0 = time.monotonic()
    r = run(a.trials, a.seed, a.history, a.runs, policy, noise, a.test)
    desc = NOISE[a.noise]["source"] if noise is None else (
        f"{noise['metric']}: between boots " + (f"{noise['cv']:.1%}" if noise.get("cv") is not None else
                                                f"drawn per cell from {noise['source']}")
        + f", night-to-night {noise['night']:.1%}")
    print(f"history detector: {a.trials} trials, {a.history} nights of history, {a.runs} boots a night, "
          f"noise {a.noise} ({desc}); policy {policy}"
          + ("; TEST: nightly medians (what-if)" if a.test == "nights" else ""))
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
