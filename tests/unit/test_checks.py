"""Check strings and the performance decision of `kharness check` / bisect steps."""

import pytest

from harness.drivers.checks import EXIT_CODES, Checker, CheckError, FioSettings, parse_check
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


check = parse_check("fio:ext4/nvme/unwritten-convert/libaio:20%")


def checker(chk, speeds, level, max_rounds=4):
    """A Checker whose boots are synthetic: boot ``i`` runs at ``speeds[i // 2]`` of the host (a
    round is a reference boot, then a kernel boot), the reference at 1000 and the kernel at
    ``level`` of it, three runs a boot 1% apart. ``c.booted`` lists what was measured, in order."""
    c = Checker.__new__(Checker)
    c.check, c.fio, c.booted = chk, FioSettings(max_rounds=max_rounds), []

    def measure(ref, sampling=None):
        speed = speeds[len(c.booted) // 2]
        c.booted.append(ref)
        v = 1000 * speed * (level if ref == "new" else 1.0)
        return [v * 0.99, v, v * 1.01], []
    c.measure = measure
    return c


def test_a_fio_check_alternates_boots_and_judges_each_round():
    # a host 3x faster in the second round than the first moves both boots of a round: a
    # reference measured once at the start would make the halved kernel look good (1500 vs 1000)
    c = checker(check, speeds=[1.0, 3.0, 0.6, 1.0], level=0.5)
    v = c.performance("ref", "new")
    assert v.outcome == "bad" and v.paired is not None and v.paired.pct < -45
    assert c.booted[:4] == ["ref", "new", "ref", "new"] and len(v.paired.ratios) >= 2
    assert "alternating pairs of boots" in v.reason and "ext4/nvme/unwritten-convert/libaio" in v.reason
    # a 15% drop is below the minimum effect of 20%: good, and so is an improvement
    assert checker(check, [1.0, 2.0, 0.5, 1.0], 0.85).performance("ref", "new").outcome == "good"
    assert checker(check, [1.0, 2.0, 0.5, 1.0], 1.3).performance("ref", "new").outcome == "good"


def test_a_fio_check_left_open_is_a_skip_never_a_guess():
    # rounds that disagree about a -20%-or-worse change: open at the cap, so skip (exit 125)
    c = checker(check, [1.0, 1.0], 0.7, max_rounds=2)
    noisy = iter([1.0, 0.5, 1.0, 0.95])
    base_measure = c.measure

    def measure(ref, sampling=None):
        f = next(noisy)
        return [x * f for x in base_measure(ref)[0]], []
    c.measure = measure
    v = c.performance("ref", "new")
    assert v.outcome == "skip" and v.reason.endswith("-> open") and len(c.booted) == 4
    # the reference not measured (its boot failed): skip, and says which kernel
    c = checker(check, [1.0], 0.5)
    c.measure = lambda ref, sampling=None: ([], [])
    assert c.performance("ref", "new").reason.startswith("no measurement of ref")


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
    v = checker(commits, [1.0, 1.5, 0.8], 1.78).performance("ref", "new")
    assert v.outcome == "bad" and "jbd2_commits_per_kwrite" in v.reason
    assert checker(commits, [1.0, 1.5, 0.8], 0.65).performance("ref", "new").outcome == "good"   # fewer commits
    assert checker(commits, [1.0, 1.5, 0.8], 1.0).performance("ref", "new").outcome == "good"


def test_paired_rule_follows_the_metric_direction():
    from harness.results.verdict import paired_rule
    levels = {"parent": 186.0, "culprit": 333.0, "same": 187.0}
    speeds = [1.0, 1.6, 0.7]   # counts per 1000 writes barely move with the host's speed; still paired

    def rounds(kernel):
        return [([levels["parent"] * s * f for f in (0.99, 1.0, 1.01)],
                 [levels[kernel] * s * f for f in (0.99, 1.0, 1.01)]) for s in speeds]
    a = paired_rule(rounds("culprit"), min_effect_pct=10, key="jbd2_commits_per_kwrite")
    assert a.outcome == "bad" and a.pct > 50
    assert paired_rule(rounds("same"), min_effect_pct=10, key="jbd2_commits_per_kwrite").outcome == "good"
    # the same numbers read as IOPS: a rise is no regression
    assert paired_rule(rounds("culprit"), min_effect_pct=10).outcome == "good"
