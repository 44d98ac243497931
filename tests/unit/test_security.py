"""Containment of what definitions and sources can reach on the host.

Definitions are data: kernel and image names, patch and fragment paths, masked units and git refs
must not reach outside the project, the image root or git's option parser.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from harness.config.images import ImageDef, load_image
from harness.config.kernels import Source, load_kernel
from harness.errors import DefinitionError, HarnessError, SourceError
from harness.image.build import configure_root
from harness.kernel.git import rev_parse
from harness.kernel.source import import_source, tarball_digest

IMAGE = """suite: bookworm
packages: [openssh-server, fio, xfsprogs, e2fsprogs, ocfs2-tools, util-linux, procps, python3]
"""


def write(p: Path, text: str) -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return p


@pytest.fixture
def proj(tmp_path, monkeypatch):
    """A project root tmp_path/proj with kernels/ (a tarball source, a fragment, a patch) and
    vm-images/; tmp_path/outside.patch lies outside it."""
    root = tmp_path / "proj"
    monkeypatch.setenv("KHARNESS_ROOT", str(root))
    write(root / "kernels/src.tar.xz", "not really a tarball")
    write(root / "kernels/fragments/a.config", "CONFIG_XFS_FS=y\n")
    write(root / "kernels/patches/0001-x.patch", "Subject: [PATCH] x\n")
    write(root / "kernels/k.yaml", "source: {tarball: src.tar.xz}\n")
    write(root / "vm-images/i.yaml", IMAGE)
    write(tmp_path / "outside.patch", "Subject: [PATCH] not ours\n")
    return root


# --- 1. definition names ---------------------------------------------------------------------

@pytest.mark.parametrize("name", ["sub/inner", "../kernels/k", "ABS", ".hidden", "-k", "k..x", ""])
def test_kernel_names_are_validated(proj, tmp_path, name):
    write(proj / "kernels/sub/inner.yaml", "source: {tarball: ../src.tar.xz}\n")
    write(tmp_path / "abs/x.yaml", f"source: {{tarball: {proj}/kernels/src.tar.xz}}\n")
    if name == "ABS":
        name = str(tmp_path / "abs/x")  # an absolute name: d / "/abs/x.yaml" is "/abs/x.yaml"
    with pytest.raises(DefinitionError, match="invalid kernel name") as e:
        load_kernel(name)
    assert str(proj / "kernels") in str(e.value)
    assert load_kernel("k").name == "k"


def test_kernel_base_is_validated(proj):
    write(proj / "kernels/sub/inner.yaml", "source: {tarball: ../src.tar.xz}\n")
    write(proj / "kernels/b.yaml", "base: sub/inner\n")
    with pytest.raises(DefinitionError) as e:
        load_kernel("b")
    assert e.value.key == "base" and e.value.path == proj / "kernels/b.yaml"
    assert "invalid kernel name 'sub/inner'" in str(e.value)
    write(proj / "kernels/c.yaml", "base: /etc/passwd\n")
    with pytest.raises(DefinitionError) as e:
        load_kernel("c")
    assert e.value.key == "base"


def test_image_names_are_validated(proj, tmp_path):
    write(proj / "vm-images/sub/i.yaml", IMAGE)
    write(tmp_path / "abs/i.yaml", IMAGE)
    for name in ("sub/i", "../vm-images/i", str(tmp_path / "abs/i")):
        with pytest.raises(DefinitionError, match="invalid image recipe name"):
            load_image(name)
    assert load_image("i").name == "i"


# --- 2. patch and fragment paths stay inside the project ---------------------------------------

@pytest.mark.parametrize("key,yaml", [
    ("patches[0]", "patches: [../../outside.patch]"),
    ("patches[1]", "patches: [patches/0001-x.patch, '{outside}']"),
    ("config.fragments[0]", "config: {fragments: [/etc/passwd]}"),
    ("config.fragments[0]", "config: {fragments: [../../../../../../../../../../etc/passwd]}"),
])
def test_patch_and_fragment_paths_stay_in_the_project(proj, tmp_path, key, yaml):
    yaml = yaml.replace("{outside}", str(tmp_path / "outside.patch"))
    write(proj / "kernels/e.yaml", "source: {tarball: src.tar.xz}\n" + yaml + "\n")
    with pytest.raises(DefinitionError) as e:
        load_kernel("e")
    assert e.value.key == key and e.value.path == proj / "kernels/e.yaml"
    assert "outside the project" in e.value.message


def test_symlinked_patches_are_resolved_before_the_check(proj, tmp_path):
    (proj / "kernels/patches/0002-evil.patch").symlink_to(tmp_path / "outside.patch")
    write(proj / "kernels/d.yaml", "source: {tarball: src.tar.xz}\npatches: [patches]\n")
    with pytest.raises(DefinitionError) as e:
        load_kernel("d")
    assert e.value.key == "patches[0]" and "0002-evil.patch" in e.value.message
    write(proj / "kernels/f.yaml", "source: {tarball: src.tar.xz}\npatches: [patches/0002-evil.patch]\n")
    with pytest.raises(DefinitionError, match="outside the project"):
        load_kernel("f")
    (proj / "kernels/patches/0002-evil.patch").unlink()
    (proj / "kernels/patches/0003-ok.patch").symlink_to(proj / "kernels/patches/0001-x.patch")
    assert [p.name for p in load_kernel("d").patches] == ["0001-x.patch", "0003-ok.patch"]


def test_sources_outside_the_project_are_still_allowed(proj, tmp_path):
    tarball = write(tmp_path / "usr-src/linux.tar.xz", "x")
    write(proj / "kernels/s.yaml", f"source: {{tarball: {tarball}}}\n"
          "config: {fragments: [fragments/a.config]}\npatches: [patches/0001-x.patch]\n")
    k = load_kernel("s")
    assert k.source.location == str(tarball) and len(k.patches) == len(k.fragments) == 1


# --- 3. masked units stay in the image root -----------------------------------------------------

@pytest.mark.parametrize("unit", ["../../../../victim", "/etc/passwd", "sub/foo.service",
                                  "foo", "foo.service/", ""])
def test_mask_units_are_validated_at_load(proj, unit):
    write(proj / "vm-images/m.yaml", IMAGE + f"mask_units: [ok.timer, {json.dumps(unit)}]\n")
    with pytest.raises(DefinitionError) as e:
        load_image("m")
    assert e.value.key == "mask_units[1]"


def test_mask_units_accepts_unit_names(proj):
    units = ["o2cb.service", "getty@tty1.service", "ssh.socket", "man-db.timer", "dev-vdb.mount",
             "system-systemd\\x2dfsck.slice.target"]
    write(proj / "vm-images/m.yaml", IMAGE + f"mask_units: {json.dumps(units[:5])}\n")
    assert load_image("m").mask_units == tuple(units[:5])


def _idef(mask_units: tuple[str, ...], init: str = "systemd") -> ImageDef:
    return ImageDef(name="t", path=Path("/recipes/t.yaml"), description="", suite="bookworm",
                    variant="minbase", mirror=None, packages=("fio",), size="4G", hostname="h",
                    sysctl={}, mask_units=mask_units, init=init)


def _root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    write(root / "etc/ssh/ssh_host_ed25519_key", "key")  # no ssh-keygen in a chroot
    return root


@pytest.mark.parametrize("unit", ["../../../../victim", "VICTIM_ABS"])
def test_configure_root_refuses_links_outside_the_root(tmp_path, unit):
    victim = write(tmp_path / "victim", "host file\n")
    root = _root(tmp_path)
    unit = str(victim) if unit == "VICTIM_ABS" else unit
    with pytest.raises(HarnessError, match="mask_units"):
        configure_root(root, _idef(("ok.service", unit)), "ssh-ed25519 AAAA test")
    assert not victim.is_symlink() and victim.read_text() == "host file\n"


def test_configure_root_refuses_a_symlinked_unit_dir(tmp_path):
    root = _root(tmp_path)
    host = tmp_path / "host-systemd"
    host.mkdir()
    (root / "etc/systemd").mkdir(parents=True)
    (root / "etc/systemd/system").symlink_to(host)
    with pytest.raises(HarnessError, match="mask_units"):
        configure_root(root, _idef(("foo.service",)), "ssh-ed25519 AAAA test")
    assert list(host.iterdir()) == []  # refused before anything was written through the link


def test_configure_root_masks_units(tmp_path):
    root = _root(tmp_path)
    configure_root(root, _idef(("foo.service", "bar.timer")), "ssh-ed25519 AAAA test")
    for unit in ("foo.service", "bar.timer"):
        assert (root / "etc/systemd/system" / unit).readlink() == Path("/dev/null")
    assert not (root / "usr/local/sbin/kharness-init").exists()


def test_configure_root_installs_kharness_init(tmp_path):
    import os
    import subprocess
    root = _root(tmp_path)
    configure_root(root, _idef((), init="kharness"), "ssh-ed25519 AAAA test")
    init = root / "usr/local/sbin/kharness-init"
    assert os.access(init, os.X_OK) and init.read_text().rstrip().endswith("exec /usr/sbin/sshd -D")
    subprocess.run(["sh", "-n", str(init)], check=True)  # parses as a shell script


# --- 4. git refs and URLs are not options -----------------------------------------------------

@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KHARNESS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def upstream(tmp_path):
    repo = tmp_path / "upstream"
    repo.mkdir()
    for argv in (["init", "-q", "-b", "main"],
                 ["-c", "user.name=d", "-c", "user.email=d@x", "commit", "-q", "--allow-empty", "-m", "x"]):
        subprocess.run(["git", "-C", str(repo), *argv], check=True)
    return repo


def test_git_ref_is_not_an_option(tmp_path, cache, upstream):
    marker = tmp_path / "pwned"
    with pytest.raises(SourceError) as e:
        import_source(Source("git", str(upstream), f"--upload-pack=touch {marker};"))
    assert not marker.exists()
    assert "--upload-pack" in str(e.value) and "ref" in str(e.value)
    assert rev_parse(upstream, "--all") is None  # rev_parse takes no options either
    # ordinary refs still work
    assert len(import_source(Source("git", str(upstream), "main")).commit) == 40


def test_git_url_is_not_an_option(tmp_path, cache):
    marker = tmp_path / "pwned"
    with pytest.raises(SourceError):
        import_source(Source("git", f"--upload-pack=touch {marker};", "HEAD"))
    assert not marker.exists()


@pytest.mark.parametrize("key,source", [
    ("source.ref", "{git: 'https://example.invalid/linux.git', ref: '--upload-pack=touch /tmp/x;'}"),
    ("source.git", "{git: '--upload-pack=touch /tmp/x;://h/r', ref: main}"),
])
def test_definition_rejects_option_like_git_fields(proj, key, source):
    write(proj / "kernels/g.yaml", f"source: {source}\n")
    with pytest.raises(DefinitionError) as e:
        load_kernel("g")
    assert e.value.key == key and "-" in e.value.message


# --- 5. a truncated digest memo is not fatal ----------------------------------------------------

def test_truncated_tarball_digest_memo_is_rebuilt(tmp_path, cache):
    tarball = write(tmp_path / "linux.tar.xz", "tarball bytes")
    memo = write(cache / "src/tarball-digests.json", '{"/x:1:2": "abc')
    digest = tarball_digest(tarball)
    assert digest == hashlib.sha256(b"tarball bytes").hexdigest()
    table = json.loads(memo.read_text())
    assert list(table.values()) == [digest]
    assert sorted(p.name for p in memo.parent.iterdir()) == ["tarball-digests.json",
                                                             "tarball-digests.lock"]
    memo.write_text("[1, 2]")  # valid JSON of the wrong shape: also treated as empty
    assert tarball_digest(tarball) == digest
