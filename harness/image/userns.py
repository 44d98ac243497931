"""Root inside a user namespace: how an ordinary user owns an image's files as root.

An image's root filesystem holds files owned by root and by system users (``_apt``, ``sshd``...).
Root makes them directly. An ordinary user makes them as root of a user namespace of its own
(``unshare --map-root-user --map-auto``: uid 0 inside is the user, uids 1..65535 are the user's
subordinate ids from /etc/subuid, set up by ``newuidmap`` from Debian's ``uidmap`` package),
the way mmdebstrap's unshare mode does. Everything that writes, chroots into or deletes an image
tree runs through :func:`as_image_root`.
"""

from __future__ import annotations

import os
import pwd
import shutil
from pathlib import Path

from ..errors import HarnessError
from ..fstree import remove_tree
from ..util import run

SUBID_FILES = (Path("/etc/subuid"), Path("/etc/subgid"))


class UsernsError(HarnessError):
    """An ordinary user cannot become root of a user namespace here; says what is missing."""


def privileged() -> bool:
    """True when the harness runs as root (no namespace needed)."""
    return os.geteuid() == 0


def _user() -> str:
    return pwd.getpwuid(os.geteuid()).pw_name


def _has_range(path: Path, user: str, uid: int) -> bool:
    """Does ``path`` (subuid/subgid format ``name:start:count``) give ``user`` 65535 ids or more?"""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return False
    for line in lines:
        parts = line.strip().split(":")
        if len(parts) == 3 and parts[0] in (user, str(uid)) and parts[2].isdigit() and int(parts[2]) >= 65535:
            return True
    return False


def problem() -> str | None:
    """Why this user cannot build images here, or None when it can."""
    if privileged():
        return None
    missing = [t for t in ("unshare", "newuidmap", "newgidmap") if shutil.which(t) is None]
    if missing:
        return f"{', '.join(missing)} not found: install util-linux and uidmap (scripts/setup does)"
    user = _user()
    for f in SUBID_FILES:
        if not _has_range(f, user, os.geteuid()):
            return (f"no range of 65536 subordinate ids for user {user!r} in {f} (useradd makes one; "
                    f"or: usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {user})")
    return None


def as_image_root(argv: list[str]) -> list[str]:
    """``argv`` run as the owner of image files, in a private mount namespace (what it mounts
    goes when it ends, however it ends): for an ordinary user also in a user namespace where the
    user is root and its subordinate ids are the image's system users."""
    if privileged():
        return ["unshare", "--mount", "--", *argv]
    why = problem()
    if why:
        raise UsernsError(f"building an image as an ordinary user needs a user namespace: {why}")
    return ["unshare", "--map-root-user", "--map-auto", "--mount", "--", *argv]


def remove_image_tree(path: Path, timeout: float = 600) -> None:
    """Delete a tree of image files, some owned by subordinate ids the user can only remove
    from inside its namespace."""
    if not path.exists() and not path.is_symlink():
        return
    if privileged() or problem():
        remove_tree(path)
        return
    run(as_image_root(["rm", "-rf", "--one-file-system", "--", str(path)]), timeout=timeout, check=False)
    if path.exists():
        remove_tree(path)
