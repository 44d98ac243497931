"""Kernel and image definitions: validation names the file and the key."""

from pathlib import Path

import pytest

from harness.config.images import list_images, load_image
from harness.config.kernels import list_kernels, load_kernel
from harness.errors import DefinitionError


def write(d: Path, name: str, text: str) -> Path:
    p = d / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return p


@pytest.fixture
def kdir(tmp_path):
    d = tmp_path / "kernels"
    d.mkdir()
    write(d, "src.tar.xz", "not really a tarball")
    write(d, "fragments/a.config", "CONFIG_XFS_FS=y\n")
    write(d, "patches/0001-x.patch", "From: a\nSubject: [PATCH] x\n\n---\ndiff --git a/x b/x\n")
    return d


def test_shipped_definitions_load():
    names = list_kernels()
    assert {"baseline", "patched"} <= set(names)
    patched = load_kernel("patched")
    assert patched.based_on == "baseline"
    assert patched.source == load_kernel("baseline").source
    assert [p.name for p in patched.patches] == ["0001-dio-unbound-single-threaded-wq.patch"]
    assert "debian-bookworm" in list_images()
    assert "fio" in load_image("debian-bookworm").packages
    assert "o2cb.service" in load_image("debian-bookworm-xfstests").mask_units  # unit names pass


def test_unknown_key_is_rejected_with_file_and_key(kdir):
    write(kdir, "k.yaml", "source: {tarball: src.tar.xz}\nconfig: {base: defconfig, fragmnets: []}\n")
    with pytest.raises(DefinitionError) as e:
        load_kernel("k", kdir)
    assert e.value.key == "config.fragmnets"
    assert str(kdir / "k.yaml") in str(e.value)
    assert "unknown key" in str(e.value)


def test_wrong_type_is_rejected(kdir):
    write(kdir, "k.yaml", "source: {tarball: src.tar.xz}\npatches: patches/0001-x.patch\n")
    with pytest.raises(DefinitionError) as e:
        load_kernel("k", kdir)
    assert e.value.key == "patches"
    assert "array" in e.value.message


def test_missing_file_is_rejected(kdir):
    write(kdir, "k.yaml", "source: {tarball: src.tar.xz}\nconfig: {fragments: [fragments/nope.config]}\n")
    with pytest.raises(DefinitionError) as e:
        load_kernel("k", kdir)
    assert e.value.key == "config.fragments[0]"
    assert "nope.config" in str(e.value)


def test_missing_tarball_names_setup(kdir):
    write(kdir, "k.yaml", "source: {tarball: /nonexistent/linux.tar.xz}\n")
    with pytest.raises(DefinitionError) as e:
        load_kernel("k", kdir)
    assert e.value.key == "source.tarball" and "scripts/setup" in str(e.value)


def test_two_source_forms_rejected(kdir):
    write(kdir, "k.yaml", "source: {tarball: src.tar.xz, tree: .}\n")
    with pytest.raises(DefinitionError) as e:
        load_kernel("k", kdir)
    assert e.value.key == "source"


def test_inheritance_and_cycle(kdir):
    write(kdir, "a.yaml", "source: {tarball: src.tar.xz}\nconfig: {fragments: [fragments/a.config]}\n")
    write(kdir, "b.yaml", "base: a\npatches: [patches]\n")
    b = load_kernel("b", kdir)
    assert b.based_on == "a" and len(b.fragments) == 1 and b.patches[0].name == "0001-x.patch"
    write(kdir, "c.yaml", "base: d\n")
    write(kdir, "d.yaml", "base: c\n")
    with pytest.raises(DefinitionError, match="cycle"):
        load_kernel("c", kdir)


def test_unknown_base(kdir):
    write(kdir, "b.yaml", "base: nothere\n")
    with pytest.raises(DefinitionError, match="no kernel definition named 'nothere'"):
        load_kernel("b", kdir)


def test_git_source_with_ref(kdir):
    write(kdir, "g.yaml", "source: {git: 'https://example.invalid/linux.git', ref: v6.1}\n")
    k = load_kernel("g", kdir)
    assert k.source.kind == "git" and k.source.ref == "v6.1"


def test_invalid_yaml_names_line(kdir):
    write(kdir, "k.yaml", "source: {tarball: [\n")
    with pytest.raises(DefinitionError, match="invalid YAML"):
        load_kernel("k", kdir)


def test_image_recipe_validation(tmp_path):
    write(tmp_path, "i.yaml", "suite: bookworm\npackages: [fio]\nsize: 4 GB\n")
    with pytest.raises(DefinitionError) as e:
        load_image("i", tmp_path)
    assert e.value.key == "size"
    write(tmp_path, "j.yaml", "suite: bookworm\npackages: [fio]\n")
    with pytest.raises(DefinitionError, match="openssh-server"):
        load_image("j", tmp_path)
    write(tmp_path, "k.yaml", "suite: bookworm\npackages: [fio]\nhostnam: x\n")
    with pytest.raises(DefinitionError) as e:
        load_image("k", tmp_path)
    assert e.value.key == "hostnam"


# Found by tests/unit/test_props_definitions.py: each raised something other than a HarnessError.
@pytest.mark.parametrize("text, key, message", [
    ("1: x\ndescription: y\n", "(top level)", "key 1 is not a string"),  # TypeError in sorted()
    ("source: {tarball: src.tar.xz}\nconfig: {null: x}\n", "config", "key None is not a string"),
    ("description: 2001-02-30\n", "", "day is out of range"),  # ValueError from PyYAML
    ("description: " + "9" * 5000 + "\n", "", "4300 digits"),  # ValueError from int()
    ("description: " + "[" * 3000 + "]" * 3000 + "\n", "", "nested too deeply"),  # RecursionError
])
def test_yaml_that_does_not_make_a_definition(kdir, text, key, message):
    write(kdir, "k.yaml", text)
    with pytest.raises(DefinitionError, match=message) as e:
        load_kernel("k", kdir)
    assert e.value.key == key and e.value.path == kdir / "k.yaml"


def test_non_utf8_and_unreadable_definitions(kdir):
    (kdir / "k.yaml").write_bytes(b"description: \xff\n")
    with pytest.raises(DefinitionError, match="not UTF-8"):
        load_kernel("k", kdir)
    (kdir / "d.yaml").mkdir()
    with pytest.raises(DefinitionError, match="cannot read"):
        load_kernel("d", kdir)


def test_image_sysctl_with_a_non_string_key(tmp_path):
    """sysctl: {1: "x"} passed the schema and raised TypeError in re.match()."""
    write(tmp_path, "i.yaml", "suite: bookworm\npackages: [fio]\nsysctl: {1: x}\n")
    with pytest.raises(DefinitionError, match="not a string") as e:
        load_image("i", tmp_path)
    assert e.value.key == "sysctl"


@pytest.mark.parametrize("value, message", [
    ("~nosuchuser-kharness/x", "cannot expand"),  # RuntimeError from expanduser()
    ('"a\\0b"', "embedded null byte"),  # ValueError
    ("a" * 5000, "not a usable path"),  # OSError: file name too long
    ("loop", "not a usable path"),  # RuntimeError: symlink loop
])
def test_unusable_paths_name_the_key(kdir, value, message):
    (kdir / "loop").symlink_to("loop")
    write(kdir, "k.yaml", f"source: {{tarball: src.tar.xz}}\npatches: [{value}]\n")
    with pytest.raises(DefinitionError, match=message) as e:
        load_kernel("k", kdir)
    assert e.value.key == "patches[0]"


def test_overlong_name_is_a_definition_error(kdir):
    """load_kernel("a" * 300) raised OSError (file name too long) from Path.exists()."""
    with pytest.raises(DefinitionError, match="at most 200"):
        load_kernel("a" * 300, kdir)
    write(kdir, "k.yaml", "base: " + "b" * 300 + "\n")
    with pytest.raises(DefinitionError, match="at most 200"):
        load_kernel("k", kdir)


def test_image_init_is_checked_and_keeps_systemd_keys(tmp_path):
    from harness.image.build import image_key
    base = ("suite: bookworm\n"
            "packages: [openssh-server, fio, xfsprogs, e2fsprogs, ocfs2-tools, util-linux, procps, python3]\n")
    write(tmp_path, "s.yaml", base)
    write(tmp_path, "f.yaml", base + "init: kharness\n")
    write(tmp_path, "b.yaml", base + "init: openrc\n")
    with pytest.raises(DefinitionError) as e:
        load_image("b", tmp_path)
    assert e.value.key == "init"
    s, f = load_image("s", tmp_path), load_image("f", tmp_path)
    assert s.init == "systemd" and "init" not in s.as_dict()   # systemd recipes keep their cache key
    assert f.init == "kharness" and image_key(s, "m") != image_key(f, "m")
