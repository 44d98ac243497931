"""Where things live: the repository's definitions and the per-user cache."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def project_root() -> Path:
    """The directory holding kernels/, vm-images/ and fstests-configs/ (KHARNESS_ROOT overrides)."""
    return Path(os.environ.get("KHARNESS_ROOT", REPO_ROOT)).resolve()


def cache_root() -> Path:
    """The per-user cache: $KHARNESS_CACHE, else $XDG_CACHE_HOME/kharness, else ~/.cache/kharness."""
    env = os.environ.get("KHARNESS_CACHE")
    if env:
        root = Path(env)
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        root = (Path(xdg) if xdg else Path.home() / ".cache") / "kharness"
    root.mkdir(parents=True, exist_ok=True)
    return root


def cache_dir(*parts: str) -> Path:
    """A subdirectory of the cache, created on demand."""
    d = cache_root().joinpath(*parts)
    d.mkdir(parents=True, exist_ok=True)
    return d


def results_root() -> Path:
    """Where run directories go unless a front end says otherwise."""
    env = os.environ.get("KHARNESS_RESULTS")
    return Path(env) if env else Path.cwd() / "results"
