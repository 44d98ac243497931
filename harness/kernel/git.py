"""Thin git wrapper with a fixed identity, so imported and patched commits are reproducible."""

from __future__ import annotations

from pathlib import Path

from ..util import run

IDENTITY = {
    "GIT_AUTHOR_NAME": "kharness",
    "GIT_AUTHOR_EMAIL": "kharness@localhost",
    "GIT_COMMITTER_NAME": "kharness",
    "GIT_COMMITTER_EMAIL": "kharness@localhost",
    "GIT_COMMITTER_DATE": "2000-01-01T00:00:00Z",
}


def git(repo: Path, *args: str, timeout: float = 1800, check: bool = True, env: dict | None = None) -> str:
    """Run ``git -C repo ARGS`` and return its stripped output."""
    return run(["git", "-C", str(repo), "-c", "gc.auto=0", *args], timeout=timeout, check=check,
               env={**IDENTITY, **(env or {})}).stdout.strip()


def rev_parse(repo: Path, rev: str) -> str | None:
    """The commit a revision names, or None (also for a "revision" that starts with '-', which
    rev-parse would take as an option)."""
    if rev.startswith("-"):
        return None
    out = run(["git", "-C", str(repo), "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"],
              check=False, timeout=60)
    return out.stdout.strip() if out.returncode == 0 else None
