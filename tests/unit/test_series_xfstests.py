"""The selected xfstests of a try (harness.drivers.series.xfstests): grouping, and a clear
"not run" when nothing is selected or no xfstests source is configured."""

from harness.drivers.series.xfstests import by_section, run_xfstests


def test_grouped_by_section_in_order():
    assert by_section(["ext4_4k:generic/091", "xfs_4k:generic/001", "ext4_4k:generic/013"]) == \
        {"ext4_4k": ["generic/091", "generic/013"], "xfs_4k": ["generic/001"]}


def test_nothing_selected_or_no_source_runs_nothing(tmp_path, monkeypatch):
    assert run_xfstests([], "k", "b", tmp_path, group="g").not_run == "none selected"
    monkeypatch.delenv("KHARNESS_XFSTESTS", raising=False)
    out = run_xfstests(["ext4_4k:generic/001"], "k", "b", tmp_path, group="g")
    assert out.not_run.startswith("no xfstests source") and not out.diffs and not out.new_failures


def test_the_base_is_reused_only_on_the_same_kernel_and_image_and_only_whole_sections():
    from harness.drivers.series.xfstests import BaseXfstests
    from harness.results.history import TestAttempts

    a = TestAttempts("ext4_4k", "generic/091", ("pass",))
    b = TestAttempts("ext4_4k", "generic/263", ("fail",), ("output mismatch",))
    base = BaseXfstests("kkey/ikey", (a, b))
    got = base.for_section("kkey/ikey", "ext4_4k", ["generic/091", "generic/263"])
    assert got == {("ext4_4k", "generic/091"): a, ("ext4_4k", "generic/263"): b}
    assert base.for_section("kkey/other-image", "ext4_4k", ["generic/091"]) is None
    assert base.for_section("kkey/ikey", "ext4_4k", ["generic/091", "generic/240"]) is None   # a test it never ran
    assert base.for_section("kkey/ikey", "xfs_4k", ["generic/091"]) is None
