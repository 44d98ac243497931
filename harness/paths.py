"""Where things live: the repository's definitions and the per-user cache."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def project_root() -> Path:
    """The directory holding kernels/, vm-images/ and fstests-configs/ (KHARNESS_ROOT overrides)."""
    return Path(os.environ.get("KHARNESS_ROOT", REPO_ROOT)).resolve()


DEFINITION_DIRS = ("kernels", "vm-images", "fstests-configs", "nightly")


def project_relative(path: str | Path) -> str:
    """``path`` relative to the project root, so records stay portable between checkouts.

    A path recorded by another checkout (a shared cache built at another path) is cut at its
    last definitions directory (``kernels/...``); anything else is returned unchanged."""
    p = Path(path)
    try:
        return str(p.resolve().relative_to(project_root()))
    except ValueError:
        pass
    parts = p.parts
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] in DEFINITION_DIRS and p.is_absolute():
            return str(Path(*parts[i:]))
    return str(path)


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
