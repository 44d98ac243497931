"""Build a guest image recipe into a cached qcow2 base, without loop mounts.

debootstrap fills a directory, the harness writes the first-boot settings into it, and
``mkfs.ext4 -d`` turns the directory into a filesystem image, converted to qcow2. Every boot
uses a throwaway overlay on top (see harness.vm), so the base never changes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..config.images import ImageDef, load_image
from ..errors import CommandError, HarnessError
from ..paths import cache_dir
from ..util import atomic_dir, file_lock, remove_tree, run, sha256_json, write_json
from ..vocab import NAME_RULE, valid_name
from . import xfstests
from .keys import generate_ed25519
from .mirror import apt_mirror

KHARNESS_INIT = "/usr/local/sbin/kharness-init"
BUILDER_VERSION = 3   # 3: the guest's ed25519 host key is recorded (host_ed25519.pub)


@dataclass(frozen=True)
class Image:
    """A built base image and the SSH key that logs into it as root."""

    name: str
    key: str
    dir: Path
    cached: bool

    @property
    def qcow2(self) -> Path:
        return self.dir / "base.qcow2"

    @property
    def ssh_key(self) -> Path:
        return self.dir / "id_ed25519"

    @property
    def init(self) -> str:
        """The guest's PID 1 as the recipe built it: 'systemd' or 'kharness' (kharness-init)."""
        p = self.dir / "metadata.json"
        recipe = json.loads(p.read_text()).get("recipe", {}) if p.exists() else {}
        return recipe.get("init", "systemd")

    @property
    def cmdline(self) -> str:
        """What the kernel command line needs for this image's init."""
        return f"init={KHARNESS_INIT}" if self.init == "kharness" else ""

    @property
    def host_key(self) -> str | None:
        """The guest's ed25519 SSH host public key line, recorded at build time, to pin SSH
        against; None for an image built before host keys were recorded (builder < 3)."""
        p = self.dir / "host_ed25519.pub"
        return p.read_text().strip() if p.exists() else None


IMAGE_KEY = re.compile(r"^[0-9a-f]{20}$")   # what image_key returns
PRIVATE = ("base.qcow2", "id_ed25519")      # the guest's host private key and root's login; the client key


def image_key(idef: ImageDef, mirror: str, xfstests_ident: str | None = None) -> str:
    return sha256_json({"recipe": idef.as_dict(), "mirror": mirror, "builder": BUILDER_VERSION,
                        "xfstests": xfstests_ident})[:20]


def find_image(name: str, key: str) -> Image | None:
    """The built image of recipe ``name`` with ``key``, if it is still in the cache.

    Both come from specs made elsewhere: they are checked before any path is made of them
    (HarnessError), and the entry must resolve inside the cache's images/ directory."""
    if not valid_name(name):
        raise HarnessError(f"image recipe name {name!r}: use {NAME_RULE}")
    if not isinstance(key, str) or not IMAGE_KEY.match(key):
        raise HarnessError(f"image key {key!r}: want 20 lowercase hex digits")
    root = cache_dir("images")
    entry = root / f"{name}-{key}"
    if not entry.resolve().is_relative_to(root.resolve()):
        raise HarnessError(f"image cache entry {entry} resolves outside the cache ({entry.resolve()})")
    if not (entry / "metadata.json").exists():
        return None
    make_private(entry)
    return Image(name, key, entry, cached=True)


def make_private(entry: Path) -> None:
    """Make an image entry the user's alone: the directory 0700, base.qcow2 (the guest's host
    private key and root's authorized_keys are inside) and the client key 0600. Entries built
    before this are tightened when found; one owned by someone else is left as it is."""
    for p, mode in ((entry, 0o700), *((entry / f, 0o600) for f in PRIVATE)):
        try:
            if stat.S_IMODE(p.lstat().st_mode) & 0o077 and not p.is_symlink():
                os.chmod(p, mode)
        except (FileNotFoundError, PermissionError):
            pass


def _write(root: Path, rel: str, text: str, mode: int = 0o644) -> None:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    os.chmod(p, mode)


def configure_root(root: Path, idef: ImageDef, pubkey: str) -> None:
    """First-boot settings: fstab, hostname, SSH, serial getty, sysctl, masked units, init."""
    # This runs as root on the host: check before writing anything that every masked unit names a
    # file directly in the image's etc/systemd/system (load_image checks the names too).
    units_dir = root / "etc/systemd/system"
    units_dir.mkdir(parents=True, exist_ok=True)
    real_units_dir = units_dir.resolve()
    for i, unit in enumerate(idef.mask_units):
        link = units_dir / unit
        if (not unit or "/" in unit or unit in (".", "..")
                or not real_units_dir.is_relative_to(root.resolve())
                or link.parent.resolve() != real_units_dir):
            raise HarnessError(f"{idef.path}: mask_units[{i}]: refusing to mask {unit!r}: the link "
                               f"would not be inside the image's {units_dir}")
    _write(root, "etc/hostname", idef.hostname + "\n")
    _write(root, "etc/hosts", f"127.0.0.1 localhost\n127.0.1.1 {idef.hostname}\n")
    _write(root, "etc/fstab", "/dev/vda / ext4 rw,relatime 0 0\n")
    _write(root, "root/.ssh/authorized_keys", pubkey + "\n", 0o600)
    os.chmod(root / "root/.ssh", 0o700)
    _write(root, "etc/ssh/sshd_config.d/kharness.conf",
           "PermitRootLogin prohibit-password\nUseDNS no\nPasswordAuthentication no\n")
    sysctl = "".join(f"{k} = {v}\n" for k, v in idef.sysctl.items())
    _write(root, "etc/sysctl.d/99-kharness.conf", sysctl)
    # Serial console: autologin root on ttyS0 for interactive debugging.
    _write(root, "etc/systemd/system/serial-getty@ttyS0.service.d/autologin.conf",
           "[Service]\nExecStart=\nExecStart=-/sbin/agetty --autologin root --keep-baud "
           "115200,57600,38400,9600 %I $TERM\n")
    # Networking: the kernel configures eth0 by DHCP (ip=dhcp on the command line); DNS is not needed.
    _write(root, "etc/systemd/journald.conf.d/kharness.conf", "[Journal]\nStorage=volatile\n")
    for unit in idef.mask_units:
        link = units_dir / unit
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to("/dev/null")
    if idef.init == "kharness":
        init = Path(__file__).with_name("guest") / "kharness-init"
        _write(root, KHARNESS_INIT.lstrip("/"), init.read_text(), 0o755)
    (root / "etc/machine-id").write_text("")
    if not list((root / "etc/ssh").glob("ssh_host_*_key")):
        run(["chroot", str(root), "ssh-keygen", "-A"], timeout=120)


def build_image(name: str, *, force: bool = False, log: Callable[[str], None] | None = None) -> Image:
    """Build (or find in the cache) the image recipe ``name``."""
    idef = load_image(name)
    mirror = idef.mirror or apt_mirror(idef.suite)
    xsrc = None
    if idef.xfstests is not None:
        where = xfstests.configured_source(idef.xfstests.get("source"), idef.xfstests.get("ref"))
        if where is None:
            raise xfstests.XfstestsSourceError(f"image {name!r} builds xfstests but no source is "
                                               f"configured: {xfstests.HOW_TO}")
        xsrc = xfstests.resolve(*where)
    key = image_key(idef, mirror, xsrc.ident if xsrc else None)
    entry = cache_dir("images") / f"{name}-{key}"
    if (entry / "metadata.json").exists() and not force:
        return Image(name, key, entry, cached=True)
    for tool in ("debootstrap", "mkfs.ext4", "qemu-img"):
        if shutil.which(tool) is None:
            raise HarnessError(f"{tool} is not installed; run scripts/setup")
    with file_lock(entry.with_suffix(".lock")):
        if (entry / "metadata.json").exists() and not force:
            return Image(name, key, entry, cached=True)
        t0 = time.monotonic()
        with atomic_dir(entry) as out:
            os.chmod(out, 0o700)   # private before anything secret is written into it
            root = out / "root"
            blog = out / "build.log"
            if log:
                log(f"debootstrap {idef.suite} from {mirror} ({len(idef.packages)} packages)")
            debs = cache_dir("debootstrap-debs")
            try:
                run(["debootstrap", f"--variant={idef.variant}", f"--cache-dir={debs}",
                     f"--include={','.join(idef.packages)}", idef.suite, str(root), mirror],
                    timeout=3600, log=blog)
            except CommandError as e:
                kept = cache_dir("failed") / f"image-{name}-{key}.log"  # out/ is deleted on failure
                shutil.copy(blog, kept)
                raise HarnessError(f"debootstrap of image {name!r} failed; see {kept}\n"
                                   + "\n".join(e.output.splitlines()[-15:])) from None
            t_boot = time.monotonic()
            pub = generate_ed25519(out / "id_ed25519", comment=f"kharness-{name}-{key}")
            configure_root(root, idef, pub)
            # The guest's host keys are made here, once per image (ssh-keygen -A adds any missing
            # type); the ed25519 public key is kept beside the image so SSH can pin it.
            run(["chroot", str(root), "ssh-keygen", "-A"], timeout=120, log=blog)
            host_pub = root / "etc/ssh/ssh_host_ed25519_key.pub"
            if not host_pub.is_file():
                raise HarnessError(f"image {name!r}: ssh-keygen -A made no {host_pub}")
            host_key = host_pub.read_text().strip()
            (out / "host_ed25519.pub").write_text(host_key + "\n")
            if xsrc is not None:
                if log:
                    log(f"building xfstests {xsrc.ident[:12]} from {xsrc.origin} in the image root (chroot)")
                xfstests.build_in_root(root, xsrc, out / "xfstests-build.log")
            for d in ("var/cache/apt/archives", "var/lib/apt/lists"):
                for f in (root / d).glob("*"):
                    if f.is_file():
                        f.unlink()
            if log:
                log("mkfs.ext4 -d (no loop mount) and qemu-img convert")
            raw = out / "root.raw"
            run(["mkfs.ext4", "-q", "-F", "-L", "kharness-root", "-E", "root_owner=0:0",
                 "-d", str(root), str(raw), idef.size], timeout=1800, log=blog)
            run(["qemu-img", "convert", "-O", "qcow2", str(raw), str(out / "base.qcow2")],
                timeout=1800, log=blog)
            make_private(out)
            raw.unlink()
            remove_tree(root)  # never into a mount debootstrap might have left in it
            write_json(out / "metadata.json", {
                "name": name, "key": key, "recipe": idef.as_dict(), "mirror": mirror,
                "recipe_file": str(idef.path), "builder": BUILDER_VERSION, "host_key": host_key,
                "xfstests": {"origin": xsrc.origin, "ident": xsrc.ident} if xsrc else None,
                "durations_s": {"debootstrap": round(t_boot - t0, 1),
                                "total": round(time.monotonic() - t0, 1)},
            })
    return Image(name, key, entry, cached=False)
