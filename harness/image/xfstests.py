"""xfstests source acquisition and the chroot build at image-build time.

The source is a git URL (plus ref), a local checkout or git directory, or a tarball, given by
``$KHARNESS_XFSTESTS`` (and ``$KHARNESS_XFSTESTS_REF``) or the image recipe's ``xfstests.source``.
It is fetched into the cache once per source and identified by its commit (git) or sha256
(tarball), which becomes part of the image's cache key. No xfstests code lives in this repo.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..errors import CommandError, HarnessError
from ..paths import cache_dir
from ..util import atomic_dir, file_lock, run, sha256_file, sha256_json

DEFAULT_URL = "https://git.kernel.org/pub/scm/fs/xfs/xfstests-dev.git"
HOW_TO = ("set KHARNESS_XFSTESTS to an xfstests git URL, a local checkout or git directory, or a "
          "tarball (optionally KHARNESS_XFSTESTS_REF to a branch, tag or commit), or set "
          "xfstests.source in the image recipe")


class XfstestsSourceError(HarnessError):
    """No usable xfstests source; the message says how to provide one."""


@dataclass(frozen=True)
class XfstestsSource:
    """A resolved xfstests source tree in the cache."""

    origin: str
    ident: str      # commit or sha256: part of the image key
    tree: Path


def configured_source(recipe_source: str | None, recipe_ref: str | None) -> tuple[str, str | None] | None:
    """(location, ref) from the environment or the recipe, or None when none is configured."""
    loc = os.environ.get("KHARNESS_XFSTESTS") or recipe_source
    if not loc:
        return None
    return loc, os.environ.get("KHARNESS_XFSTESTS_REF") or recipe_ref


_REF_BAD_CHARS = re.compile(r"[\x00-\x20\x7f]")   # whitespace and control characters


def check_ref(ref: str) -> str:
    """``ref`` if git can only read it as a revision (a branch, tag or commit); else
    XfstestsSourceError. Refused: a leading '-' (git would take it as an option), whitespace or
    control characters, and '..' (a range, or a path out of refs/)."""
    if not ref or ref.startswith("-") or ".." in ref or _REF_BAD_CHARS.search(ref):
        raise XfstestsSourceError(f"xfstests ref {ref!r} is not a usable branch, tag or commit "
                                  "(no leading '-', whitespace, control characters or '..')")
    return ref


def _is_git(path: Path) -> bool:
    return (path / ".git").exists() or ((path / "HEAD").exists() and (path / "objects").is_dir())


def resolve(location: str, ref: str | None = None) -> XfstestsSource:
    """Fetch or copy the source into the cache (once) and return its tree and identity."""
    if ref is not None:
        check_ref(ref)
    path = Path(location).expanduser()
    is_url = "://" in location or location.startswith("git@")
    if not is_url and not path.exists():
        raise XfstestsSourceError(f"xfstests source {location!r} does not exist; {HOW_TO}")
    base = cache_dir("xfstests-src")
    if not is_url and path.is_file():
        digest = sha256_file(path)
        final = base / f"tar-{digest[:16]}"
        with file_lock(final.with_suffix(".lock")):
            if not final.exists():
                with atomic_dir(final) as tmp:
                    run(["tar", "-xf", str(path), "-C", str(tmp), "--strip-components=1"], timeout=600)
        return XfstestsSource(str(path), f"sha256:{digest}", final)
    if is_url or _is_git(path):
        mirror = base / f"git-{sha256_json(location)[:16]}.git"
        with file_lock(mirror.with_suffix(".lock")):
            try:
                if not mirror.exists():
                    with atomic_dir(mirror) as tmp:
                        # "--": a location starting with '-' is never read as an option.
                        run(["git", "clone", "-q", "--bare", "--", location, str(tmp / "r")], timeout=1800)
                        for e in (tmp / "r").iterdir():
                            os.rename(e, tmp / e.name)
                        (tmp / "r").rmdir()
                else:
                    run(["git", "-C", str(mirror), "fetch", "-q", "--", location, "+HEAD:refs/kharness/head"],
                        timeout=1800, check=False)
                commit = run(["git", "-C", str(mirror), "rev-parse", "--verify",
                              f"{ref or 'HEAD'}^{{commit}}"], timeout=60).stdout.strip()
            except CommandError as e:
                raise XfstestsSourceError(f"cannot get xfstests from {location!r}: {e}\n{HOW_TO}") from None
        tree = base / f"tree-{commit[:16]}"
        with file_lock(tree.with_suffix(".lock")):
            if not tree.exists():
                with atomic_dir(tree) as tmp:
                    tarball = tmp / ".src.tar"
                    run(["git", "-C", str(mirror), "archive", "--format=tar", "-o", str(tarball), commit],
                        timeout=600)
                    run(["tar", "-xf", str(tarball), "-C", str(tmp)], timeout=600)
                    tarball.unlink()
        return XfstestsSource(location, commit, tree)
    # a plain directory: copy it, identified by its file list and mtimes
    ident = sha256_json(sorted((str(p.relative_to(path)), p.stat().st_mtime_ns)
                               for p in path.rglob("*") if p.is_file()))
    final = base / f"dir-{ident[:16]}"
    with file_lock(final.with_suffix(".lock")):
        if not final.exists():
            with atomic_dir(final) as tmp:
                shutil.copytree(path, tmp, dirs_exist_ok=True, symlinks=True)
    return XfstestsSource(str(path), f"dir:{ident}", final)


def build_in_root(root: Path, src: XfstestsSource, log: Path) -> None:
    """Copy the source to /opt/xfstests in the image root and build it there with chroot."""
    dest = root / "opt/xfstests"
    shutil.copytree(src.tree, dest, symlinks=True)
    jobs = str(os.cpu_count() or 1)
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "LANG": "C"}
    try:
        run(["chroot", str(root), "make", "-C", "/opt/xfstests", f"-j{jobs}"], timeout=3600, log=log, env=env)
    except CommandError as e:
        raise HarnessError(f"xfstests build in the image root failed; see {log}\n"
                           + "\n".join(e.output.splitlines()[-25:])) from None
    if not (dest / "check").exists() or not (dest / "ltp/fsstress").exists():
        raise HarnessError(f"xfstests build produced no ltp/fsstress; see {log}")
    # fstests runs tests as the users fsgqa/fsgqa2/123456-fsgqa; create them.
    for user in ("fsgqa", "fsgqa2"):
        run(["chroot", str(root), "useradd", "-m", user], timeout=60, check=False, log=log, env=env)
    run(["chroot", str(root), "useradd", "-m", "123456-fsgqa"], timeout=60, check=False, log=log, env=env)
