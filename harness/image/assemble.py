"""Assemble an image's root filesystem from mmdebstrap's tarball, as the owner of its files.

Run as ``python -m harness.image.assemble PLAN.json`` by :func:`harness.image.build.build_image`,
directly as root or, for an ordinary user, as root of a user namespace (:mod:`.userns`): unpack
the tarball, write the first-boot settings, make the guest's SSH host keys, build xfstests in a
chroot when the recipe asks, and turn the tree into an ext4 image with ``mkfs.ext4 -d`` (no loop
mount). The tree is deleted here too, since outside the namespace the user may not own its files.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from ..config.images import ImageDef, load_image
from ..errors import HarnessError
from ..fstree import remove_tree
from ..util import run
from . import xfstests

KHARNESS_INIT = "/usr/local/sbin/kharness-init"


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


DEVICES = ("null", "zero", "full", "random", "urandom")


@contextlib.contextmanager
def devices(root: Path, log: Path) -> Iterator[None]:
    """The host's /dev/null, zero, full, random and urandom bound into ``root/dev`` while the
    block runs (programs run in the chroot need them; mknod is not allowed in a user namespace).
    The caller is in a private mount namespace (``userns.as_image_root``), so nothing outlives it."""
    made: list[Path] = []
    try:
        for name in DEVICES:
            node = root / "dev" / name
            node.parent.mkdir(exist_ok=True)
            if node.is_symlink() or node.exists():
                raise HarnessError(f"{node} exists in the unpacked tarball; expected an empty /dev")
            node.touch()
            made.append(node)
            run(["mount", "--bind", f"/dev/{name}", str(node)], timeout=30, log=log)
        yield
    finally:
        for node in reversed(made):
            run(["umount", str(node)], timeout=30, log=log, check=False)
            node.unlink(missing_ok=True)


def assemble(plan: dict) -> None:
    """Build ``plan["raw"]`` from ``plan["tar"]``; write the guest's ed25519 host public key to
    ``plan["host_key"]``. The unpacked tree is removed whatever happens."""
    out = Path(plan["out"])
    root, log = out / "root", Path(plan["log"])
    idef = load_image(plan["recipe"])
    root.mkdir()
    try:
        # /dev stays empty: mknod is not allowed in a user namespace, and the kernel mounts
        # devtmpfs on /dev before init (CONFIG_DEVTMPFS_MOUNT, kernels/fragments/harness.config).
        run(["tar", "-xf", plan["tar"], "-C", str(root), "--numeric-owner", "--same-owner",
             "--same-permissions", "--exclude=./dev/*"], timeout=900, log=log)
        configure_root(root, idef, plan["pubkey"])
        with devices(root, log):
            # the guest's host keys, once per image; the ed25519 public key is kept beside the image
            run(["chroot", str(root), "ssh-keygen", "-A"], timeout=120, log=log)
            host_pub = root / "etc/ssh/ssh_host_ed25519_key.pub"
            if not host_pub.is_file():
                raise HarnessError(f"image {idef.name!r}: ssh-keygen -A made no {host_pub}")
            Path(plan["host_key"]).write_text(host_pub.read_text().strip() + "\n")
            if plan.get("xfstests"):
                x = plan["xfstests"]
                xfstests.build_in_root(root, xfstests.XfstestsSource(x["origin"], x["ident"], Path(x["tree"])),
                                       out / "xfstests-build.log")
        run(["mkfs.ext4", "-q", "-F", "-L", "kharness-root", "-E", "root_owner=0:0",
             "-d", str(root), plan["raw"], idef.size], timeout=1800, log=log)
    finally:
        remove_tree(root)


def main(argv: list[str]) -> int:
    """Entry point: ``assemble PLAN.json``; a HarnessError is one line on stderr and exit 1."""
    try:
        assemble(json.loads(Path(argv[0]).read_text()))
    except HarnessError as e:
        print(f"kharness image assemble: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
