"""Build a guest image recipe into a cached qcow2 base, without root and without loop mounts.

mmdebstrap (in its unshare mode, as root or as an ordinary user) makes a tarball of the recipe's
Debian; :mod:`.assemble`, run as the owner of the image's files (:mod:`.userns`), turns it into an
ext4 image with the first-boot settings, SSH host keys and xfstests; qemu-img makes the qcow2.
Every boot uses a throwaway overlay on top (see harness.vm), so the base never changes.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import stat
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..config.images import ImageDef, load_image
from ..errors import CommandError, HarnessError
from ..paths import REPO_ROOT, cache_dir
from ..util import atomic_dir, file_lock, run, sha256_json, write_json
from ..vocab import NAME_RULE, valid_name
from . import userns, xfstests
from .assemble import KHARNESS_INIT
from .keys import generate_ed25519
from .mirror import apt_mirror

# 3: the guest's ed25519 host key is recorded (host_ed25519.pub); 4: mmdebstrap, /dev left to devtmpfs
BUILDER_VERSION = 4
BUILD_TIMEOUT_S = 5400     # the assemble step: unpack, xfstests build in a chroot, mkfs


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
    for tool in ("mmdebstrap", "tar", "mkfs.ext4", "qemu-img"):
        if shutil.which(tool) is None:
            raise HarnessError(f"{tool} is not installed; run scripts/setup")
    why = userns.problem()
    if why:
        raise userns.UsernsError(f"image {name!r}: building as an ordinary user needs a user namespace: {why}")
    with file_lock(entry.with_suffix(".lock")):
        if (entry / "metadata.json").exists() and not force:
            return Image(name, key, entry, cached=True)
        # a killed build's leftovers: files of the image, some owned by subordinate ids
        for stale in entry.parent.glob(f".{glob.escape(entry.name)}.tmp-*"):
            userns.remove_image_tree(stale)
        t0 = time.monotonic()
        with atomic_dir(entry) as out:
            try:
                _build_into(out, name, idef, key, mirror, xsrc, log)
            except BaseException:
                for d in ("mm", "root"):   # the user may own neither: the namespace removes them
                    userns.remove_image_tree(out / d)
                raise
            write_json(out / "metadata.json", {
                "name": name, "key": key, "recipe": idef.as_dict(), "mirror": mirror,
                "recipe_file": str(idef.path), "builder": BUILDER_VERSION,
                "host_key": (out / "host_ed25519.pub").read_text().strip(),
                "xfstests": {"origin": xsrc.origin, "ident": xsrc.ident} if xsrc else None,
                "built_by": "root" if userns.privileged() else "user",
                "durations_s": json.loads((out / "durations.json").read_text()) | {
                    "total": round(time.monotonic() - t0, 1)},
            })
    return Image(name, key, entry, cached=False)


def _build_into(out: Path, name: str, idef: ImageDef, key: str, mirror: str,
                xsrc: xfstests.XfstestsSource | None, log: Callable[[str], None] | None) -> None:
    """mmdebstrap, assemble, qemu-img: the image's files in ``out``."""
    t0 = time.monotonic()
    # Traversable but not listable while mmdebstrap's namespace root (a subordinate id for an
    # ordinary user) works in out/mm; every secret below is a 0600 file. 0700 again at the end.
    os.chmod(out, 0o711)
    blog, tar, mm = out / "build.log", out / "rootfs.tar", out / "mm"
    mm.mkdir(mode=0o755)
    os.chmod(mm, 0o755)
    if log:
        log(f"mmdebstrap {idef.suite} from {mirror} ({len(idef.packages)} packages)")
    try:
        # --mode=unshare also for root: its mounts live in a private mount namespace, so a
        # killed build leaves none behind on the host.
        run(["mmdebstrap", "--mode=unshare", f"--variant={idef.variant}",
             f"--include={','.join(idef.packages)}", "--", idef.suite, str(tar), mirror],
            timeout=3600, log=blog, env={"TMPDIR": str(mm)})
    except CommandError as e:
        raise HarnessError(f"mmdebstrap of image {name!r} failed; see {_keep(blog, name, key)}\n"
                           + "\n".join(e.output.splitlines()[-15:])) from None
    t_strap = time.monotonic()
    pub = generate_ed25519(out / "id_ed25519", comment=f"kharness-{name}-{key}")
    plan = out / "plan.json"
    write_json(plan, {"recipe": name, "out": str(out), "tar": str(tar), "log": str(blog),
                      "raw": str(out / "root.raw"), "host_key": str(out / "host_ed25519.pub"),
                      "pubkey": pub, "xfstests": {"origin": xsrc.origin, "ident": xsrc.ident,
                                                 "tree": str(xsrc.tree)} if xsrc else None})
    if log:
        log("assemble: settings, host keys" + (f", xfstests {xsrc.ident[:12]} (chroot)" if xsrc else "")
            + ", mkfs.ext4 -d (no loop mount)" + ("" if userns.privileged() else ", in a user namespace"))
    try:
        run(userns.as_image_root([sys.executable, "-m", "harness.image.assemble", str(plan)]),
            timeout=BUILD_TIMEOUT_S, log=blog, env={"PYTHONPATH": str(REPO_ROOT)})
    except CommandError as e:
        raise HarnessError(f"assembling image {name!r} failed; see {_keep(blog, name, key)}\n"
                           + "\n".join(e.output.splitlines()[-25:])) from None
    tar.unlink()
    plan.unlink()
    mm.rmdir()
    raw = out / "root.raw"
    run(["qemu-img", "convert", "-O", "qcow2", str(raw), str(out / "base.qcow2")], timeout=1800, log=blog)
    raw.unlink()
    make_private(out)
    os.chmod(out, 0o700)
    write_json(out / "durations.json", {"mmdebstrap": round(t_strap - t0, 1),
                                        "assemble": round(time.monotonic() - t_strap, 1)})


def _keep(blog: Path, name: str, key: str) -> Path:
    """Copy a failed build's log where it outlives the build directory."""
    kept = cache_dir("failed") / f"image-{name}-{key}.log"
    shutil.copy(blog, kept)
    return kept
