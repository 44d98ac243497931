"""fstests sections (harness.config.fstests) and local.config rendering, kernel-version
conditions, expunges and check argv (harness.workloads.xfstests_config).

Rendered configs are read back the way fstests' common/config does (``config_sections``).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness.config.fstests import (
    ExpungeEntry,
    Section,
    configs_dir,
    get_section,
    load_sections,
    parse_version_condition,
)
from harness.errors import DefinitionError, HarnessError
from harness.workloads.xfstests_config import (
    DiskMap,
    check_argv,
    expunge_file_text,
    expunged,
    kernel_version,
    render_local_config,
    version_matches,
)


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


def test_get_section():
    assert get_section("ext4_1k").mkfs_options == "-b 1024"
    with pytest.raises(DefinitionError) as e:
        get_section("no_such_section")
    assert e.value.path == configs_dir() and e.value.key == "no_such_section"
    assert "unknown section (known: " in e.value.message and "ext4_4k" in e.value.message


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
