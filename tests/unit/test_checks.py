"""Check strings and the performance decision of `kharness check` / bisect steps."""

import pytest

from harness.drivers.checks import EXIT_CODES, CheckError, decide, parse_check
from harness.errors import DefinitionError


def test_check_forms():
    assert parse_check("boot").kind == "boot"
    g = parse_check("guest:grep -q dio /proc/filesystems")
    assert g.kind == "guest" and g.argv == ("grep", "-q", "dio", "/proc/filesystems")
    x = parse_check("xfstests:generic/002,ext4/001@xfs_4k")
    assert (x.kind, x.tests, x.section) == ("xfstests", ("generic/002", "ext4/001"), "xfs_4k")
    assert x.image == "debian-bookworm-xfstests"
    assert parse_check("xfstests:generic/002").section == "ext4_4k"
    f = parse_check("fio:ext4/nvme/unwritten-convert/libaio:20%")
    assert (f.kind, str(f.cell), f.min_effect_pct, f.image) == ("fio", "ext4/nvme/unwritten-convert/libaio", 20.0,
                                                           "debian-bookworm")
    assert parse_check("fio:xfs/virtio/append-extend/io_uring").min_effect_pct == 10.0
    assert EXIT_CODES == {"good": 0, "bad": 1, "skip": 125}


@pytest.mark.parametrize("text, words", [
    ("bot", "want one of boot, guest:COMMAND"),
    ("guest:", "give the command"),
    ("xfstests:generic", "not xfstests test names: generic"),
    ("fio:ext4/nvme/unwritten-convert", "want one of"),
    ("fio:ext4/floppy/unwritten-convert/libaio", "floppy"),
    ("fio:ext4/nvme/sideways/libaio", "sideways"),
])
def test_bad_checks_say_what_is_wrong(text, words):
    with pytest.raises((CheckError, DefinitionError)) as e:
        parse_check(text)
    assert words in str(e.value)


def test_unknown_section_is_named():
    with pytest.raises(DefinitionError, match="nosuch"):
        parse_check("xfstests:generic/002@nosuch")


GOOD = [2000.0, 2100.0, 1950.0]
BAD = [600.0, 560.0, 580.0]
check = parse_check("fio:ext4/nvme/unwritten-convert/libaio:20%")


def test_decide_against_the_good_reference_alone():
    assert decide(GOOD, BAD, check).outcome == "bad"
    assert decide(GOOD, [2010.0, 1990.0, 2080.0], check).outcome == "good"
    # a 15% drop is below the minimum effect of 20%: not a regression
    assert decide(GOOD, [1700.0, 1720.0, 1690.0], check).outcome == "good"
    # two runs cannot be decided: measure more, never guess
    assert decide(GOOD, [2000.0, 600.0], check).outcome == "skip"


def test_decide_between_both_endpoints():
    assert decide(GOOD, [2040.0, 1980.0, 2010.0], check, BAD).outcome == "good"
    assert decide(GOOD, [590.0, 570.0, 600.0], check, BAD).outcome == "bad"
    # past half the gap (on the ratio scale) from good: bad
    v = decide(GOOD, [800.0, 790.0, 820.0], check, BAD)
    assert v.outcome == "bad" and "IOPS" in v.reason and v.comparison.pct_change < -55
    # a good kernel measured 24% low on a slow stretch of the host (seen here in a 16-commit
    # bisect): beyond the 20% minimum effect, but nearer good than bad: good, not a false culprit
    assert decide([2071.0, 2014.0, 1990.0], [1540.0, 1460.0, 1796.0], check, [501.0, 478.0, 539.0]).outcome == "good"


class _SwingingHost:
    """A fake Checker whose host speed swings 6x from minute to minute (the swing that made a
    culprit look good against references measured minutes before): two adjacent boots share
    a speed, the next two may run three times faster or half as fast."""

    def __init__(self, iops: dict[str, float]):
        self.iops, self.boots = iops, []
        self.speeds = [1.0, 1.0, 3.0, 3.0, 0.5, 0.5, 2.0, 2.0]

    def measure(self, ref):
        speed = self.speeds[len(self.boots) % len(self.speeds)]
        self.boots.append(ref)
        base = self.iops[ref.split("@", 1)[1]]
        return [base * speed * f for f in (0.98, 1.0, 1.02)], []


def _bisect_for_confirm(tmp_path, checker):
    import types

    from harness.drivers.bisect import Bisect
    from harness.drivers.checks import FioSettings
    b = Bisect.__new__(Bisect)
    b.kernel, b.check, b.fio, b.say, b.sink = "baseline", parse_check("fio:ext4/nvme/unwritten-convert/libaio:20%"), \
        FioSettings(), (lambda _m: None), None
    b.dir, b.state, b.checker = tmp_path, {"steps": []}, checker
    b.bed = types.SimpleNamespace(kernel=lambda ref: types.SimpleNamespace(key="k" * 24, bzimage=tmp_path / "bz"))
    (tmp_path / "bz").write_bytes(b"kernel")
    b._subject = lambda commit: f"subject of {commit}"
    return b


@pytest.mark.parametrize("culprit_iops, confirmed", [(500.0, True), (1000.0, False)])
def test_a_performance_culprit_is_confirmed_against_its_parent_in_alternating_boots(
        tmp_path, culprit_iops, confirmed):
    """Parent and culprit alternate boot by boot, so a host that runs one boot three times faster
    than the next cannot make a -50% culprit look good, nor an unchanged one look bad."""
    parent, culprit = "a" * 40, "b" * 40
    host = _SwingingHost({parent: 1000.0, culprit: culprit_iops})
    b = _bisect_for_confirm(tmp_path, host)
    again, before = b._confirm_interleaved(culprit, parent)
    assert host.boots[:4] == [f"baseline@{parent}", f"baseline@{culprit}"] * 2   # alternating
    assert (again.outcome == "bad" and before.outcome == "good") is confirmed
    assert [s["phase"] for s in b.state["steps"]] == ["confirm", "confirm"]
    assert "alternately" in again.reason
    # recorded: a resumed bisect takes the two steps as they are, with no new boot
    n = len(host.boots)
    assert b._confirm_interleaved(culprit, parent)[0].outcome == again.outcome and len(host.boots) == n


@pytest.mark.parametrize("step_iops, outcome", [(500.0, "bad"), (1000.0, "good")])
def test_a_performance_step_is_measured_alternately_with_the_last_good_commit(tmp_path, step_iops, outcome):
    """Each step alternates boots with the last commit found good (not the endpoints' values
    from the start), so a host three times faster now than at the start judges it right."""
    from harness.drivers.bisect import Step
    good, last_good, step_commit = "0" * 40, "a" * 40, "b" * 40
    host = _SwingingHost({last_good: 1000.0, step_commit: step_iops})
    b = _bisect_for_confirm(tmp_path, host)
    b.good = good
    b._rc = lambda args: 0                                         # every commit is an ancestor
    b.state = {"steps": [{"phase": "step", "commit": last_good, "outcome": "good"}],
               "refs": {"good": [330.0, 340.0, 335.0], "bad": [110.0, 112.0, 108.0]}}   # a slow start
    step = Step("step", step_commit, "s", "skip", "")
    b._performance_step(step)
    assert host.boots[:4] == [f"baseline@{last_good}", f"baseline@{step_commit}"] * 2
    assert step.outcome == outcome and step.reference == last_good and "alternately" in step.reason
    assert len(step.run_ids) == 0 and step.values and step.pct_change is not None


def test_alternating_with_both_references_needs_evidence_each_way():
    from harness.drivers.interleave import alternate
    levels = {"good": 1000.0, "bad": 300.0, "same": 1000.0, "down": 320.0, "half": 550.0}
    speeds = iter([1.0, 1.0, 1.0, 2.5, 2.5, 2.5, 0.6, 0.6, 0.6] * 10)

    def measure(ref):
        s = next(speeds)
        return [levels[ref] * s * f for f in (0.98, 1.0, 1.02)], []
    assert alternate(measure, "good", "same", min_effect_pct=45, bad="bad").outcome == "good"
    assert alternate(measure, "good", "down", min_effect_pct=45, bad="bad").outcome == "bad"
    # alone, a change smaller than the minimum effect is good on its point estimate
    assert alternate(measure, "good", "same", min_effect_pct=45).outcome == "good"
    half = alternate(measure, "good", "half", min_effect_pct=45, bad="bad", most=3)
    assert half.outcome in ("good", "skip") and len(half.rounds) >= 2 and len(half.rounds[0]) == 3


def test_tallied_runs_count_failures_and_leave_skips_out():
    from harness.drivers.checks import Checker, Verdict
    c = Checker.__new__(Checker)
    runs = [Verdict("good", "exited 0"), Verdict("skip", "harness: lost"), Verdict("bad", "exited 1")]
    c.functional_runs = lambda ref, n=1: runs[:n]
    v = c.tallied("baseline@x", 3)
    assert (v.outcome, v.runs, v.failures, v.reason) == ("bad", 2, 1, "exited 1")
    assert (c.tallied("baseline@x", 1).outcome, c.tallied("baseline@x", 1).runs) == ("good", 1)
    c.functional_runs = lambda ref, n=1: [Verdict("skip", "boot failed: panic")]
    assert (c.tallied("baseline@x").outcome, c.tallied("baseline@x").runs) == ("skip", 0)
    # --repeat counts too, and disagreeing repeats stay a skip
    c.functional_runs = lambda ref, n=1: [Verdict("good", "exited 0"), Verdict("bad", "exited 1")]
    r = c.repeated("baseline@x", 2)
    assert (r.outcome, r.runs, r.failures) == ("skip", 2, 1)


def test_counter_checks_name_a_counted_metric():
    c = parse_check("counter:ext4/nvme/unwritten-convert/libaio:jbd2_commits_per_kwrite:15%")
    assert (c.kind, str(c.cell), c.metric, c.min_effect_pct) == (
        "fio", "ext4/nvme/unwritten-convert/libaio", "jbd2_commits_per_kwrite", 15.0)
    assert parse_check("counter:xfs/nvme/randwrite-osync/libaio:dio_wq_peak_concurrency").min_effect_pct == 10.0
    assert parse_check("fio:ext4/nvme/unwritten-convert/libaio").metric == "iops"
    with pytest.raises(CheckError, match="'iops' is not a counted metric.*jbd2_commits_per_kwrite"):
        parse_check("counter:ext4/nvme/unwritten-convert/libaio:iops")
    with pytest.raises(CheckError, match="want one of"):
        parse_check("counter:ext4/nvme/unwritten-convert/libaio")
    with pytest.raises((CheckError, DefinitionError), match="floppy"):
        parse_check("counter:ext4/floppy/unwritten-convert/libaio:flushes_per_kwrite")


def test_a_counter_where_lower_is_better_regresses_when_it_rises():
    commits = parse_check("counter:ext4/nvme/unwritten-convert/libaio:jbd2_commits_per_kwrite:10%")
    base = [186.0, 190.0, 183.0, 188.0]
    v = decide(base, [333.0, 330.0, 338.0, 329.0], commits)
    assert v.outcome == "bad" and "jbd2_commits_per_kwrite" in v.reason
    assert decide(base, [120.0, 118.0, 125.0, 121.0], commits).outcome == "good"   # fewer commits
    assert decide(base, [187.0, 185.0, 189.0, 186.0], commits).outcome == "good"
    # between endpoints: half the gap on the ratio scale (+33% here), the rising way
    bad = [333.0, 330.0, 338.0, 329.0]
    assert decide(base, [240.0, 238.0, 236.0, 241.0], commits, bad).outcome == "good"   # +28%: nearer good
    assert decide(base, [300.0, 296.0, 305.0, 299.0], commits, bad).outcome == "bad"    # +60%


def test_paired_rule_follows_the_metric_direction():
    from harness.drivers.interleave import alternate
    levels = {"parent": 186.0, "culprit": 333.0, "same": 187.0}
    speeds = iter([1.0, 1.0, 1.6, 1.6, 0.7, 0.7] * 5)

    def measure(ref):
        s = next(speeds)   # counts per 1000 writes barely move with the host's speed; still paired
        return [levels[ref] * s * f for f in (0.99, 1.0, 1.01)], []
    a = alternate(measure, "parent", "culprit", min_effect_pct=10, key="jbd2_commits_per_kwrite")
    assert a.outcome == "bad" and a.paired is not None and a.paired.pct > 50
    assert alternate(measure, "parent", "same", min_effect_pct=10, key="jbd2_commits_per_kwrite").outcome == "good"
    # the same numbers read as IOPS: a rise is no regression
    assert alternate(measure, "parent", "culprit", min_effect_pct=10).outcome == "good"
