"""`kharness bisect --confidence P`: a probabilistic bisection for a check that fails only some of
the time on a bad kernel (a boot that panics sometimes, a flaky guest command or xfstest).

The candidates are the first-parent chain from the good endpoint (exclusive) to the bad one
(inclusive), oldest first, as ``git bisect --first-parent`` walks it. The good endpoint runs
:data:`GOOD_RUNS` times and must pass; the bad endpoint runs until it has failed once (at least
twice, at most ten runs: :func:`.bayes.plan_endpoint`), which estimates how often a bad kernel
fails. Then each run goes where it tells most about the first bad commit (:func:`.bayes.choose`:
the expected information gain; the bad endpoint again when a two-run look-ahead says pinning the
failure rate is worth more), until one commit's posterior reaches the confidence with its parent
clear (:func:`.bayes.parent_clear`: enough passes that a bad parent failing at the lowest rate the
bad commits' runs allow would have shown), the boot budget is spent, or no testable commit can
tell more. A commit that does not build, or whose runs
were skipped twice (a boot failure under a guest check, a harness error), is untestable, as a
``git bisect skip`` is. Every run is a step in ``state.json`` with its evidence and the posterior
after it, so the same command resumes; the posterior is the confirmation (no extra boots).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from . import bayes
from .bisect import Bisect, BisectError, Step
from .checks import Verdict

GOOD_RUNS = 2


class FlakyBisect(Bisect):
    """A bisect of a flaky functional check to ``confidence``, within ``budget`` boots."""

    suffix = "-flaky"

    def __init__(self, *args: Any, confidence: float = 0.95, budget: int = 60, model: bayes.Model = bayes.Model(),
                 **kwargs: Any):
        super().__init__(*args, **kwargs)
        if self.check.kind == "fio":
            raise BisectError("--confidence is for boot, guest: and xfstests: checks; a fio bisect is decided by "
                              "the statistics of each step (docs/bisect.md)")
        if not 0.5 < confidence < 1:
            raise BisectError(f"--confidence {confidence}: give a probability between 0.5 and 1, e.g. 0.95")
        self.confidence, self.budget, self.model = confidence, budget, model
        self.stopped: bayes.Stop | None = None

    # -- what has been seen -------------------------------------------------------------------
    def _commits(self) -> list[str]:
        commits = self._chain()
        if not commits:
            raise BisectError(f"good {self.good[:12]} is not on the first-parent chain of bad {self.bad[:12]}: "
                              "a probabilistic bisect needs one chain between them")
        return commits

    def _tally(self, commit: str) -> bayes.Tally:
        return bayes.tallies([commit], self.state["steps"]).get(0, bayes.Tally())

    def _untestable(self) -> set[int]:
        index = {c: i for i, c in enumerate(self.commits)}
        skips: dict[int, int] = {}
        out = set()
        for s in self.state["steps"]:
            i = index.get(s["commit"])
            if i is None or s["outcome"] != "skip":
                continue
            skips[i] = skips.get(i, 0) + 1
            if s["reason"].startswith(("build failed", "cannot build")) or skips[i] >= 2:
                out.add(i)
        return out

    def _boots(self) -> int:
        return sum(len(s["run_ids"]) for s in self.state["steps"])

    # -- one run ------------------------------------------------------------------------------
    def _judge(self, ref: str) -> Verdict:
        return self.checker.tallied(ref, max(1, self.checker.executor.slots()))

    def _record(self, step: Step, t0: float) -> Step:
        if step.phase in ("endpoint", "step") and step.commit in self.commits:
            t = bayes.tallies(self.commits, [*self.state["steps"], dataclasses.asdict(step)])
            post = bayes.posterior(len(self.commits), t, self.model)
            step.posterior = {"p_bad": round(post.p_bad(self.commits.index(step.commit)), 6),
                              "best": self.commits[post.best], "p_best": round(post.p_best, 6)}
        return super()._record(step, t0)

    def _endpoints(self) -> None:
        self.commits = self._commits()
        self.state.setdefault("mode", {"confidence": self.confidence, "budget": self.budget})
        while (t := self._tally(self.good)).runs < GOOD_RUNS and not t.failures:
            skips = sum(s["commit"] == self.good and s["outcome"] == "skip" for s in self.state["steps"])
            if skips >= 2:
                raise BisectError(f"the good endpoint {self.good[:12]} cannot be tested: "
                                  f"{self.state['steps'][-1]['reason']}")
            self.evaluate(self.good, "endpoint", fresh=True)
        if t.failures:
            raise BisectError(f"the good endpoint {self.good[:12]} is not good: {t.failures} of {t.runs} runs failed")
        while bayes.plan_endpoint(self._tally(self.bad)):
            step = self.evaluate(self.bad, "endpoint", fresh=True)
            if step.outcome == "skip" and len(self.commits) - 1 in self._untestable():
                raise BisectError(f"the bad endpoint {self.bad[:12]} cannot be tested: {step.reason}")
        t = self._tally(self.bad)
        if not t.failures:
            raise BisectError(f"the bad endpoint {self.bad[:12]} passed all {t.runs} runs: not bad")

    # -- the search ----------------------------------------------------------------------------
    def _search(self) -> tuple[str | None, list[str]]:
        while True:
            t = bayes.tallies(self.commits, self.state["steps"])
            d = bayes.choose(len(self.commits), t, self._untestable(), boots=self._boots(), budget=self.budget,
                             confidence=self.confidence, model=self.model)
            if isinstance(d, bayes.Stop):
                self.stopped = d
                break
            self.evaluate(self.commits[d], "step", fresh=True)
        post = bayes.posterior(len(self.commits), t, self.model)
        self.say(f"stopped ({self.stopped.why}): " + bayes.summary(self.commits, post))
        return self.commits[self.stopped.best], [self.commits[i] for i in post.credible(self.confidence)]

    def _confirm(self, culprit: str) -> tuple[bool, dict[str, list[str]]]:
        """The posterior is the confirmation: confirmed when the culprit reached the confidence with
        its parent clear."""
        return self.stopped is not None and self.stopped.why == "confident", {}

    def _confidence(self, culprit: str | None, confirmed: bool) -> dict:
        why = {"confident": "reached", "budget": f"the budget of {self.budget} boots was spent",
               "stuck": "no testable commit could tell more"}[self.stopped.why if self.stopped else "stuck"]
        out = bayes.explain(self.commits, self.state["steps"], culprit or self.commits[-1], self.confidence,
                            model=self.model, note=f"{self.confidence:.0%} {why}")
        out.update(stopped=self.stopped.why if self.stopped else None, budget=self.budget)
        return out

    def _head(self, confirmed: bool) -> str:
        return (f"culprit (P(first bad) at or above {self.confidence:.0%}):" if confirmed else
                f"most probable culprit (NOT at {self.confidence:.0%}; see the confidence below):")
