"""`kharness bisect` with a fio check: a probabilistic bisection of a performance change.

The endpoints are measured in alternating rounds (``Bisect._endpoints``), which gives the size of
the change and a round's noise (:func:`harness.results.verdict.levels`). Then every round is two
adjacent boots, a reference and a kernel of the first-parent chain, chosen by
:func:`.bayes_perf.choose` from the posterior of every round so far: the posterior's median
against the newest commit that is almost surely good while searching, the leader against its
parent once it holds half the probability (the interleaved confirmation). It stops when the
leader holds ``confidence`` after at least two rounds against its parent (confirmed), or when the
boot budget is spent (not confirmed: the report names the most probable commit and how probable
it is). A host whose speed swings moves both boots of a round together, and no round is decided
once and for all, so one misleading step cannot send the search astray. Every round is a step in
``state.json`` (with both sides' values and the posterior after it): the same command resumes.
"""

from __future__ import annotations

import math
import statistics
import time
from typing import Any

from ..errors import BuildError, HarnessError
from ..results.verdict import Levels, levels, paired_rule, round_logs
from ..run.spec import SysrqSampling
from ..util import sha256_file
from . import bayes_perf
from .bisect import Bisect, BisectError, Step

DEFAULT_CONFIDENCE = 0.99   # and DEFAULT_BUDGET: boots of rounds after the endpoints'. The simulation
DEFAULT_BUDGET = 160        # (docs/bisect.md) found them right 97% of the time at -30%, never wrong
ENDPOINT_ROUNDS = (3, 12)   # the endpoints' alternating rounds: at least, and at most while open


class PerfBisect(Bisect):
    """A bisect of a fio check to ``confidence``, within ``budget`` boots of rounds."""

    measures_performance = True

    def __init__(self, *args: Any, confidence: float = DEFAULT_CONFIDENCE, budget: int = DEFAULT_BUDGET,
                 **kwargs: Any):
        super().__init__(*args, **kwargs)
        if self.check.kind != "fio":
            raise BisectError(f"check {self.check.text!r}: a performance bisect needs a fio check")
        if not 0.5 < confidence < 1:
            raise BisectError(f"--confidence {confidence}: give a probability between 0.5 and 1, e.g. 0.95")
        self.confidence, self.budget = confidence, budget
        self.stopped: bayes_perf.Stop | None = None

    # -- what has been seen -------------------------------------------------------------------
    def _rounds(self) -> list[bayes_perf.Round]:
        index = {c: i for i, c in enumerate(self.commits)} | {self.good: -1}
        out = [bayes_perf.Round(-1, len(self.commits) - 1, x) for x in round_logs(self.state["refs"]["rounds"])]
        for s in self.state["steps"]:
            if s["phase"] in ("step", "confirm") and s.get("reference") in index and s["commit"] in index:
                logs = round_logs([(s.get("reference_values") or [], s["values"])])
                if logs:
                    out.append(bayes_perf.Round(index[s["reference"]], index[s["commit"]], logs[0]))
        return out

    def _untestable(self) -> set[int]:
        index = {c: i for i, c in enumerate(self.commits)}
        return {index[s["commit"]] for s in self.state["steps"]
                if s["commit"] in index and s["outcome"] == "skip"
                and s["reason"].startswith(("build failed", "cannot build"))}

    def _impossible(self) -> set[int]:
        """Candidates whose kernel is byte-identical to their parent's (both built): not the first bad."""
        sha = self.state.get("kernels", {})
        chain = [self.good, *self.commits]
        return {i for i in range(len(self.commits)) if chain[i + 1] in sha and sha.get(chain[i]) == sha[chain[i + 1]]}

    def _posterior(self) -> list[float]:
        return bayes_perf.posterior(len(self.commits), self._rounds(), self._levels(), self._impossible())

    def _boots(self) -> int:
        return sum(len(s["run_ids"]) for s in self.state["steps"] if s["phase"] != "endpoint")

    # -- the search ----------------------------------------------------------------------------
    def _endpoints(self) -> None:
        """The endpoints in alternating rounds (good, bad), at least ``ENDPOINT_ROUNDS[0]`` and
        until the paired rule says bad (at most ``ENDPOINT_ROUNDS[1]``): they must differ by the
        check's minimum effect. Their rounds are the levels every later round is judged by."""
        self.commits = self._chain()
        if not self.commits:
            raise BisectError(f"good {self.good[:12]} is not on the first-parent chain of bad {self.bad[:12]}: "
                              "a performance bisect needs one chain between them")
        self.state.setdefault("mode", {"confidence": self.confidence, "budget": self.budget})
        refs = self.state["refs"]
        rounds = refs.setdefault("rounds", [])
        least, most = ENDPOINT_ROUNDS
        while True:
            v = paired_rule(rounds, min_effect_pct=self.check.min_effect_pct, key=self.check.metric)
            if len(rounds) >= most or (len(rounds) >= least and v.outcome == "bad"):
                break
            got = []
            for key, commit in (("good", self.good), ("bad", self.bad)):
                vals, recs = self.checker.measure(self._at(commit))
                if not vals:
                    raise BisectError(f"{key} endpoint {commit[:12]}: no measurement: "
                                      + "; ".join(f for r in recs for f in r.failures))
                refs[key] = refs.get(key, []) + vals
                refs.setdefault("run_ids", {}).setdefault(key, []).extend(r.run_id for r in recs)
                got.append(vals)
            rounds.append(got)
            self._save()
        if v.outcome != "bad":
            raise BisectError(f"the endpoints do not differ by {self.check.min_effect_pct:.0f}% or more in "
                              f"alternating boots: {v.line}")
        for key, commit in (("good", self.good), ("bad", self.bad)):
            self._built(commit)
            if self._recorded("endpoint", commit) is None:
                build = self.bed.kernel(self._at(commit))
                said = v.line.rsplit(" -> ", 1)[0]
                why = (f"the good reference; the bad endpoint against it: {said}" if key == "good"
                       else f"against the good endpoint: {said}")
                self._record(Step("endpoint", commit, self._subject(commit), key, why, values=refs[key],
                                  run_ids=refs.get("run_ids", {}).get(key, []),
                                  kernel_key=build.key, bzimage_sha256=sha256_file(build.bzimage),
                                  pct_change=v.pct, p_value=v.p_value), time.monotonic())

    def _levels(self) -> Levels:
        """The endpoints' two levels and a round's noise, from their alternating rounds."""
        return levels(self.state["refs"]["rounds"])

    def _search(self) -> tuple[str | None, list[str]]:
        lv = self._levels()
        self.say(f"the endpoints: {lv.pct:+.0f}% in {lv.rounds} alternating rounds, a round's noise "
                 f"{lv.sd * 100:.0f}%")
        while True:
            d = bayes_perf.choose(len(self.commits), self._rounds(), lv, boots=self._boots(), budget=self.budget,
                                  confidence=self.confidence, untestable=self._untestable(),
                                  impossible=self._impossible())
            if isinstance(d, bayes_perf.Stop):
                self.stopped = d
                break
            self._round(d)
        post = self._posterior()
        held = bayes_perf.credible(post, self.confidence)
        self.say(f"stopped ({self.stopped.why}): {self.commits[self.stopped.best][:12]} "
                 f"P(first bad)={self.stopped.p_best:.3f}")
        return self.commits[self.stopped.best], [self.commits[i] for i in held]

    def _round(self, d: bayes_perf.Measure) -> None:
        """One round: the reference's boot, then the kernel's, recorded as one step."""
        t0 = time.monotonic()
        reference = self.good if d.reference < 0 else self.commits[d.reference]
        kernel = self.commits[d.kernel]
        step = Step("confirm" if d.confirming else "step", kernel, self._subject(kernel), "skip", "",
                    reference=reference)
        self.say(f"{step.phase} {kernel[:12]} against {reference[:12]} {step.subject}")
        try:
            build = self.bed.add(self._at(kernel))
            for commit in (reference, kernel):    # when confirming, the reference is the parent
                self._built(commit)
        except BuildError as e:
            step.reason = "build failed: " + (e.errors[0] if e.errors else str(e).splitlines()[0])
            self._record(step, t0)
            return
        except HarnessError as e:
            step.reason = "cannot build: " + str(e).splitlines()[0]
            self._record(step, t0)
            return
        step.kernel_key, step.bzimage_sha256 = build.key, sha256_file(build.bzimage)
        if d.kernel in self._impossible():
            step.reason = "byte-identical to its parent's kernel: not the first bad commit, no boot spent"
            step.outcome = "skip"
            self._record(step, t0)
            return
        ref_vals, ref_recs = self.checker.measure(self._at(reference))
        vals, recs = self.checker.measure(self._at(kernel))
        step.values, step.reference_values = vals, ref_vals
        step.run_ids = [r.run_id for r in (*ref_recs, *recs)]
        if not vals or not ref_vals:
            step.reason = "no measurement: " + "; ".join(f for r in (*ref_recs, *recs) for f in r.failures)[:300]
            self._record(step, t0)
            return
        ratio = statistics.median(vals) / statistics.median(ref_vals)
        step.pct_change = (ratio - 1) * 100
        rounds = [*self._rounds(), bayes_perf.Round(d.reference, d.kernel, math.log(ratio))]
        post = bayes_perf.posterior(len(self.commits), rounds, self._levels(), self._impossible())
        p_bad = sum(post[: d.kernel + 1])
        best = max(range(len(post)), key=lambda i: post[i])
        step.outcome = "bad" if p_bad >= 0.5 else "good"
        step.posterior = {"p_bad": round(p_bad, 6), "best": self.commits[best], "p_best": round(post[best], 6)}
        step.reason = (f"{step.pct_change:+.0f}% against {reference[:12]} in adjacent boots; "
                       f"P(bad)={p_bad:.3f}, leader {self.commits[best][:12]} at {post[best]:.3f}")
        self._record(step, t0)

    def _built(self, commit: str) -> None:
        """Build ``commit`` (incremental, cached) and note its kernel's digest in the state."""
        kernels = self.state.setdefault("kernels", {})
        if commit not in kernels:
            kernels[commit] = sha256_file(self.bed.add(self._at(commit)).bzimage)
            self._save()

    # -- the end --------------------------------------------------------------------------------
    def _sysrq_evidence(self, culprit: str) -> dict[str, list[str]]:
        """One boot each of the culprit and its parent with sysrq-w/-t mid-run: the workqueues."""
        evidence: dict[str, list[str]] = {}
        for name, commit in (("culprit", culprit), ("parent", self._parent(culprit))):
            _, recs = self.checker.measure(self._at(commit), sampling=SysrqSampling.evidence(self.checker.fio.runtime))
            evidence[f"{name} {commit[:12]}"] = [line for r in recs for line in r.sysrq_summary]
        return evidence

    def _parent(self, commit: str) -> str:
        i = self.commits.index(commit)
        return self.good if i == 0 else self.commits[i - 1]

    def _confirm(self, culprit: str) -> tuple[bool, dict[str, list[str]]]:
        """Confirmed when the culprit reached the confidence (its rounds against its parent are in
        the posterior); then one boot each of it and its parent with sysrq-w/-t mid-run."""
        confirmed = self.stopped is not None and self.stopped.why == "confident"
        return confirmed, self._sysrq_evidence(culprit) if confirmed else {}

    def _confidence(self, culprit: str | None, confirmed: bool) -> dict:
        lv, post = self._levels(), self._posterior()
        why = {"confident": "reached", "budget": f"NOT reached: the budget of {self.budget} boots was spent",
               "stuck": "NOT reached: the commits around it cannot be tested"}[
            self.stopped.why if self.stopped else "stuck"]
        best = self.stopped.best if self.stopped else len(self.commits) - 1
        against = [r for r in self._rounds() if r.kernel == best and r.reference == best - 1]
        held = bayes_perf.credible(post, self.confidence)
        lines = [f"confidence: P({self.commits[best][:12]} is the first bad commit) = {post[best]:.3f}; "
                 f"{self.confidence:.0%} {why}",
                 f"  the endpoints: {lv.pct:+.0f}% in {lv.rounds} alternating rounds, a round's noise "
                 f"{lv.sd * 100:.0f}%; the culprit against its parent: {len(against)} rounds, ratios "
                 + ", ".join(f"{math.exp(r.log_ratio):.2f}" for r in against),
                 f"  {self.confidence:.0%} of the probability is on {len(held)} commit(s): "
                 + ", ".join(f"{self.commits[i][:12]} ({post[i]:.2f})" for i in held)]
        if not confirmed:
            lines.append("  more boots (--max-boots) would raise it: each round of the leader against its parent "
                         f"multiplies the odds by about {math.exp(lv.gap ** 2 / (2 * lv.sd ** 2)):.1f}")
        return {"p_best": post[best], "stopped": self.stopped.why if self.stopped else None, "budget": self.budget,
                "gap_pct": lv.pct, "round_sd": lv.sd, "rounds_against_parent": len(against),
                "credible": [self.commits[i] for i in held], "lines": lines}

    def _head(self, confirmed: bool) -> str:
        return (f"culprit (P(first bad) at or above {self.confidence:.0%}, with rounds against its parent):"
                if confirmed else f"most probable culprit (NOT at {self.confidence:.0%}; see the confidence below):")
