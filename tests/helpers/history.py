"""A small synthetic kernel history for the bisect and check tests, made in the cached source
repository of the ``baseline`` definition (Debian's 6.1 tarball import) so every commit is an
incremental build in the existing ``O=`` tree, not a cold build at a new path.

Commits are made with git plumbing on a temporary index (no checkout: the work tree belongs to
the builds), with a fixed identity and dates, so the same history gets the same commit ids on
every machine and every run.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

from harness.config.kernels import load_kernel
from harness.kernel.source import import_source
from harness.util import file_lock

ROOT = Path(__file__).resolve().parents[2]
BRANCH = "refs/heads/kharness-test/history"
DIO_PATCH = ROOT / "kernels/patches/0001-dio-unbound-single-threaded-wq.patch"


def _append(line: str) -> Callable[[str], str]:
    return lambda text: text + line + "\n"


def _replace(old: str, new: str) -> Callable[[str], str]:
    def f(text: str) -> str:
        assert old in text, f"history: {old!r} not found"
        return text.replace(old, new, 1)
    return f


# (subject, {path: transform} or a patch file). Roles: c2 the performance culprit (the shipped
# dio-sync change), c3 a kernel byte-identical to c2's (documentation only), c4 a commit that does
# not build and c5 its fix, c6 the xfstests culprit (ext4 refuses a 10th hard link: generic/002
# fails, while _require_hardlinks still passes), c7 the boot culprit (a panic in an initcall).
HISTORY: list[tuple[str, object]] = [
    ("ext4: comment in inode.c", {"fs/ext4/inode.c": _append("/* kharness test history: filler 1 */")}),
    ("fs: direct-io: unbound single-threaded dio-sync workqueue", DIO_PATCH),
    ("Documentation: ext4: note", {"Documentation/filesystems/ext4/about.rst": _append("\n.. kharness filler")}),
    ("xfs: break the build", {"fs/xfs/xfs_super.c": _append("#error kharness test history: does not build")}),
    ("xfs: fix the build", {"fs/xfs/xfs_super.c": _replace(
        "#error kharness test history: does not build\n", "/* kharness test history: build fixed */\n")}),
    ("ext4: refuse a 10th hard link", {"fs/ext4/namei.c": _replace(
        "\tif (inode->i_nlink >= EXT4_LINK_MAX)\n\t\treturn -EMLINK;\n\n\terr = fscrypt_prepare_link",
        "\tif (inode->i_nlink >= 10)\n\t\treturn -EMLINK;\n\n\terr = fscrypt_prepare_link")}),
    ("fs: direct-io: panic in dio_init", {"fs/direct-io.c": _replace(
        "static __init int dio_init(void)\n{\n",
        "static __init int dio_init(void)\n{\n\tpanic(\"kharness test history: injected boot failure\");\n")}),
    ("ext4: comment in super.c", {"fs/ext4/super.c": _append("/* kharness test history: filler 2 */")}),
]


def _git(repo: Path, *args: str, env: dict | None = None, stdin: bytes | None = None, raw: bool = False) -> str:
    full = {**os.environ, "GIT_AUTHOR_NAME": "kharness test", "GIT_AUTHOR_EMAIL": "test@kharness",
            "GIT_COMMITTER_NAME": "kharness test", "GIT_COMMITTER_EMAIL": "test@kharness", **(env or {})}
    out = subprocess.run(["git", "-C", str(repo), *args], env=full, input=stdin, capture_output=True,
                          check=True, timeout=600).stdout.decode()
    return out if raw else out.strip()


def fillers(first: int, count: int) -> list[tuple[str, object]]:
    """``count`` one-file commits that each change the kernel's bytes (a new global string in a
    different fs/ source file: a real rebuild, never byte-identical to its parent)."""
    files = ["fs/ext4/inode.c", "fs/ext4/super.c", "fs/xfs/xfs_super.c", "fs/iomap/direct-io.c",
             "fs/ext4/file.c", "fs/xfs/xfs_file.c", "fs/ext4/extents.c", "fs/direct-io.c"]
    return [(f"filler {i}: {files[i % len(files)]}",
             {files[i % len(files)]: _append(f'const char kharness_filler_{i}[] = "kharness filler {i}";')})
            for i in range(first, first + count)]


def make_history(history: list[tuple[str, object]] | None = None,
                 branch: str = BRANCH) -> tuple[Path, str, list[str]]:
    """(source repo, base commit, commits c1..cN) of a history (default: the test history), made
    once: the same commits every time."""
    history = HISTORY if history is None else history
    src = import_source(load_kernel("baseline").source)
    repo, parent = src.repo, src.commit
    index = repo / ".git" / "kharness-history-index"
    commits: list[str] = []
    with file_lock(repo.with_suffix(".lock")):
        for i, (subject, change) in enumerate(history, 1):
            date = f"2026-01-01T00:{i // 60:02d}:{i % 60:02d}Z" if history is not HISTORY else f"2026-01-0{i}T00:00:00Z"
            env = {"GIT_INDEX_FILE": str(index), "GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date}
            _git(repo, "read-tree", parent, env=env)
            if isinstance(change, Path):
                _git(repo, "apply", "--cached", str(change), env=env)
            else:
                for path, transform in change.items():  # type: ignore[union-attr]
                    text = _git(repo, "show", f"{parent}:{path}", raw=True)
                    blob = _git(repo, "hash-object", "-w", "--stdin", stdin=transform(text).encode())
                    _git(repo, "update-index", "--cacheinfo", f"100644,{blob},{path}", env=env)
            tree = _git(repo, "write-tree", env=env)
            parent = _git(repo, "commit-tree", tree, "-p", parent, "-m", subject, env=env)
            commits.append(parent)
        _git(repo, "update-ref", branch, parent)
        index.unlink(missing_ok=True)
    return repo, src.commit, commits
