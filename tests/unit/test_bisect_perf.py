"""The performance bisect's decisions (``bayes_perf``) and its driver (``PerfBisect``) on a fake
host whose speed swings from minute to minute: the round design must cancel the swing."""

from __future__ import annotations

import math
import types

import pytest

from harness.drivers import bayes_perf as bp
from harness.drivers.checks import FioSettings, parse_check
from harness.results.verdict import Levels, levels

LV = Levels(gap=math.log(0.3), sd=0.2, rounds=3)     # a -70% change, 20% noise a round
ENDS = [bp.Round(-1, 15, math.log(r)) for r in (0.29, 0.31, 0.3)]   # the endpoints' rounds, in every posterior


def test_levels_pool_the_endpoints_noise_with_the_prior():
    lv = levels([([1000.0], [300.0]), ([1000.0], [300.0])])    # two identical rounds: no spread
    assert lv.pct == pytest.approx(-70.0) and 0.2 < lv.sd < 0.25   # the prior keeps the noise honest
    wild = levels([([1000.0], [300.0]), ([1000.0], [600.0]), ([1000.0], [150.0])])
    assert wild.sd > lv.sd


def test_posterior_puts_the_culprit_between_a_good_and_a_bad_round():
    rounds = [*ENDS, bp.Round(-1, 7, math.log(0.3)),    # 7 is bad
              bp.Round(-1, 3, math.log(1.0)),    # 3 is good
              bp.Round(3, 5, math.log(0.31)),    # 5 is bad
              bp.Round(3, 4, math.log(1.02))]    # 4 is good
    post = bp.posterior(16, rounds, LV)
    assert max(range(16), key=lambda i: post[i]) == 5 and post[5] > 0.9
    assert sum(post) == pytest.approx(1.0)


def test_one_wild_round_moves_the_posterior_little():
    """A host that jumps 3x between a round's two boots: Student-t tails, not a verdict."""
    calm = bp.posterior(16, [*ENDS, *[bp.Round(-1, 7, math.log(1.0))] * 3], LV)
    wild = bp.posterior(16, [*ENDS, *[bp.Round(-1, 7, math.log(1.0))] * 3, bp.Round(-1, 7, math.log(0.1))], LV)
    assert sum(wild[:8]) < 0.2 and sum(calm[:8]) < 0.01


def test_choose_bisects_then_confirms_the_leader_against_its_parent():
    first = bp.choose(16, ENDS, LV, boots=0, budget=80)
    assert isinstance(first, bp.Measure) and first.reference == -1 and 6 <= first.kernel <= 8
    rounds = [*ENDS, bp.Round(-1, 7, math.log(0.3)), bp.Round(-1, 3, 0.0), bp.Round(3, 5, math.log(0.3)),
              bp.Round(3, 4, 0.0)]
    d = bp.choose(16, rounds, LV, boots=8, budget=80)
    assert d == bp.Measure(4, 5, True)                 # the leader against its parent
    rounds += [bp.Round(4, 5, math.log(0.28)), bp.Round(4, 5, math.log(0.33))]
    stop = bp.choose(16, rounds, LV, boots=12, budget=80)
    assert isinstance(stop, bp.Stop) and stop.best == 5 and stop.why == "confident" and stop.p_best >= 0.95
    assert bp.choose(16, rounds[:7], LV, boots=79, budget=80).why == "budget"
    assert bp.choose(16, rounds[:7], LV, boots=8, budget=80, untestable={4}).why == "stuck"
    assert bp.credible([0.1, 0.7, 0.2], 0.85) == [1, 2]


def test_two_candidates_tied_at_one_half_are_parted():
    # A real perf70 bisect (TCG): the culprit 5 between a good 4 and a bad 6. Every round of 6
    # against 4 says "bad", which 5 and 6 explain equally: they tie at 0.5 each, summing to a hair
    # under 0.5 at 5, so the first candidate to reach one half was 6, measured against 4 again and
    # again. The median must be the candidate that splits the probability: 5.
    rounds = [*ENDS, bp.Round(-1, 7, math.log(0.3)), bp.Round(-1, 4, 0.0),
              *[bp.Round(4, 6, math.log(0.25)) for _ in range(4)]]
    post = bp.posterior(16, rounds, LV)
    assert abs(post[5] - 0.5) < 1e-6 and abs(post[6] - 0.5) < 1e-6
    assert bp.median(post) == 5
    assert bp.median([0.5 - 1e-12, 0.5 + 1e-12]) == 0 and bp.median([0.0, 0.0, 1.0]) == 2
    assert bp.choose(16, rounds, LV, boots=12, budget=160) == bp.Measure(4, 5, False)
    for skew in (1e-12, -1e-12):                 # whichever way the sums round
        post = [0.0] * 5 + [0.5 + skew, 0.5 - skew] + [0.0] * 9
        assert bp.median(post) == 5


class _SwingingHost:
    """A fake Checker whose host speed swings 6x from minute to minute (the swing that made a
    culprit look good against references measured minutes before, issue 23): two adjacent boots
    share a speed, the next two may run three times faster or half as fast."""

    def __init__(self, chain: list[str], culprit: int):
        self.level = {c: (300.0 if i >= culprit else 1000.0) for i, c in enumerate(chain)}
        self.boots: list[str] = []
        self.speeds = [1.0, 1.0, 3.0, 3.0, 0.5, 0.5, 2.0, 2.0]
        self.fio = FioSettings()

    def measure(self, ref, sampling=None):
        speed = self.speeds[len(self.boots) % len(self.speeds)]
        self.boots.append(ref)
        base = self.level.get(ref.split("@", 1)[1], 1000.0)
        return [base * speed * f for f in (0.97, 1.0, 1.03)], [types.SimpleNamespace(run_id=f"r{len(self.boots)}",
                                                                                      failures=[], sysrq_summary=[])]


def _perf_bisect(tmp_path, chain, host):
    from harness.drivers.bisect_perf import PerfBisect
    b = PerfBisect.__new__(PerfBisect)
    b.kernel, b.check, b.fio, b.say, b.sink = "baseline", parse_check("fio:ext4/nvme/unwritten-convert/libaio:20%"), \
        FioSettings(), (lambda _m: None), None
    b.confidence, b.budget, b.stopped = 0.95, 160, None
    b.dir, b.state, b.checker, b.id = tmp_path, {"steps": [], "refs": {}}, host, "bisect-test"
    b.good, b.bad = "0" * 40, chain[-1]
    def build(ref):                    # every commit a different kernel
        bz = tmp_path / f"bz-{ref.split('@')[1]}"
        bz.write_bytes(ref.encode())
        return types.SimpleNamespace(key="k" * 24, bzimage=bz)
    b.bed = types.SimpleNamespace(kernel=build, add=build)
    b._subject = lambda commit: f"subject of {commit[:4]}"
    b._chain = lambda: list(chain)
    return b


@pytest.mark.parametrize("culprit", [0, 6, 15])
def test_perf_bisect_finds_the_culprit_on_a_swinging_host_and_resumes(tmp_path, culprit):
    chain = [f"{i:x}" * 40 for i in range(1, 16)] + ["f" * 39 + "0"]
    host = _SwingingHost(chain, culprit)
    b = _perf_bisect(tmp_path, chain, host)
    b._endpoints()
    found, held = b._search()
    assert found == chain[culprit] and b.stopped.why == "confident" and held[0] == found
    steps = b.state["steps"]
    assert [s["phase"] for s in steps[:2]] == ["endpoint", "endpoint"]
    parent = b.good if culprit == 0 else chain[culprit - 1]
    confirms = [s for s in steps if s["commit"] == found and s["reference"] == parent]
    assert len(confirms) >= 2 and confirms[-1]["phase"] == "confirm"    # a search step may be one of them
    # each round is two adjacent boots, the reference first
    for s in steps[2:]:
        assert s["reference_values"] and s["values"] and len(s["run_ids"]) == 2
    conf = b._confidence(found, True)
    assert conf["p_best"] >= 0.95 and "first bad commit" in conf["lines"][0]
    # resumed: the recorded rounds give the same answer without a boot
    n = len(host.boots)
    again = _perf_bisect(tmp_path, chain, host)
    again.state = b.state
    again._endpoints()
    assert again._search()[0] == found and len(host.boots) == n


def test_a_kernel_byte_identical_to_its_parents_is_never_the_culprit(tmp_path):
    chain = [f"{i:x}" * 40 for i in range(1, 9)]
    host = _SwingingHost(chain, culprit=3)
    b = _perf_bisect(tmp_path, chain, host)
    b.state["kernels"] = {chain[2]: "same", chain[3]: "same"}    # commit 3 changed only the docs
    b._endpoints()
    found, _ = b._search()
    assert found == chain[4] or b.stopped.why != "confident"     # the boots say 3, the bytes say not 3
    assert b._posterior()[3] == 0.0


def test_perf_bisect_refuses_endpoints_that_do_not_differ(tmp_path):
    from harness.drivers.bisect import BisectError
    chain = [f"{i:x}" * 40 for i in range(1, 5)]
    host = _SwingingHost(chain, culprit=99)          # nothing regressed
    b = _perf_bisect(tmp_path, chain, host)
    with pytest.raises(BisectError, match="do not differ by 20%"):
        b._endpoints()


def test_a_plain_bisect_refuses_a_fio_check(tmp_path):
    from harness.drivers.bisect import Bisect, BisectError
    with pytest.raises(BisectError, match="PerfBisect"):
        Bisect("baseline", "a", "b", parse_check("fio:ext4/nvme/unwritten-convert/libaio:20%"), tmp_path)
