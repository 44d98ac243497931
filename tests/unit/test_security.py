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
from harness.image.assemble import configure_root
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


# --- 6. cache lookups stay in the cache (kharness issue 21) -------------------------------------

def test_find_image_checks_names_before_joining(tmp_path, cache):
    from harness.image.build import find_image
    evil = write(tmp_path / "x/evil-0123456789abcdef0123/metadata.json", "{}")  # outside the cache
    key = "0123456789abcdef0123"
    for recipe, k in ((str(tmp_path / "x/evil"), key), ("../../x/evil", key), ("debian", "../x"),
                      ("debian", "ABCDEF0123456789ABCD"), ("debian", "0123"), ("debian", "")):
        with pytest.raises(HarnessError, match="image"):
            find_image(recipe, k)
    assert evil.exists()
    assert find_image("debian", key) is None  # a valid name that is not cached


def test_find_image_refuses_an_entry_that_resolves_outside_the_cache(tmp_path, cache):
    from harness.image.build import find_image
    from harness.paths import cache_dir
    key = "0123456789abcdef0123"
    write(tmp_path / "elsewhere/metadata.json", "{}")
    (cache_dir("images") / f"debian-{key}").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(HarnessError, match="outside"):
        find_image("debian", key)


def test_find_kernel_checks_the_key_and_name(tmp_path, cache):
    from harness.kernel.build import find_kernel
    from harness.paths import cache_dir
    write(tmp_path / "k/metadata.json", "{}")
    for key, name in (("../../k", ""), (str(tmp_path / "k"), ""), ("0" * 23, ""), ("0" * 24, "../x")):
        with pytest.raises(HarnessError, match="kernel"):
            find_kernel(key, name)
    assert find_kernel("0" * 24, "baseline") is None
    write(cache_dir("kernels") / ("1" * 24) / "metadata.json", "{}")
    assert find_kernel("1" * 24, "baseline").dir == cache_dir("kernels") / ("1" * 24)
    (cache_dir("kernels") / ("2" * 24)).symlink_to(tmp_path / "k")
    with pytest.raises(HarnessError, match="outside"):
        find_kernel("2" * 24)


# --- 7. keys and the base image are private -------------------------------------------------------

def _mode(p: Path) -> int:
    import stat
    return stat.S_IMODE(p.stat().st_mode)


def test_generated_private_key_is_0600_even_over_an_open_file(tmp_path):
    import os

    from harness.image.keys import generate_ed25519
    key = tmp_path / "id_ed25519"
    key.write_text("old")
    os.chmod(key, 0o644)
    old = os.umask(0)
    try:
        generate_ed25519(key)
    finally:
        os.umask(old)
    assert _mode(key) == 0o600 and key.read_text().startswith("-----BEGIN OPENSSH PRIVATE KEY-----")


def test_image_entries_are_private(tmp_path, cache):
    """base.qcow2 holds the guest's host private key and root's authorized_keys: an entry is 0700,
    base.qcow2 and the client key 0600; an entry made before this is tightened when found."""
    import os

    from harness.image.build import find_image, make_private
    from harness.paths import cache_dir
    key = "0123456789abcdef0123"
    entry = cache_dir("images") / f"debian-{key}"
    for name in ("metadata.json", "base.qcow2", "id_ed25519", "id_ed25519.pub", "host_ed25519.pub"):
        write(entry / name, "x")
        os.chmod(entry / name, 0o644)
    os.chmod(entry, 0o755)
    make_private(entry)
    assert _mode(entry) == 0o700 and _mode(entry / "base.qcow2") == 0o600 and _mode(entry / "id_ed25519") == 0o600
    os.chmod(entry, 0o755)
    os.chmod(entry / "base.qcow2", 0o644)
    assert find_image("debian", key).qcow2 == entry / "base.qcow2"
    assert _mode(entry) == 0o700 and _mode(entry / "base.qcow2") == 0o600


# --- 8. the user's ssh configuration is not read ---------------------------------------------------

def test_interactive_ssh_reads_no_user_config(tmp_path):
    from harness.vm.ssh import ssh_argv
    argv = ssh_argv(2222, tmp_path / "id_ed25519", known_hosts=tmp_path / "known_hosts")
    assert argv[:3] == ["ssh", "-F", "/dev/null"] and argv[-1] == "root@127.0.0.1"
    opts = {argv[i + 1] for i, a in enumerate(argv) if a == "-o"}
    assert {"IdentitiesOnly=yes", "ForwardAgent=no", "ForwardX11=no", "ClearAllForwardings=yes",
            "StrictHostKeyChecking=yes", f"UserKnownHostsFile={tmp_path / 'known_hosts'}",
            "PasswordAuthentication=no"} <= opts
    assert "-a" in argv and "-x" in argv and argv[argv.index("-i") + 1] == str(tmp_path / "id_ed25519")
    unpinned = ssh_argv(2222, tmp_path / "k")
    assert "UserKnownHostsFile=/dev/null" in unpinned and unpinned[:3] == ["ssh", "-F", "/dev/null"]


def test_vm_boot_shell_uses_the_isolated_ssh_argv(tmp_path, monkeypatch):
    """`kharness vm boot` without a command: the argv handed to the terminal is ssh_argv's."""
    import argparse
    import contextlib

    import harness.results.rundir as rundir
    import harness.run.boot as boot
    import harness.run.plan as plan
    import harness.run.testbed as testbed
    from harness import procs
    from harness.cli import vm as cli_vm
    from harness.image.build import Image

    class Bed:
        def __init__(self, *a, **kw):
            pass

        def prepare(self):
            return self

    class FakeVM:
        boot_seconds, port, console = 1.0, 2345, tmp_path / "console.log"
        cfg = type("C", (), {"image": Image("i", "k", tmp_path / "img", True)})()

    seen = {}
    monkeypatch.setattr(testbed, "Testbed", Bed)
    monkeypatch.setattr(plan, "command_spec", lambda *a, **kw: type("S", (), {"label": "vm-x"})())
    monkeypatch.setattr(rundir, "new_run_dir", lambda root, label: tmp_path)
    monkeypatch.setattr(boot, "open_vm", lambda spec, d: contextlib.nullcontext(FakeVM()))
    monkeypatch.setattr(procs, "interactive", lambda argv: seen.setdefault("argv", argv) and 0)
    args = argparse.Namespace(command=[], disk=[], kernel="baseline", image="debian-bookworm", accel=None,
                              timeout=600.0, memory=2048, cpus=2, results_dir=str(tmp_path))
    cli_vm._vm_boot(args)
    argv = seen["argv"]
    assert argv[:3] == ["ssh", "-F", "/dev/null"] and "IdentitiesOnly=yes" in argv and "-p" in argv
    assert argv[argv.index("-p") + 1] == "2345"


# --- 9. QEMU options: the guest network is restricted, pasted paths are escaped -------------------

def _qemu_argv(run: Path, disks=("nvme:1G",)):
    from harness.image.build import Image
    from harness.vm.accel import Accel
    from harness.vm.disks import parse_disk
    from harness.vm.machine import VMConfig, qemu_argv
    cfg = VMConfig(kernel=run / "bzImage", image=Image("i", "k", run / "img", True), accel=Accel("tcg", "t"),
                   run_dir=run, disks=[parse_disk(d, i) for i, d in enumerate(disks)])
    return qemu_argv(cfg, run / "ov.qcow2", [run / f"s{i}.raw" for i in range(len(disks))], 2222,
                     run / "qmp.sock", run / "console.log")


def test_user_network_is_restricted_to_the_ssh_forward():
    a = _qemu_argv(Path("/run"))
    (netdev,) = [a[i + 1] for i, x in enumerate(a) if x == "-netdev"]
    assert netdev.split(",") == ["user", "id=net0", "restrict=on", "hostfwd=tcp:127.0.0.1:2222-:22"]


def test_paths_with_commas_are_escaped_in_every_qemu_option():
    run = Path("/res,ults/r,id=x,format=qcow2")
    a = _qemu_argv(run)
    esc = str(run).replace(",", ",,")
    assert f"file,id=con0,path={esc}/console.log" in a
    assert f"unix:{esc}/qmp.sock,server=on,wait=off" in a
    drives = [a[i + 1] for i, x in enumerate(a) if x == "-drive"]
    assert drives[0].startswith(f"file={esc}/ov.qcow2,if=none,id=root,")
    assert drives[1].startswith(f"file={esc}/s0.raw,if=none,id=scratch0,")
    for i, flag in enumerate(a):   # as QEMU splits them, each option names the whole path once
        if flag in ("-drive", "-chardev", "-qmp"):
            parts = _qemu_opts(a[i + 1])
            keys = [p.partition("=")[0] for p in parts]
            assert len(keys) == len(set(keys)) and any(p.endswith(str(run) + "/" + p.rpartition("/")[2])
                                                       for p in parts), parts


def _qemu_opts(text: str) -> list[str]:
    """QemuOpts splitting: ',' separates, ',,' is a literal comma."""
    parts, cur, i = [], "", 0
    while i < len(text):
        if text[i] == ",":
            if text[i + 1:i + 2] == ",":
                cur, i = cur + ",", i + 2
                continue
            parts.append(cur)
            cur = ""
        else:
            cur += text[i]
        i += 1
    return parts + [cur]


def test_qemu_option_escaping_helper():
    from harness.vm.qemu_opts import qemu_path
    assert qemu_path(Path("/a,b/c,,d")) == "/a,,b/c,,,,d"
    assert qemu_path(Path("rel/x")).startswith("/")   # never a relative name QEMU could read as a protocol
