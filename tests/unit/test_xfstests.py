"""xfstests: section definitions, local.config rendering, expunges, check argv and result parsing.

Fixtures in tests/fixtures/xfstests: ``synth-*`` are written by hand in the exact format of
fstests' common/report and check; ``captured-*`` (added later) come from real runs. Every
``*result.xml`` there must satisfy the invariants checked by ``test_xunit_fixture_invariants``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness.errors import DefinitionError, HarnessError
from harness.workloads.xfstests import (STATUSES, TEST_NAME, DiskMap, ExpungeEntry, Section,
                                        TestResult, attach_artifacts, check_argv, collect_artifacts,
                                        compare_runs, expunge_file_text, expunged, kernel_version,
                                        load_sections, parse_check_log, parse_check_time,
                                        parse_version_condition, parse_xunit, parse_xunit_properties,
                                        render_local_config, version_matches, watchdog_seconds)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "xfstests"
XUNIT_FIXTURES = sorted(FIXTURES.glob("*.xml"))


def config_sections(text: str) -> dict[str, dict[str, str]]:
    """A rendered local.config read the way common/config parse_config_section() does:
    comments dropped, KEY="value" with the quotes removed, per [section]."""
    out: dict[str, dict[str, str]] = {}
    cur: dict[str, str] | None = None
    for raw in text.splitlines():
        line = re.sub(r"#.*$", "", raw).strip()
        if not line:
            continue
        m = re.fullmatch(r"\[([A-Za-z0-9_]+)\]", line)
        if m:
            assert m.group(1) not in out, f"section {m.group(1)} twice"
            cur = out[m.group(1)] = {}
            continue
        assert cur is not None, f"assignment before any section: {line!r}"
        m = re.fullmatch(r'([A-Za-z_][A-Za-z0-9_]*)="([^"\'#$`\\]*)"', line)
        assert m, f"not a KEY=\"value\" line fstests parses cleanly: {line!r}"
        assert m.group(1) not in cur, f"{m.group(1)} set twice in one section"
        cur[m.group(1)] = m.group(2)
    return out


def sec(name: str = "ext4_4k", fstype: str = "ext4", mkfs: str = "-b 4096", **kw) -> Section:
    return Section(name=name, fstype=fstype, mkfs_options=mkfs, **kw)


DISKS = DiskMap(test_dev="/dev/vdb", scratch_dev="/dev/vdc",
                scratch_pool=["/dev/nvme0n1", "/dev/nvme1n1", "/dev/nvme2n1"], logdev="/dev/vdd")


def write_yaml(d: Path, name: str, text: str) -> Path:
    p = d / name
    p.write_text(text)
    return p


# ---------------------------------------------------------------------------------------------
# Shipped definitions and loading


def test_shipped_sections_load_and_render():
    sections = load_sections()
    assert {"ext4_4k", "ext4_1k", "xfs_4k", "xfs_reflink", "ocfs2_local"} <= set(sections)
    assert sections["ext4_1k"].mkfs_options == "-b 1024"
    assert sections["xfs_reflink"].mkfs_options == "-m reflink=1"
    ocfs2 = sections["ocfs2_local"]
    assert ocfs2.fstype == "ocfs2" and "-M local" in ocfs2.mkfs_options
    # _scratch_mkfs_sized reads "-b ?+([0-9]+)": the block size must be written in bytes.
    assert re.search(r"-b ?4096\b", ocfs2.mkfs_options)
    assert sections["xfs_4k"].path.name == "xfs.yaml"
    disks = DiskMap("/dev/vdb", "/dev/vdc", logdev="/dev/vdd")
    cfg = config_sections(render_local_config(list(sections.values()), disks))
    assert list(cfg) == list(sections)


def test_load_rejects_unknown_key(tmp_path):
    write_yaml(tmp_path, "ext4.yaml", "sections:\n  ext4_x:\n    fstype: ext4\n"
               "    mkfs_options: '-b 4096'\n    mkfs_opts: '-q'\n")
    with pytest.raises(DefinitionError) as e:
        load_sections(tmp_path)
    assert e.value.path.name == "ext4.yaml"
    assert e.value.key == "sections.ext4_x.mkfs_opts"


def test_load_rejects_unknown_key_in_expunge_entry(tmp_path):
    write_yaml(tmp_path, "xfs.yaml", "sections:\n  xfs_x:\n    fstype: xfs\n    mkfs_options: ''\n"
               "    expunge:\n      - {test: generic/475, reason: flaky, kernels: '<6.2'}\n")
    with pytest.raises(DefinitionError) as e:
        load_sections(tmp_path)
    assert e.value.key == "sections.xfs_x.expunge[0].kernels"


def test_load_rejects_duplicate_section_across_files(tmp_path):
    body = "sections:\n  shared_name:\n    fstype: {fs}\n    mkfs_options: ''\n"
    write_yaml(tmp_path, "a.yaml", body.format(fs="ext4"))
    write_yaml(tmp_path, "b.yaml", body.format(fs="xfs"))
    with pytest.raises(DefinitionError) as e:
        load_sections(tmp_path)
    assert e.value.path.name == "b.yaml" and "a.yaml" in str(e.value)
    assert e.value.key == "sections.shared_name"


@pytest.mark.parametrize("snippet,key", [
    ("    mkfs_options: '-E root_owner=$UID'\n", "mkfs_options"),
    ("    mkfs_options: '-b 4096 # big'\n", "mkfs_options"),
    ("    mkfs_options: '-L \"x\"'\n", "mkfs_options"),
    ("    mkfs_options: '-m reflink = 1'\n", "mkfs_options"),
    ("    mkfs_options: ''\n    mount_options: 'noatime'\n", "mount_options"),
    ("    mkfs_options: ''\n    vars: {SCRATCH_DEV: /dev/sda}\n", "vars.SCRATCH_DEV"),
    ("    mkfs_options: ''\n    vars: {FSCK_OPTIONS: ''}\n", "vars.FSCK_OPTIONS"),
    ("    mkfs_options: ''\n    vars: {RECREATE_TEST_DEV: 'yes'}\n", "vars.RECREATE_TEST_DEV"),
    ("    mkfs_options: ''\n    vars: {bad-name: x}\n", "vars"),
    ("    mkfs_options: ''\n    needs: {scratch_pool: 1}\n", "needs.scratch_pool"),
    ("    mkfs_options: ''\n    expunge: [{test: generic/1, reason: x, kernel: '=>6.1'}]\n",
     "expunge[0].kernel"),
])
def test_load_rejects_bad_values(tmp_path, snippet, key):
    write_yaml(tmp_path, "ext4.yaml", "sections:\n  s1:\n    fstype: ext4\n" + snippet)
    with pytest.raises(DefinitionError) as e:
        load_sections(tmp_path)
    assert e.value.key.startswith(f"sections.s1.{key}"), e.value.key


def test_load_reads_all_fields(tmp_path):
    write_yaml(tmp_path, "btrfs.yaml", """
sections:
  btrfs_raid1:
    fstype: btrfs
    mkfs_options: "-m raid1 -d raid1"
    mount_options: "-o compress=zstd:3"
    needs: {scratch_pool: 3}
    vars: {LOAD_FACTOR: "2"}
    expunge:
      - {test: btrfs/011, reason: long, kernel: ">=6.1,<6.6"}
      - {test: generic/475, reason: flaky}
""")
    s = load_sections(tmp_path)["btrfs_raid1"]
    assert (s.fstype, s.scratch_pool, s.logdev) == ("btrfs", 3, False)
    assert s.mount_options == "-o compress=zstd:3" and s.vars == {"LOAD_FACTOR": "2"}
    assert s.expunge == [ExpungeEntry("btrfs/011", "long", ">=6.1,<6.6"),
                         ExpungeEntry("generic/475", "flaky", None)]


# ---------------------------------------------------------------------------------------------
# Rendering


def test_render_single_scratch():
    cfg = config_sections(render_local_config([sec(mount_options="-o noatime")], DISKS))
    s = cfg["ext4_4k"]
    assert s["FSTYP"] == "ext4" and s["TEST_DEV"] == "/dev/vdb" and s["TEST_DIR"] == "/mnt/test"
    assert s["SCRATCH_DEV"] == "/dev/vdc" and s["SCRATCH_MNT"] == "/mnt/scratch"
    assert s["SCRATCH_DEV_POOL"] == ""  # explicitly empty: values carry over between sections
    assert s["USE_EXTERNAL"] == "no" and s["SCRATCH_LOGDEV"] == ""
    assert s["MKFS_OPTIONS"] == "-b 4096" and s["MOUNT_OPTIONS"] == "-o noatime"
    assert s["RECREATE_TEST_DEV"] == "true"


def test_render_pool_unsets_scratch_dev():
    cfg = config_sections(render_local_config([sec("btrfs_pool", "btrfs", "-m raid1",
                                                   scratch_pool=2)], DISKS))
    s = cfg["btrfs_pool"]
    assert s["SCRATCH_DEV"] == ""  # common/config: must be unset when SCRATCH_DEV_POOL is set
    assert s["SCRATCH_DEV_POOL"] == "/dev/nvme0n1 /dev/nvme1n1"


def test_render_logdev():
    cfg = config_sections(render_local_config([sec("xfs_log", "xfs", "-b size=4096", logdev=True)],
                                              DISKS))
    s = cfg["xfs_log"]
    assert s["USE_EXTERNAL"] == "yes" and s["SCRATCH_LOGDEV"] == "/dev/vdd"
    assert s["TEST_LOGDEV"] == ""


def test_render_multi_section_resets_other_sections_vars():
    a = sec("ext4_a", vars={"LOAD_FACTOR": "4", "TEST_FS_MOUNT_OPTS": "-o noatime"})
    b = sec("xfs_b", "xfs", "-b size=4096")
    cfg = config_sections(render_local_config([a, b], DISKS))
    assert list(cfg) == ["ext4_a", "xfs_b"]
    assert cfg["ext4_a"]["LOAD_FACTOR"] == "4" and cfg["xfs_b"]["LOAD_FACTOR"] == ""
    assert cfg["ext4_a"]["TEST_FS_MOUNT_OPTS"] == "-o noatime"
    assert "TEST_FS_MOUNT_OPTS" not in cfg["xfs_b"]  # empty would mean "inherit"; FSTYP differs


@pytest.mark.parametrize("section,disks,needle", [
    (sec(scratch_pool=3), DiskMap("/dev/vdb", "/dev/vdc", ["/dev/vdd"]), "pool of 3"),
    (sec(), DiskMap("/dev/vdb", None), "scratch device"),
    (sec(logdev=True), DiskMap("/dev/vdb", "/dev/vdc"), "log device"),
    (sec(), DiskMap("/dev/vdb", "/dev/vdb"), "more than one"),
])
def test_render_missing_disk_names_section(section, disks, needle):
    with pytest.raises(HarnessError) as e:
        render_local_config([section], disks)
    assert "ext4_4k" in str(e.value) and needle in str(e.value)


@pytest.mark.parametrize("value", ["-O ^has_journal $(reboot)", "a`id`", "x\"y", "x'y", "a\\b",
                                   "-b 4096 # c", "a\nb", "*", "a = b"])
def test_render_refuses_values_fstests_would_mangle(value):
    with pytest.raises(HarnessError):
        render_local_config([sec(mkfs=value)], DISKS)
    with pytest.raises(HarnessError):
        render_local_config([sec(vars={"EXTRA": value})], DISKS)


@pytest.mark.parametrize("dev", ["/dev/disk/by-id/virtio-kh scratch", "vdc", "/dev/vd$c"])
def test_render_refuses_bad_device_paths(dev):
    with pytest.raises(HarnessError):
        render_local_config([sec()], DiskMap("/dev/vdb", dev))


def test_render_quotes_values_with_blanks_and_equals():
    text = render_local_config([sec("xfs_r", "xfs", "-m reflink=1,rmapbt=1 -i sparse=1")], DISKS)
    assert 'MKFS_OPTIONS="-m reflink=1,rmapbt=1 -i sparse=1"\n' in text
    assert config_sections(text)["xfs_r"]["MKFS_OPTIONS"] == "-m reflink=1,rmapbt=1 -i sparse=1"


def test_render_refuses_inherited_empty_options():
    first = sec("ext4_dax", mount_options="-o dax")
    second = sec("ext4_plain")  # empty MOUNT_OPTIONS, same FSTYP after a non-empty one
    with pytest.raises(HarnessError) as e:
        render_local_config([first, second], DISKS)
    assert "ext4_plain" in str(e.value) and "MOUNT_OPTIONS" in str(e.value)
    # The other order, or a different FSTYP in between, is fine.
    render_local_config([second, first], DISKS)
    render_local_config([sec("xfs_x", "xfs", "-b size=4096", mount_options="-o dax"), second], DISKS)


def test_render_refuses_duplicates_and_empty():
    with pytest.raises(HarnessError):
        render_local_config([sec(), sec()], DISKS)
    with pytest.raises(HarnessError):
        render_local_config([], DISKS)


# ---------------------------------------------------------------------------------------------
# Kernel versions and expunges


def test_kernel_version():
    assert kernel_version("6.1.192-g1748276115c8") == (6, 1, 192)
    assert kernel_version("6.6") == (6, 6, 0)
    assert kernel_version("6.2.0-rc1+") == (6, 2, 0)
    with pytest.raises(HarnessError):
        kernel_version("linux-6.1")


@pytest.mark.parametrize("cond,release,applies", [
    ("<6.2", "6.1.192-g1748276115c8", True),
    (">=6.6", "6.1.192-g1748276115c8", False),
    (">=6.1,<6.6", "6.1.192", True),
    (">=6.1,<6.6", "6.6.0", False),
    ("<=6.1.192", "6.1.192-g1", True),
    ("<6.1.192", "6.1.192-g1", False),
    (">6.1", "6.1.1", True),
    ("==6.1", "6.1.192", True),
    ("==6.1.191", "6.1.192", False),
    ("==6", "6.12.3", True),
    (" >= 6.1 , < 6.2 ", "6.1.5", True),
])
def test_version_conditions(cond, release, applies):
    assert version_matches(cond, kernel_version(release)) is applies


@pytest.mark.parametrize("cond", ["=>6.1", "~6.1", "6.1", "<6.x", ">=6.1,", "<6.1.2.3", "!=6.1"])
def test_bad_version_condition(cond):
    with pytest.raises(ValueError):
        parse_version_condition(cond)
    section = sec(expunge=[ExpungeEntry("generic/001", "x", cond)])
    with pytest.raises(DefinitionError) as e:
        expunged(section, "6.1.192")
    assert e.value.key == "sections.ext4_4k.expunge[0].kernel"


def test_expunged_applies_conditions_in_order():
    section = sec(expunge=[ExpungeEntry("generic/475", "flaky dm-error", None),
                           ExpungeEntry("generic/001", "old bug", "<6.2"),
                           ExpungeEntry("generic/002", "new bug", ">=6.6"),
                           ExpungeEntry("xfs/104", "range", ">=6.1,<6.6")])
    assert expunged(section, "6.1.192-g1748276115c8") == [
        ("generic/475", "flaky dm-error"), ("generic/001", "old bug"), ("xfs/104", "range")]
    assert [t for t, _ in expunged(section, "6.6.3")] == ["generic/475", "generic/002"]


def test_expunge_file_text_matches_checks_parser():
    text = expunge_file_text([("generic/475", "flaky\n  under dm-error"), ("xfs/104", "")],
                             header="kharness: ext4_4k on 6.1.192")
    lines = text.splitlines()
    assert lines == ["# kharness: ext4_4k on 6.1.192", "generic/475  # flaky under dm-error",
                     "xfs/104"]
    # check: readarray < <(sed "s/#.*$//" FILE); a test is expunged if ^TEST\b matches a line.
    entries = [re.sub(r"#.*$", "", line) for line in lines]
    def is_expunged(test: str) -> bool:
        return any(re.match(rf"^{re.escape(test)}\b", e) for e in entries)
    assert is_expunged("generic/475") and is_expunged("xfs/104")
    assert not is_expunged("generic/47") and not is_expunged("generic/001")
    assert expunge_file_text([]) == ""
    with pytest.raises(HarnessError):
        expunge_file_text([("-g auto", "x")])


# ---------------------------------------------------------------------------------------------
# check argv


def test_check_argv():
    assert check_argv("ext4_4k", ["generic/001", "xfs/*"], None, None) == [
        "./check", "-s", "ext4_4k", "-R", "xunit", "generic/001", "xfs/*"]
    assert check_argv("xfs_4k", None, ["quick", "xfs/auto"], "/tmp/kh.exclude") == [
        "./check", "-s", "xfs_4k", "-R", "xunit", "-E", "/tmp/kh.exclude", "-g", "quick,xfs/auto"]
    argv = check_argv("ext4_1k", ["generic/013"], ["auto"], "x.exclude")
    # check: "Arguments before tests, please!"
    assert argv.index("generic/013") > max(argv.index("-g"), argv.index("-E"))


@pytest.mark.parametrize("args", [
    ("bad-name", ["generic/001"], None, None),
    ("ext4_4k", None, None, None),
    ("ext4_4k", [], [], None),
    ("ext4_4k", ["-n"], None, None),
    ("ext4_4k", ["generic/001"], None, "/tmp/with space"),
    ("ext4_4k", None, ["quick;reboot"], None),
])
def test_check_argv_rejects(args):
    with pytest.raises(HarnessError):
        check_argv(*args)


# ---------------------------------------------------------------------------------------------
# xunit


def test_parse_xunit_synth_ext4():
    results = parse_xunit((FIXTURES / "synth-ext4_4k-result.xml").read_text())
    by = {r.name: r for r in results}
    assert [r.name for r in results] == ["generic/001", "generic/013", "generic/042",
                                         "generic/475", "generic/476", "generic/500"]
    assert {r.section for r in results} == {"ext4_4k"}
    assert (by["generic/001"].status, by["generic/001"].duration_s) == ("pass", 5.0)
    assert by["generic/001"].message == "" and by["generic/001"].output_diff is None

    f = by["generic/013"]
    assert f.status == "fail" and f.duration_s == 21.0
    assert f.message == "- output mismatch (see /var/lib/xfstests/results//ext4_4k/generic/013.out.bad)"
    assert f.output_diff.startswith("--- tests/generic/013.out")
    assert "+fsstress: check_cwd failure" in f.output_diff
    assert f.full.startswith("QA output created by 013") and f.dmesg is None

    d = by["generic/475"]
    assert d.status == "fail" and d.message.startswith("_check_dmesg: something found in dmesg")
    assert "WARNING: CPU: 1 PID: 4711 at fs/ext4/inode.c:3927" in d.dmesg
    assert d.output_diff is None

    n = by["generic/042"]
    assert n.status == "notrun"
    assert n.message == "Reflink not supported by scratch filesystem type: ext4"
    assert (by["generic/500"].status, by["generic/500"].message) == ("notrun", "")


def test_parse_xunit_repairs_unescaped_failure_message():
    results = parse_xunit((FIXTURES / "synth-xfs_4k-unescaped-result.xml").read_text(), "xfs_4k")
    by = {r.name: r for r in results}
    assert by["xfs/104"].status == "fail"
    assert by["xfs/104"].message == ('xfs_repair failed, err=1 <see '
                                     '/var/lib/xfstests/results//xfs_4k/xfs/104.full> & "check"')
    assert by["xfs/999"].message == "not suitable for this filesystem type: xfs & friends"


def test_parse_xunit_error_and_edge_cases():
    xml = ('<?xml version="1.0" encoding="UTF-8"?>\n<testsuite name="xfstests" failures="0" '
           'skipped="0" tests="2" time="">\n'
           '\t<testcase classname="xfstests.s1" name="generic/001" time="">\n'
           '\t\t<failure message="Unknown test_status=weird" type="TestFail"/>\n\t</testcase>\n'
           '\t<testcase classname="xfstests.s1" name="generic/002" time="2">\n'
           '\t\t<error message="boom"/>\n\t</testcase>\n</testsuite>\n')
    r1, r2 = parse_xunit(xml, section="override")
    assert (r1.status, r1.duration_s, r1.section) == ("error", None, "override")
    assert (r2.status, r2.message) == ("error", "boom")
    with pytest.raises(HarnessError):
        parse_xunit("")
    with pytest.raises(HarnessError):
        parse_xunit("<testsuite><testcase name='generic/001'>")
    with pytest.raises(HarnessError):
        parse_xunit("<html/>")


def test_parse_xunit_properties():
    props = parse_xunit_properties((FIXTURES / "synth-ext4_4k-result.xml").read_text())
    assert props["KERNEL"] == "6.1.192-g1748276115c8"
    assert props["SECTION"] == "ext4_4k" and props["MKFS_OPTIONS"] == "-b 4096"


@pytest.mark.parametrize("path", XUNIT_FIXTURES, ids=lambda p: p.name)
def test_xunit_fixture_invariants(path):
    """What check's xunit report guarantees: one <testcase> per tried (non-expunged) test,
    failures/skipped counts match, names are <dir>/<test>, classname is xfstests.<section>."""
    import xml.etree.ElementTree as ET

    results = parse_xunit(path.read_text())
    assert results, "no testcases"
    root = None
    try:
        root = ET.fromstring(path.read_text())
    except ET.ParseError:
        pass  # an unescaped failure message; parse_xunit repaired it
    for r in results:
        assert r.status in STATUSES
        assert TEST_NAME.match(r.name), r.name
        assert r.section and re.fullmatch(r"[A-Za-z0-9_]+", r.section)
        assert r.duration_s is None or r.duration_s >= 0
        assert isinstance(r.message, str)
        if r.status == "pass":
            assert r.output_diff is None and r.message == ""
        if r.status == "notrun":
            assert r.output_diff is None
    names = [r.name for r in results]
    assert len(names) == len(set(names)), "a test reported twice"
    assert len({r.section for r in results}) == 1
    if root is not None:
        assert int(root.get("tests")) == len(results)
        assert int(root.get("failures")) == sum(r.status == "fail" for r in results)
        assert int(root.get("skipped")) == sum(r.status == "notrun" for r in results)


# ---------------------------------------------------------------------------------------------
# check.log, check.time, artifacts


def test_parse_check_log():
    runs = parse_check_log((FIXTURES / "synth-ext4_4k-check.log").read_text())
    assert len(runs) == 3
    first, second, third = runs
    assert first.passed_all and first.total == 2 and first.ran == ["generic/001", "generic/002"]
    assert first.kernel == "6.1.192-g1748276115c8" and first.date == "Fri Nov 28 16:58:02 UTC 2025"
    assert second.ran == ["generic/001", "generic/013", "generic/042", "generic/475",
                          "generic/476", "generic/500"]
    assert second.not_run == ["generic/042", "generic/500"]
    assert second.failures == ["generic/013", "generic/475"]
    assert (second.failed_count, second.total, second.passed_all) == (2, 6, False)
    assert not second.interrupted and third.interrupted
    assert third.failures == ["generic/013"]


def test_parse_check_log_without_header():
    runs = parse_check_log("Ran: generic/001\nPassed all 1 tests\nRan: generic/002\n")
    assert [r.ran for r in runs] == [["generic/001"], ["generic/002"]]
    assert runs[0].passed_all and runs[1].total is None and not runs[1].passed_all


def test_parse_check_time_and_watchdog():
    times = parse_check_time((FIXTURES / "synth-ext4_4k-check.time").read_text()
                             + "garbage\ngeneric/003 x\n\n")
    assert times == {"generic/001": 5.0, "generic/002": 3.0, "generic/013": 21.0,
                     "generic/475": 93.0, "generic/476": 88.0}
    assert watchdog_seconds("generic/001", times) == 120.0          # 5 x 5 < minimum
    assert watchdog_seconds("generic/475", times) == 465.0          # 5 x 93
    assert watchdog_seconds("generic/999", times) == 1800.0         # unknown: default
    assert watchdog_seconds("generic/476", times, factor=2, minimum=10) == 176.0
    assert watchdog_seconds("generic/999", times, default=600) == 600.0


def make_results_dir(tmp_path: Path) -> Path:
    base = tmp_path / "results"
    g = base / "ext4_4k" / "generic"
    g.mkdir(parents=True)
    (g / "013.out.bad").write_text("QA output created by 013\nfsstress: check_cwd failure\n")
    (g / "013.full").write_text("full log of 013\n")
    (g / "475.dmesg").write_text("[  641.9] WARNING: CPU: 1 PID: 4711\n")
    (g / "475.full").write_text("x" * 5000)
    (g / "042.notrun").write_text("Reflink not supported\n")
    (g / "013.out.bad.rerun0").write_text("ignored")
    (base / "ext4_4k" / "result.xml").write_text("<testsuite/>")
    (base / "ext4_4k" / "check.log").write_text("")
    (base / "xfs_4k" / "xfs").mkdir(parents=True)
    (base / "xfs_4k" / "xfs" / "104.full").write_text("other section")
    return base


def test_collect_artifacts(tmp_path):
    base = make_results_dir(tmp_path)
    arts = collect_artifacts(base, "ext4_4k")
    assert set(arts) == {"generic/013", "generic/475", "generic/042"}
    assert set(arts["generic/013"]) == {"out.bad", "full"}
    assert arts["generic/475"]["dmesg"].name == "475.dmesg"
    assert arts["generic/042"] == {"notrun": base / "ext4_4k" / "generic" / "042.notrun"}
    assert collect_artifacts(base, "missing") == {}
    assert set(collect_artifacts(base / "xfs_4k", "")) == {"xfs/104"}


def test_attach_artifacts(tmp_path):
    base = make_results_dir(tmp_path)
    tests_dir = tmp_path / "tests"
    (tests_dir / "generic").mkdir(parents=True)
    (tests_dir / "generic" / "013.out").write_text("QA output created by 013\n")
    results = [TestResult("generic/013", "fail", 21.0, "- output mismatch", section="ext4_4k"),
               TestResult("generic/475", "fail", 93.0, "dmesg", dmesg="from xunit",
                          section="ext4_4k"),
               TestResult("generic/042", "notrun", 1.0, "", section="ext4_4k"),
               TestResult("generic/001", "pass", 5.0, section="ext4_4k")]
    attach_artifacts(results, collect_artifacts(base, "ext4_4k"), tests_dir=tests_dir, limit=1000)
    r013, r475, r042, r001 = results
    assert "+fsstress: check_cwd failure" in r013.output_diff
    assert r013.output_diff.startswith("---") and r013.full == "full log of 013\n"
    assert r475.dmesg == "from xunit"  # what the report carried wins
    assert r475.full.startswith("[... 4000 characters cut ...]") and r475.full.endswith("x" * 1000)
    assert r042.message == "Reflink not supported"
    assert (r001.output_diff, r001.dmesg, r001.full) == (None, None, None)
    # Without the expected output the raw .out.bad text is kept under a note.
    r = attach_artifacts([TestResult("generic/013", "fail", 1.0)],
                         collect_artifacts(base, "ext4_4k"))[0]
    assert r.output_diff.startswith("(expected output unavailable")
    assert "fsstress: check_cwd failure" in r.output_diff


# ---------------------------------------------------------------------------------------------
# Comparison


def tr(name: str, status: str) -> TestResult:
    return TestResult(name, status, 1.0, section="ext4_4k")


def test_compare_runs():
    base = [tr("generic/001", "pass"), tr("generic/002", "pass"), tr("generic/003", "fail"),
            tr("generic/004", "fail"), tr("generic/005", "notrun"), tr("generic/006", "pass"),
            tr("generic/007", "error"), tr("generic/008", "pass")]
    new = [tr("generic/001", "pass"), tr("generic/002", "fail"), tr("generic/003", "fail"),
           tr("generic/004", "pass"), tr("generic/005", "pass"), tr("generic/006", "notrun"),
           tr("generic/007", "fail"), tr("generic/009", "error"), tr("generic/010", "error")]
    new[-1] = tr("generic/008", "error")
    c = compare_runs(base, new)
    assert c.new_failures == ["generic/002", "generic/008"]
    assert c.shared_failures == ["generic/003", "generic/007"]
    assert c.fixed == ["generic/004"]
    assert [(x.test, x.base, x.new) for x in c.notrun_changes] == [
        ("generic/005", "notrun", "pass"), ("generic/006", "pass", "notrun")]
    assert c.only_new == ["generic/009"] and c.only_base == []
    assert c.regressed
    assert not compare_runs(base, base).regressed


def test_compare_runs_with_parsed_fixture():
    results = parse_xunit((FIXTURES / "synth-ext4_4k-result.xml").read_text())
    base = [TestResult(r.name, "pass" if r.status == "fail" else r.status, r.duration_s,
                       section=r.section) for r in results]
    c = compare_runs(base, results)
    assert c.new_failures == ["generic/013", "generic/475"] and not c.fixed
    assert compare_runs(results, base).fixed == ["generic/013", "generic/475"]


def test_compare_runs_refuses_mixed_sections():
    with pytest.raises(HarnessError):
        compare_runs([tr("generic/001", "pass"),
                      TestResult("generic/001", "pass", 1.0, section="xfs_4k")], [])


# -- real results captured from the harness's own runs (6.1.192 guest, xfstests 63a29724) ----------
CAPTURED = Path(__file__).resolve().parents[1] / "fixtures" / "xfstests"


def test_captured_pass_fail_notrun():
    (p,) = parse_xunit((CAPTURED / "captured-6.1.192-ext4_4k-generic-001-result.xml").read_text(), "ext4_4k")
    assert (p.name, p.status) == ("generic/001", "pass") and p.duration_s > 0
    (f,) = parse_xunit((CAPTURED / "captured-6.1.192-xfs_4k-selftest-002-result.xml").read_text(), "xfs_4k")
    assert (f.name, f.status) == ("selftest/002", "fail") and "output mismatch" in f.message
    (n,) = parse_xunit((CAPTURED / "captured-6.1.192-xfs_4k-selftest-004-result.xml").read_text(), "xfs_4k")
    assert (n.name, n.status) == ("selftest/004", "notrun") and "Always skip me" in n.message


def test_captured_check_log_and_time():
    runs = parse_check_log((CAPTURED / "captured-6.1.192-ext4_4k-check.log").read_text())
    assert runs and runs[-1].kernel and runs[-1].kernel.startswith("6.1.192")
    times = parse_check_time((CAPTURED / "captured-6.1.192-check.time").read_text())
    assert times.get("generic/001", 0) > 10
    assert watchdog_seconds("generic/001", times) >= 5 * times["generic/001"]
