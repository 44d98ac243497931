"""An ordinary user to run kharness as, for the no-root test (tests/vm/test_13_unprivileged.py).

The test runs as root (CI does); this sets up the user ``kharness-ci`` and a workspace in its home
that it can read whatever the checkout's own path allows: a copy of the harness and its
definitions, a virtualenv of Debian's python3 with the harness's dependencies (kept between runs,
keyed by pyproject.toml), and the user's own kharness cache (kept between runs, so a second CI
run builds nothing). Its compiler cache is seeded from root's: kernel builds hash paths relative
to the cache root (CCACHE_BASEDIR in harness/kernel/build.py), so the user's first build of a
kernel root has built compiles from hits.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path

from harness.paths import cache_dir
from tests.helpers.proc import processes

ROOT = Path(__file__).resolve().parents[2]
USER = "kharness-ci"
COPIED = ("harness", "kernels", "vm-images", "fstests-configs", "nightly", "pyproject.toml")
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class Workspace:
    """The user, its home, the harness copy it runs and the python that runs it."""

    user: str
    uid: int
    gid: int
    home: Path
    src: Path
    python: Path

    def argv(self, *args: str) -> list[str]:
        """``kharness ARGS`` as the user, with a clean environment (nothing of root's)."""
        return ["runuser", "-u", self.user, "--", "env", "-i", f"HOME={self.home}", f"PATH={PATH}",
                "LANG=C.UTF-8", f"PYTHONPATH={self.src}", str(self.python), "-m", "harness.cli", *args]

    def run(self, *args: str, timeout: float) -> subprocess.CompletedProcess:
        proc = subprocess.run(self.argv(*args), cwd=self.src, capture_output=True, text=True, timeout=timeout)
        print(f"$ kharness {' '.join(args)}  (as {self.user}, exit {proc.returncode})")
        print(proc.stdout[-4000:], proc.stderr[-4000:])
        return proc

    def cache(self) -> Path:
        return self.home / ".cache/kharness"


def _as_user(ws_user: str, argv: list[str], timeout: float, cwd: Path) -> None:
    subprocess.run(["runuser", "-u", ws_user, "--", *argv], cwd=cwd, check=True, timeout=timeout,
                   capture_output=True, text=True)


def ensure_user() -> pwd.struct_passwd:
    """The user ``kharness-ci`` with a home and subordinate ids (useradd gives both on Debian)."""
    try:
        pw = pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", "--", USER], check=True, timeout=60)
        pw = pwd.getpwnam(USER)
    subs = Path("/etc/subuid").read_text() if Path("/etc/subuid").exists() else ""
    if not any(line.startswith(f"{USER}:") for line in subs.splitlines()):
        subprocess.run(["usermod", "--add-subuids", "300000-365535", "--add-subgids", "300000-365535",
                        "--", USER], check=True, timeout=60)
    return pw


def prepare() -> Workspace:
    """Make (or refresh) the user's workspace; return it."""
    pw = ensure_user()
    home = Path(pw.pw_dir)
    ci = home / "ci"
    src = ci / "src"
    if src.exists():
        shutil.rmtree(src)
    src.mkdir(parents=True)
    for name in COPIED:
        p = ROOT / name
        if p.is_dir():
            shutil.copytree(p, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        elif p.exists():
            shutil.copy2(p, src / name)
    pyproject = (ROOT / "pyproject.toml").read_bytes()
    venv = ci / f"venv-{hashlib.sha256(pyproject).hexdigest()[:12]}"
    for d in (ci, src):
        shutil.chown(d, pw.pw_uid, pw.pw_gid)
    subprocess.run(["chown", "-R", "--", f"{pw.pw_uid}:{pw.pw_gid}", str(src)], check=True, timeout=120)
    if not (venv / ".done").exists():
        for old in ci.glob("venv-*"):
            shutil.rmtree(old)
        deps = tomllib.loads(pyproject.decode())["project"]["dependencies"]
        _as_user(USER, ["/usr/bin/python3", "-m", "venv", str(venv)], 300, ci)
        _as_user(USER, [str(venv / "bin/pip"), "install", "-q", *deps], 1800, ci)
        _as_user(USER, ["touch", str(venv / ".done")], 30, ci)
    seed_ccache(home, pw.pw_uid, pw.pw_gid)
    return Workspace(USER, pw.pw_uid, pw.pw_gid, home, src, venv / "bin/python")


def seed_ccache(home: Path, uid: int, gid: int) -> None:
    """Copy root's compiler cache into the user's (entries it has already are kept)."""
    theirs = home / ".cache/kharness/ccache"
    _as_user(USER, ["mkdir", "-p", "--", str(theirs)], 30, home)
    ours = cache_dir("ccache")
    subprocess.run(["cp", "-a", "--no-clobber", "--", f"{ours}/.", str(theirs)], check=True, timeout=900)
    subprocess.run(["chown", "-R", "--", f"{uid}:{gid}", str(theirs)], check=True, timeout=300)


def processes_of(uid: int) -> list[str]:
    """Command lines of the user's processes still alive."""
    return [b" ".join(argv).decode(errors="replace") for _, owner, argv in processes() if owner == uid]


def owned_by(path: Path, uid: int) -> bool:
    """Is every file under ``path`` (and it) owned by ``uid``?"""
    return all(os.lstat(p).st_uid == uid for p in [path, *path.rglob("*")])
