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
