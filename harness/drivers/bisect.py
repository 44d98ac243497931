"""`kharness bisect`: find the commit that broke boot, an xfstest, a guest command or performance.

git does the graph work: a worktree of the definition's cached source repository, created with
no checkout, runs ``git bisect start --no-checkout`` so the next commit to test is ``BISECT_HEAD``
while builds keep using the repository's own work tree. Each step is the definition built at that
commit (an incremental build in the shared ``O=`` tree) and checked:

* both endpoints first; a good endpoint that is not good, or a bad one that is not bad, stops;
* a step that cannot be tested (build error, patches that do not apply, a boot failure under a
  non-boot check, a harness error, flaky repeats, open statistics) is a ``git bisect skip``;
* a fio check is bisected probabilistically by :class:`.bisect_perf.PerfBisect`, a subclass;
* a step whose kernel is byte-identical to one already tested reuses that verdict;
* the culprit is confirmed (checked again, fresh: bad) and so is its parent (good); the report
  states how sure it is (``bayes.explain``; a flaky check: ``bisect_flaky.py``, ``--confidence``);
* every step goes to ``state.json`` (resume: run the same command again), to the results store
  (its boots, and the step as a verdict row), and to ``bisect-replay.log`` (``git bisect log``
  output, which ``git bisect replay`` accepts).
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from pathlib import Path

from ..config.kernels import load_kernel
from ..errors import BuildError, HarnessError
from ..executors.base import Executor, RecordSink
from ..kernel.build import resolve_commit
from ..kernel.git import git
from ..kernel.source import import_source
from ..paths import cache_dir
from ..run.testbed import Testbed
from ..util import file_lock, run, sha256_file, write_json
from ..vocab import KernelRef, Say
from . import bayes
from .bisect_steps import BisectResult, Step, median, slug, step_lines
from .checks import Check, Checker, FioSettings, Verdict

_FIRST_BAD = re.compile(r"^([0-9a-f]{40}) is the first bad commit", re.M)
_SKIPPED_ONLY = "There are only 'skip'ped commits left to test"


class BisectError(HarnessError):
    """A bisect that cannot go on: endpoints that do not behave, or no commits between them."""


class Bisect:
    """A bisect of ``kernel`` between ``good`` and ``bad`` with ``check``; resumable."""

    suffix = ""     # of the bisect's id (a probabilistic bisect keeps its own state)
    measures_performance = False    # a fio check: PerfBisect

    def __init__(self, kernel: str, good: str, bad: str, check: Check, root: Path, *, repeat: int = 1,
                 sink: RecordSink | None = None, say: Say = print, fio: FioSettings = FioSettings(),
                 accel: str | None = None, tests_source: Path | None = None,
                 executor: Executor | None = None):
        load_kernel(kernel)  # fail fast on a bad name, before any slow step
        if check.kind == "fio" and not self.measures_performance:
            raise BisectError(f"check {check.text!r}: a fio check is bisected by PerfBisect "
                              "(harness.drivers.bisect_perf)")
        self.executor = executor
        self.kernel, self.check, self.repeat, self.sink, self.say = kernel, check, repeat, sink, say
        self.fio, self.accel, self.tests_source = fio, accel, tests_source
        self.good_ref, self.bad_ref, self.root = good, bad, root
        self.t0 = time.monotonic()

    # -- setup -------------------------------------------------------------------------------
    def _resolve(self) -> None:
        self.good = resolve_commit(self.kernel, self.good_ref)
        self.bad = resolve_commit(self.kernel, self.bad_ref)
        self.repo = import_source(load_kernel(self.kernel).source).repo
        if self.good == self.bad:
            raise BisectError(f"good and bad are the same commit {self.good[:12]}")
        if self._rc(["merge-base", "--is-ancestor", self.good, self.bad]) != 0:
            raise BisectError(f"good {self.good_ref} ({self.good[:12]}) is not an ancestor of bad "
                              f"{self.bad_ref} ({self.bad[:12]})")
        self.id = f"bisect-{self.kernel}-{self.good[:12]}-{self.bad[:12]}-{slug(self.check.text)}{self.suffix}"
        self.dir = self.root / self.id
        self.dir.mkdir(parents=True, exist_ok=True)
        self.worktree = cache_dir("bisect") / self.id

    def _rc(self, args: list[str]) -> int:
        return run(["git", "-C", str(self.repo), *args], check=False, timeout=600).returncode

    def _load_state(self) -> dict:
        path = self.dir / "state.json"
        if path.exists():
            try:
                state = json.loads(path.read_text())
            except ValueError:
                raise BisectError(f"{path} is damaged: remove it (or the directory) to start over") from None
            if state.get("check") != self.check.text:
                raise BisectError(f"{path} belongs to another check ({state.get('check')!r})")
            self.say(f"resuming {self.id}: {len(state['steps'])} step(s) done")
            return state
        return {"kernel": self.kernel, "good": self.good, "bad": self.bad, "check": self.check.text,
                "repeat": self.repeat, "steps": [], "refs": {}}

    def _save(self) -> None:
        write_json(self.dir / "state.json", self.state)

    # -- git bisect in a no-checkout worktree -------------------------------------------------
    def _start_git(self) -> str:
        """Start git bisect (replaying the steps of an interrupted run); git's last words."""
        with file_lock(self.repo.with_suffix(".lock"), say=self.say):
            if self.worktree.exists():
                git(self.repo, "worktree", "remove", "--force", str(self.worktree), check=False)
            git(self.repo, "worktree", "prune")
            git(self.repo, "worktree", "add", "--no-checkout", "--detach", str(self.worktree), self.bad)
        out = git(self.worktree, "bisect", "start", "--no-checkout", self.bad, self.good)
        for s in self.state["steps"]:
            if s["phase"] == "step":
                out = self._mark(s["commit"], s["outcome"])
        return out

    def _mark(self, commit: str, outcome: str) -> str:
        word = {"good": "good", "bad": "bad", "skip": "skip"}[outcome]
        out = git(self.worktree, "bisect", word, commit, check=False)
        (self.dir / "bisect-replay.log").write_text(git(self.worktree, "bisect", "log", check=False) + "\n")
        return out

    def _finish_git(self) -> None:
        git(self.worktree, "bisect", "reset", check=False)
        with file_lock(self.repo.with_suffix(".lock"), say=self.say):
            git(self.repo, "worktree", "remove", "--force", str(self.worktree), check=False)

    # -- evaluating one commit ------------------------------------------------------------------
    def _subject(self, commit: str) -> str:
        return git(self.repo, "log", "-1", "--format=%s", commit)

    def _at(self, commit: str) -> str:
        """The kernel reference ``NAME@COMMIT`` of the definition at ``commit``."""
        return str(KernelRef(self.kernel, commit))

    def evaluate(self, commit: str, phase: str, *, fresh: bool = False) -> Step:
        """Build ``commit`` and run the check; reuse a byte-identical kernel's verdict unless fresh."""
        t0 = time.monotonic()
        ref = self._at(commit)
        step = Step(phase, commit, self._subject(commit), "skip", "")
        self.say(f"{phase} {commit[:12]} {step.subject}")
        try:
            build = self.bed.add(ref)
        except BuildError as e:
            step.reason = "build failed: " + (e.errors[0] if e.errors else str(e).splitlines()[0])
            return self._record(step, t0)
        except HarnessError as e:
            step.reason = "cannot build: " + str(e).splitlines()[0]
            return self._record(step, t0)
        step.kernel_key, step.bzimage_sha256 = build.key, sha256_file(build.bzimage)
        earlier = [s for s in self.state["steps"] if s.get("bzimage_sha256") == step.bzimage_sha256
                   and s["outcome"] != "skip"]
        if earlier and not fresh:
            step.outcome, step.reused_from = earlier[0]["outcome"], earlier[0]["commit"]
            step.reason = f"kernel byte-identical to {earlier[0]['commit'][:12]}'s: {earlier[0]['reason']}"
            return self._record(step, t0)
        self._fill(step, self._judge(ref))
        return self._record(step, t0)

    def _judge(self, ref: str) -> Verdict:
        """A functional check on one kernel: ``--repeat`` runs, a skip when they disagree."""
        return self.checker.repeated(ref, self.repeat)

    def _fill(self, step: Step, v: Verdict) -> None:
        step.outcome, step.reason, step.run_ids, step.values = v.outcome, v.reason, v.run_ids, list(v.values)
        step.runs, step.failures = v.runs, v.failures

    def _record(self, step: Step, t0: float) -> Step:
        step.seconds = round(time.monotonic() - t0, 1)
        self.state["steps"].append(dataclasses.asdict(step))
        self._save()
        self.say(f"  -> {step.outcome}: {step.reason}")
        if self.sink is not None and hasattr(self.sink, "add_verdicts"):
            self.sink.add_verdicts(self.id, [{
                "cell": self.check.text, "metric": f"{step.phase}:{step.commit}", "base_kernel": self.good,
                "new_kernel": step.commit, "verdict": step.outcome, "pct_change": step.pct_change,
                "p_value": step.p_value, "new_median": median(step.values),
                "detail_json": {k: v for k, v in dataclasses.asdict(step).items() if k != "values"}}])
        return step

    def _recorded(self, phase: str, commit: str) -> Step | None:
        """The ``phase`` step on ``commit`` that state.json already holds (from before a resume)."""
        for s in self.state["steps"]:
            if s["phase"] == phase and s["commit"] == commit:
                return Step(**s)
        return None

    def _endpoints(self) -> None:
        for want, commit in (("good", self.good), ("bad", self.bad)):
            if self._recorded("endpoint", commit) is not None:
                continue
            step = self.evaluate(commit, "endpoint", fresh=True)
            if step.outcome != want:
                raise BisectError(f"the {want} endpoint {commit[:12]} ({step.subject}) is {step.outcome}, "
                                  f"not {want}: {step.reason}")

    # -- the whole bisect -----------------------------------------------------------------------
    def run(self) -> BisectResult:
        self._resolve()
        with file_lock(self.dir / ".lock", timeout=10):
            self.state = self._load_state()
            self.bed = Testbed([self._at(self.good)], image=self.check.image, accel=self.accel,
                               say=self.say).prepare()
            self.checker = Checker(self.bed, self.check, self.dir / "runs", sink=self.sink, group=self.id,
                                   front_end="bisect", say=self.say, fio=self.fio, tests_source=self.tests_source,
                                   executor=self.executor)
            self._endpoints()
            culprit, candidates = self._search()
            confirmed, evidence = self._confirm(culprit) if culprit else (False, {})
        return self._result(culprit, candidates, confirmed, evidence)

    def _search(self) -> tuple[str | None, list[str]]:
        """The culprit (or the candidates skips left) by git bisect."""
        out = self._start_git()
        try:
            return self._loop(out)
        finally:
            self._finish_git()

    def _loop(self, out: str) -> tuple[str | None, list[str]]:
        """Test BISECT_HEAD and tell git, until git names the first bad commit (or gives up)."""
        for _ in range(200):
            m = _FIRST_BAD.search(out)
            if m:
                return m.group(1), [m.group(1)]
            if _SKIPPED_ONLY in out:
                return None, re.findall(r"^([0-9a-f]{40})$", out, re.M)
            commit = git(self.worktree, "rev-parse", "BISECT_HEAD")
            step = self.evaluate(commit, "step")
            out = self._mark(commit, step.outcome)
        raise BisectError("git bisect did not converge in 200 steps; log in "
                          f"{self.dir / 'bisect-replay.log'}")

    def _confirm(self, culprit: str) -> tuple[bool, dict[str, list[str]]]:
        parent = git(self.repo, "rev-parse", f"{culprit}^")
        again, before = self._confirm_step(culprit), self._confirm_step(parent)
        return again.outcome == "bad" and before.outcome == "good", {}

    def _confirm_step(self, commit: str) -> Step:
        """Check ``commit`` again, fresh; a confirm step recorded before an interruption stands."""
        step = self._recorded("confirm", commit)
        if step is not None:
            self.say(f"confirm {commit[:12]}: {step.outcome}, recorded before the resume")
            return step
        return self.evaluate(commit, "confirm", fresh=True)

    def _confidence(self, culprit: str | None, confirmed: bool) -> dict:
        """How sure the bisect is, for result.json and the report (``lines``). A performance
        culprit: its paired comparison with its parent. A functional one: the posterior of
        :mod:`.bayes` over the first-parent chain from the steps' runs, as if the check might be
        flaky (bad kernels failing at an unknown rate, good ones 1 run in 100)."""
        if culprit is None:
            return {"lines": ["confidence: no single culprit"]}
        commits = self._chain()
        if not commits or culprit not in commits:
            return {"lines": ["confidence: not computed (the history between good and bad is not one chain)"]}
        return bayes.explain(commits, self.state["steps"], culprit, 0.95, note="if the check might be flaky; "
                             "a probabilistic bisect (--confidence) runs until it is sure")

    def _chain(self) -> list[str]:
        """The first-parent chain after good up to bad, oldest first; empty when good is not on it."""
        out = git(self.repo, "rev-list", "--first-parent", self.bad, f"^{self.good}").split()[::-1]
        return out if out and git(self.repo, "rev-parse", f"{out[0]}^") == self.good else []

    def _head(self, confirmed: bool) -> str:
        return ("culprit (confirmed: fails again, its parent passes):" if confirmed else
                "culprit (NOT confirmed on repeat; see the confirm steps):")

    def _result(self, culprit: str | None, candidates: list[str], confirmed: bool,
                evidence: dict[str, list[str]]) -> BisectResult:
        steps = [Step(**s) for s in self.state["steps"]]
        lines = [f"bisect {self.kernel}: good {self.good[:12]} bad {self.bad[:12]} check {self.check.text}"]
        if culprit:
            show = git(self.repo, "show", "--stat", "--format=commit %H%nAuthor: %an <%ae>%nDate:   %ad%n%n    %s",
                       culprit)
            lines += ["", self._head(confirmed), show]
        else:
            lines += ["", "no single culprit: only skipped commits are left; candidates:"]
            lines += [f"  {c[:12]} {self._subject(c)}" for c in candidates]
        confidence = self._confidence(culprit, confirmed)
        lines += [""] + confidence["lines"]
        for name, summary in evidence.items():
            lines += ["", f"sysrq evidence on the {name}:"] + [f"  {s}" for s in summary or ["(nothing blocked)"]]
        lines += ["", "steps:", *step_lines(steps, time.monotonic() - self.t0)]
        if (self.dir / "bisect-replay.log").exists():
            lines.append(f"replay with: git bisect replay {self.dir / 'bisect-replay.log'}")
        report = "\n".join(lines)
        (self.dir / "report.txt").write_text(report + "\n")
        write_json(self.dir / "result.json", {"culprit": culprit, "candidates": candidates, "confirmed": confirmed,
                                              "confidence": confidence, "evidence": evidence,
                                              "steps": self.state["steps"]})
        return BisectResult(culprit, candidates, confirmed, steps, report, self.dir, evidence, confidence)

