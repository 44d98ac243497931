"""The probabilistic bisection (harness/drivers/bayes.py): the posterior against brute force, the
information gain against its definition, the stop rule, the advice, and the driver
(drivers/bisect_flaky.py) on a fake flaky checker, killed and resumed."""

from __future__ import annotations

import json
import math
import random
import types
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.drivers import bayes
from harness.drivers.bayes import Model, Stop, Tally
from harness.drivers.checks import Verdict, parse_check

tally_maps = st.integers(2, 9).flatmap(lambda n: st.tuples(st.just(n), st.dictionaries(
    st.integers(0, n - 1), st.tuples(st.integers(0, 6), st.integers(0, 6)).map(
        lambda rf: Tally(rf[0] + rf[1], rf[1])), max_size=n)))


def brute_posterior(n: int, t: dict[int, Tally], m: Model, grid: int = 4000) -> list[float]:
    """P(H_i | data) by integrating the failure rate q numerically (midpoint rule)."""
    out = []
    for i in range(n):
        good = math.prod(m.false_fail ** t[j].failures * (1 - m.false_fail) ** t[j].passes for j in t if j < i)
        f = sum(t[j].failures for j in t if j >= i)
        p = sum(t[j].passes for j in t if j >= i)
        qs = [(k + 0.5) / grid for k in range(grid)]
        dens = [q ** (m.a - 1) * (1 - q) ** (m.b - 1) * q ** f * (1 - q) ** p for q in qs]
        norm = sum(q ** (m.a - 1) * (1 - q) ** (m.b - 1) for q in qs)
        out.append(good * sum(dens) / norm)
    total = sum(out)
    return [x / total for x in out]


@settings(max_examples=60, deadline=None)
@given(tally_maps, st.sampled_from([Model(), Model(2.0, 1.0, 0.05), Model(1.0, 3.0, 0.001)]))
def test_posterior_is_the_integral_over_the_failure_rate(nt, m):
    n, t = nt
    got = bayes.posterior(n, t, m).probs
    assert math.isclose(sum(got), 1.0, abs_tol=1e-9)
    for a, b in zip(got, brute_posterior(n, t, m)):
        assert a == pytest.approx(b, abs=2e-3)


def brute_gain(post: bayes.Posterior, j: int, e: float) -> float:
    """I(outcome of a run of j; H) from its definition, over every hypothesis."""
    fail_given = [post.rates[i] if j >= i else e for i in range(len(post.probs))]
    p_fail = sum(w * f for w, f in zip(post.probs, fail_given))
    return bayes._h(p_fail) - sum(w * bayes._h(f) for w, f in zip(post.probs, fail_given))


@settings(max_examples=60, deadline=None)
@given(tally_maps, st.sampled_from([0.0, 0.01, 0.1]))
def test_gain_is_the_mutual_information(nt, e):
    n, t = nt
    m = Model(false_fail=e)
    try:
        post = bayes.posterior(n, t, m)
    except ValueError:          # false_fail 0 and contradicting evidence
        return
    for j, g in enumerate(bayes.gains(post, m)):
        assert g == pytest.approx(max(0.0, brute_gain(post, j, e)), abs=1e-9)


def test_no_evidence_is_the_uniform_prior_and_a_failure_rules_out_later_commits():
    assert bayes.posterior(4, {}).probs == pytest.approx([0.25] * 4)
    post = bayes.posterior(8, {7: Tally(3, 2), 2: Tally(1, 1)}, Model(false_fail=0.0))
    assert post.probs[3:] == pytest.approx([0.0] * 5) and sum(post.probs[:3]) == pytest.approx(1.0)
    # a pass is weak evidence for a flaky check: passes below lift the later candidates, slowly
    one, many = (bayes.posterior(8, {7: Tally(4, 2), 3: Tally(k, 0)}) for k in (1, 8))
    assert one.p_bad(3) > many.p_bad(3) > 0.0


def test_the_first_choice_splits_the_history_and_failures_move_it_down():
    t = {15: Tally(4, 4)}                                # a bad endpoint that always fails
    first = bayes.next_commit(bayes.posterior(16, t), range(16))
    assert first in (6, 7, 8)
    t[first] = Tally(1, 1)
    assert bayes.next_commit(bayes.posterior(16, t), range(16)) < first


def test_stop_rule():
    sure = bayes.posterior(4, {3: Tally(4, 2), 2: Tally(6, 3), 1: Tally(12, 0)})
    assert sure.best == 2 and sure.p_best > 0.95
    assert bayes.stop(sure, 0.95, boots=10, budget=60, nxt=0) == Stop("confident", 2, sure.p_best)
    unsure = bayes.posterior(4, {3: Tally(2, 1)})
    assert bayes.stop(unsure, 0.95, boots=60, budget=60, nxt=1).why == "budget"
    assert bayes.stop(unsure, 0.95, boots=5, budget=60, nxt=None).why == "stuck"
    assert bayes.stop(unsure, 0.95, boots=5, budget=60, nxt=1) is None
    # only untestable commits could tell more: stuck, never a loop
    assert bayes.choose(4, {3: Tally(4, 2)}, {0, 1, 2}, boots=5, budget=60, confidence=0.95).why == "stuck"
    assert isinstance(bayes.choose(4, {3: Tally(2, 1)}, (), boots=3, budget=60, confidence=0.95), int)


@pytest.mark.parametrize("failures,runs", [(1, 1), (4, 4), (2, 10), (5, 12), (30, 60)])
def test_rate_floor_is_the_clopper_pearson_lower_bound(failures, runs):
    q = bayes.rate_floor(failures, runs, 0.05)

    def tail(x: float) -> float:
        return sum(math.comb(runs, k) * x ** k * (1 - x) ** (runs - k) for k in range(failures, runs + 1))
    assert 0 < q < failures / runs and tail(q) == pytest.approx(0.05, abs=1e-6)
    assert bayes.rate_floor(failures, runs, 0.01) < q
    assert bayes.rate_floor(1, 1, 0.05) == pytest.approx(0.05) and bayes.rate_floor(0, 5, 0.05) == 0.0


def test_a_lucky_culprit_is_not_confident_until_its_parent_is_clear():
    """From the simulation (fails 1 in 4): the real first bad commit is 10, but the bad side's 4
    failures in 4 runs make q look high and 4 passes of 10 lift 11 past 0.95. At q_lo (4 failures
    in 4: 0.05 ** (1/4) = 0.47) a bad parent passes 4 runs 8% of the time: not clear; 5: 4%."""
    t = {6: Tally(1, 0), 9: Tally(1, 0), 10: Tally(4, 0), 11: Tally(2, 2), 15: Tally(2, 2)}
    post = bayes.posterior(16, t)
    assert post.best == 11 and post.p_best >= 0.95
    assert not bayes.parent_clear(16, t, 11, 0.95)
    assert bayes.stop(post, 0.95, boots=13, budget=60, nxt=10, clear=False) is None
    assert isinstance(bayes.choose(16, t, (), boots=13, budget=60, confidence=0.95), int)
    more = {**t, 10: Tally(5, 0)}
    assert bayes.parent_clear(16, more, 11, 0.95) and not bayes.parent_clear(16, more, 11, 0.99)
    assert bayes.choose(16, more, (), boots=14, budget=60, confidence=0.95) == Stop(
        "confident", 11, bayes.posterior(16, more).probs[11])
    # a failure of the parent needs many more passes (it may be a good kernel's false failure)
    assert not bayes.parent_clear(16, {**t, 10: Tally(6, 1)}, 11, 0.95)
    assert bayes.parent_clear(16, {}, 0, 0.95)               # the parent is the good endpoint
    adv = bayes.advice(16, t, 11, 0.95)
    assert adv.parent_passes == 1
    ex = bayes.explain([f"{i:x}" * 40 for i in range(16)], [
        {"commit": f"{j:x}" * 40, "outcome": "good", "runs": x.runs, "failures": x.failures} for j, x in t.items()],
        "b" * 40, 0.95)
    assert ex["p_first_bad"] >= 0.95 and not ex["parent_clear"] and "to reach 95%: 1 more passing" in ex["lines"][-1]


def test_advice_names_the_passes_that_would_reach_the_confidence():
    t = {7: Tally(4, 2), 4: Tally(3, 2), 3: Tally(2, 0)}
    adv = bayes.advice(8, t, 4, 0.95)
    assert adv.parent_passes is not None and adv.parent_passes > 0
    more = dict(t)
    more[3] = Tally(2 + adv.parent_passes, 0)
    assert bayes.posterior(8, more).probs[4] >= 0.95 and bayes.parent_clear(8, more, 4, 0.95)
    fewer = dict(t)
    fewer[3] = Tally(1 + adv.parent_passes, 0)
    assert bayes.posterior(8, fewer).probs[4] < 0.95 or not bayes.parent_clear(8, fewer, 4, 0.95)
    assert bayes.advice(8, t, 0, 0.95).parent_passes is None
    # one failure of the culprit leaves the later commits a false failure's chance (1 in 100 each):
    # no number of passes of the parent gets past it; another failure of the culprit does
    once = bayes.advice(8, {7: Tally(4, 2), 4: Tally(2, 1), 3: Tally(2, 0)}, 4, 0.95)
    assert once.parent_passes is None and once.p_after_culprit_fails > bayes.posterior(
        8, {7: Tally(4, 2), 4: Tally(2, 1), 3: Tally(2, 0)}).probs[4]


def test_tallies_from_steps_and_the_explanation():
    commits = ["a" * 40, "b" * 40, "c" * 40]
    steps = [{"commit": "c" * 40, "outcome": "bad", "runs": 3, "failures": 2},
             {"commit": "b" * 40, "outcome": "bad"},                                       # an older state: 1 run
             {"commit": "b" * 40, "outcome": "bad", "runs": 0, "reused_from": "x" * 40},   # reused: ran nothing
             {"commit": "a" * 40, "outcome": "skip", "runs": 0, "failures": 0},
             {"commit": "0" * 40, "outcome": "good", "runs": 2, "failures": 0}]            # the good endpoint
    assert bayes.tallies(commits, steps) == {2: Tally(3, 2), 1: Tally(1, 1), 0: Tally(0, 0)}
    ex = bayes.explain(commits, steps, "b" * 40, 0.95)
    assert 0 < ex["p_first_bad"] < 0.95 and "to reach 95%" in ex["lines"][-1]
    assert "P(first bad commit = bbbbbbbbbbbb)" in ex["lines"][0]
    json.dumps(ex)                                       # result.json holds it as it is


def simulate(rng: random.Random, n: int, culprit: int, q: float, budget: int = 80) -> tuple[Stop, int]:
    t: dict[int, Tally] = {}
    boots = 2
    while bayes.plan_endpoint(t.get(n - 1, Tally())):
        t[n - 1] = t.get(n - 1, Tally()).plus(rng.random() < q)
        boots += 1
    while not isinstance(d := bayes.choose(n, t, (), boots=boots, budget=budget, confidence=0.95), Stop):
        t[d] = t.get(d, Tally()).plus(d >= culprit and rng.random() < q)
        boots += 1
    return d, boots


def test_a_one_in_two_flake_is_found_with_its_stated_confidence():
    rng = random.Random(7)
    culprits = [rng.randrange(16) for _ in range(60)]
    rng2 = random.Random(8)
    right = wrong = 0
    for c in culprits:
        d, boots = simulate(rng2, 16, c, 0.5)
        if d.why == "confident":
            right += d.best == c
            wrong += d.best != c
        assert boots <= 80
    assert right >= 50 and wrong <= 4


# -- the driver, on a fake flaky checker ---------------------------------------------------------------
class _FlakyChecker:
    """Runs fail with probability 1/2 on commits at or after the culprit, never before."""

    def __init__(self, commits: list[str], culprit: int, seed: int):
        self.index, self.culprit, self.rng, self.runs = {c: i for i, c in enumerate(commits)}, culprit, \
            random.Random(seed), []
        self.executor = types.SimpleNamespace(slots=lambda: 1)

    def tallied(self, ref: str, n: int = 1) -> Verdict:
        commit = ref.split("@", 1)[1]
        self.runs.append(commit)
        i = self.index.get(commit, -1)
        failed = i >= self.culprit and self.rng.random() < 0.5
        rec = types.SimpleNamespace(run_id=f"run-{len(self.runs)}")
        return Verdict("bad" if failed else "good", "exited 1" if failed else "exited 0", [rec],  # type: ignore[list-item]
                       runs=1, failures=int(failed))


def _flaky(tmp_path, checker, commits, good, budget=80):
    from harness.drivers.bisect_flaky import FlakyBisect
    b = FlakyBisect.__new__(FlakyBisect)
    b.kernel, b.check, b.say, b.sink, b.repeat = "baseline", parse_check("guest:true"), (lambda _m: None), None, 1
    b.confidence, b.budget, b.model, b.stopped = 0.95, budget, Model(), None
    b.dir, b.good, b.bad, b.checker = tmp_path, good, commits[-1], checker
    path = tmp_path / "state.json"
    b.state = json.loads(path.read_text()) if path.exists() else {"steps": [], "refs": {}}
    b.bed = types.SimpleNamespace(add=lambda ref: types.SimpleNamespace(key="k" * 24, bzimage=tmp_path / "bz"))
    (tmp_path / "bz").write_bytes(b"kernel")
    b._subject = lambda commit: f"subject of {commit[:4]}"
    b._chain = lambda: list(commits)
    return b


def test_the_flaky_driver_finds_the_culprit_and_resumes_where_it_stopped(tmp_path):
    commits = [f"{i:x}" * 40 for i in range(1, 9)]           # 8 candidates, the culprit is the 5th
    good = "0" * 40
    checker = _FlakyChecker(commits, 4, seed=3)
    b = _flaky(tmp_path, checker, commits, good)
    b._endpoints()
    assert checker.runs[:2] == [good, good] and checker.runs[2] == commits[-1]
    b._search()
    full = json.loads((tmp_path / "state.json").read_text())["steps"]
    assert b.stopped.why == "confident" and commits[b.stopped.best] == commits[4]
    assert all(s["posterior"] for s in full if s["commit"] != good)
    # a kill after 6 steps: the state holds them; the same command runs on from there
    state = json.loads((tmp_path / "state.json").read_text())
    state["steps"] = state["steps"][:6]
    (tmp_path / "state.json").write_text(json.dumps(state))
    again = _FlakyChecker(commits, 4, seed=4)
    b2 = _flaky(tmp_path, again, commits, good)
    b2._endpoints()
    culprit, candidates = b2._search()
    assert [s["commit"] for s in b2.state["steps"][:6]] == [s["commit"] for s in full[:6]]
    n_before = sum(1 for s in full[:6] if s["commit"] == good)
    assert again.runs.count(good) == 2 - n_before        # the good endpoint is not run again
    assert culprit == commits[4] and b2.stopped.why == "confident"
    conf = b2._confidence(culprit, True)
    assert conf["p_first_bad"] >= 0.95 and conf["stopped"] == "confident"


def test_the_flaky_driver_stops_at_its_budget_and_says_it_is_not_sure(tmp_path):
    commits = [f"{i:x}" * 40 for i in range(1, 9)]
    b = _flaky(tmp_path, _FlakyChecker(commits, 4, seed=5), commits, "0" * 40, budget=8)
    b._endpoints()
    b._search()
    assert b.stopped.why in ("budget", "confident")
    assert sum(len(s["run_ids"]) for s in b.state["steps"]) <= 9
    if b.stopped.why == "budget":
        assert not b._confirm(commits[b.stopped.best])[0]
        assert "to reach 95%" in b._confidence(commits[b.stopped.best], False)["lines"][-1] or \
            b._confidence(commits[b.stopped.best], False)["p_first_bad"] >= 0.95


def test_a_kernel_that_does_not_build_is_not_built_again_by_the_next_add(monkeypatch):
    """A bisect's testbed after a commit that does not build: the next step's add() builds only
    its own kernel (seen on real VMs: every later step failed with the broken commit's error)."""
    from harness.errors import BuildError
    from harness.run import testbed as tb
    built: list[str | None] = []

    def build_kernel(name, base_commit=None):
        built.append(base_commit)
        if base_commit == "b" * 40:
            raise BuildError("baseline", ["xfs_super.c: #error"], Path("/dev/null"))
        return types.SimpleNamespace(key=base_commit, bzimage=None)
    monkeypatch.setattr(tb, "build_kernel", build_kernel)
    monkeypatch.setattr(tb, "resolve_commit", lambda name, ref: ref)
    monkeypatch.setattr(tb, "build_image", lambda name, log: object())
    monkeypatch.setattr(tb, "choose_accel", lambda bz, override: tb.Accel("tcg", "test"))
    bed = tb.Testbed([f"baseline@{'a' * 40}"]).prepare()
    with pytest.raises(BuildError):
        bed.add(f"baseline@{'b' * 40}")
    assert bed.add(f"baseline@{'c' * 40}").key == "c" * 40
    assert built == ["a" * 40, "b" * 40, "c" * 40]
