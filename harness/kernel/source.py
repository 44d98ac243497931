"""Turn a kernel Source (tarball, git, plain tree) into a commit in a cached local git repository.

Every source ends up as a non-bare repository under ``<cache>/src/<key>`` whose work tree is the
source tree builds use (out of tree, with ``O=``). A tarball is imported once; histories stay
available for bisecting.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..config.kernels import Source
from ..errors import CommandError, SourceError
from ..paths import cache_dir
from ..util import atomic_dir, file_lock, run, sha256_file, sha256_json, write_json
from .git import git, rev_parse

BASE_REF = "refs/kharness/base"  # the imported commit; HEAD moves as builds check out series
# Children run in their own process group (harness.procs), away from the terminal: a credential
# prompt there would stop git until its deadline. Fail at once instead.
NO_PROMPT = {"GIT_TERMINAL_PROMPT": "0",
             **({} if "GIT_SSH_COMMAND" in os.environ else {"GIT_SSH_COMMAND": "ssh -o BatchMode=yes"})}


@dataclass(frozen=True)
class SourceRepo:
    """A cached repository and the base commit a definition builds from."""

    repo: Path
    commit: str
    key: str          # identifies the repository (not the commit)
    describe: str     # human-readable origin


def tarball_digest(path: Path) -> str:
    """sha256 of a tarball, memoised by (path, size, mtime) so cache hits stay fast."""
    st = path.stat()
    memo = cache_dir("src") / "tarball-digests.json"
    ident = f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}"
    with file_lock(memo.with_suffix(".lock")):
        try:
            table = json.loads(memo.read_text())
        except (OSError, ValueError):  # missing, or truncated by an interrupted writer: recompute
            table = {}
        if not isinstance(table, dict):
            table = {}
        if not isinstance(table.get(ident), str):
            table[ident] = sha256_file(path)
            write_json(memo, table)  # temp file + rename: never leaves a truncated memo
        return table[ident]


def _import_tarball(tarball: Path, final: Path) -> None:
    with atomic_dir(final) as tmp:
        run(["tar", "-xf", str(tarball), "-C", str(tmp), "--strip-components=1"], timeout=1800)
        if not (tmp / "Makefile").exists():
            raise SourceError(f"{tarball}: no top-level Makefile after extraction; not a kernel tarball?")
        git(tmp, "init", "-q")
        git(tmp, "config", "core.autocrlf", "false")
        # Debian's linux-source tarball has a top-level .gitignore whose last rule ignores
        # everything at the top level ("/*"); add with -f or the import commits an empty tree.
        git(tmp, "add", "-A", "-f", ".")
        git(tmp, "commit", "-q", "--no-verify", "-m", f"Import {tarball.name}")
        git(tmp, "update-ref", BASE_REF, "HEAD")
        count = int(git(tmp, "ls-files", "--", "Makefile", "fs/direct-io.c").count("\n") + 1)
        if count < 2:
            raise SourceError(f"{tarball}: import committed no kernel files (ignored by .gitignore?)")


def _clone_git(url: str, final: Path) -> None:
    with atomic_dir(final) as tmp:
        # "--": a URL starting with '-' must not be read as an option (e.g. --upload-pack=CMD).
        run(["git", "clone", "-q", "--no-checkout", "--", url, str(tmp / "repo")], timeout=7200, env=NO_PROMPT)
        for entry in (tmp / "repo").iterdir():
            os.rename(entry, tmp / entry.name)
        (tmp / "repo").rmdir()


def _import_tree(tree: Path, repo: Path) -> None:
    """Record the plain tree's current content as the base commit (a new commit only if it
    changed). A separate index keeps git's stat cache for the user's tree, so re-imports of an
    unchanged kernel tree take seconds."""
    if not (repo / ".git").exists():
        with atomic_dir(repo) as tmp:
            git(tmp, "init", "-q")
            git(tmp, "config", "core.autocrlf", "false")
    gitdir = repo / ".git"
    env = {"GIT_INDEX_FILE": str(gitdir / "kharness-import-index")}
    run(["git", f"--git-dir={gitdir}", f"--work-tree={tree}", "add", "-A", "-f", "."],
        cwd=tree, env=env, timeout=1800)
    tree_id = run(["git", f"--git-dir={gitdir}", "write-tree"], env=env, timeout=600).stdout.strip()
    old = rev_parse(repo, BASE_REF)
    if old and git(repo, "rev-parse", f"{old}^{{tree}}") == tree_id:
        return
    parent = ["-p", old] if old else []
    commit = git(repo, "commit-tree", tree_id, *parent, "-m", f"Import tree {tree}",
                 env={"GIT_AUTHOR_DATE": "2000-01-01T00:00:00Z"})
    git(repo, "update-ref", BASE_REF, commit)
    git(repo, "checkout", "-q", "-f", "--detach", commit)


def import_source(src: Source) -> SourceRepo:
    """Make sure the source is in the cache and return its repository and base commit."""
    if src.kind == "tarball":
        tarball = Path(src.location)
        if not tarball.exists():
            raise SourceError(f"tarball not found: {tarball}")
        digest = tarball_digest(tarball)
        key = f"tarball-{digest[:16]}"
        repo = cache_dir("src") / key
        with file_lock(repo.with_suffix(".lock")):
            if not (repo / ".git").exists():
                _import_tarball(tarball, repo)
        return SourceRepo(repo, _base_commit(repo), key, f"tarball {tarball} (sha256 {digest[:16]})")

    if src.kind == "git":
        ref = src.ref or "HEAD"
        for what, value in (("URL", src.location), ("ref", ref)):
            if value.startswith("-"):
                raise SourceError(f"git source {src.location!r}: {what} {value!r} starts with '-'; "
                                  "git would read it as an option")
        key = f"git-{sha256_json(src.location)[:16]}"
        repo = cache_dir("src") / key
        with file_lock(repo.with_suffix(".lock")):
            if not (repo / ".git").exists():
                try:
                    _clone_git(src.location, repo)
                except CommandError as e:
                    raise SourceError(f"cannot clone {src.location}: {e}") from None
            commit = rev_parse(repo, ref) if len(ref) == 40 else None
            if commit is None:
                try:
                    # --end-of-options (git >= 2.24): the ref is never an option, whatever it holds.
                    git(repo, "fetch", "-q", "origin", "--end-of-options", ref, timeout=7200, env=NO_PROMPT)
                    commit = rev_parse(repo, "FETCH_HEAD")
                except CommandError:
                    commit = rev_parse(repo, ref)
            if commit is None:
                raise SourceError(f"{src.location}: ref {ref!r} not found")
        return SourceRepo(repo, commit, key, f"git {src.location} {ref}")

    if src.kind == "tree":
        tree = Path(src.location)
        key = f"tree-{sha256_json(str(tree.resolve()))[:16]}"
        repo = cache_dir("src") / key
        with file_lock(repo.with_suffix(".lock")):
            _import_tree(tree, repo)
        return SourceRepo(repo, _base_commit(repo), key, f"tree {tree}")

    raise SourceError(f"unknown source kind {src.kind!r}")


def _base_commit(repo: Path) -> str:
    """The imported commit of a cached source repository; SourceError if the import is damaged."""
    commit = rev_parse(repo, BASE_REF)
    if commit is None:
        raise SourceError(f"{repo}: no {BASE_REF}: a damaged import; remove the directory and run again")
    return commit
