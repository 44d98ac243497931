"""Kernel definitions: kernels/NAME.yaml.

Names (the one asked for and ``base:``) are plain file names. Patches and config fragments must
resolve, after symlinks, inside the project root (or inside the definitions directory a caller
passed explicitly); source locations may be anywhere (e.g. /usr/src/linux-source-6.1.tar.xz). A git
URL or ref must not start with '-', which git would take as an option.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DefinitionError
from ..paths import project_root
from .loader import check_name, is_inside, load_yaml, resolve_file

_PATHLIST = {"type": "array", "items": {"type": "string", "minLength": 1}}

SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "description": {"type": "string"},
        "base": {"type": "string", "minLength": 1},
        "source": {
            "oneOf": [
                {"type": "object", "additionalProperties": False, "required": ["tarball"],
                 "properties": {"tarball": {"type": "string"}}},
                {"type": "object", "additionalProperties": False, "required": ["git"],
                 "properties": {"git": {"type": "string"}, "ref": {"type": "string"}}},
                {"type": "object", "additionalProperties": False, "required": ["tree"],
                 "properties": {"tree": {"type": "string"}}},
            ]
        },
        "config": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "base": {"type": "string", "pattern": "^[a-z0-9_]+config$"},
                "fragments": _PATHLIST,
            },
        },
        "patches": _PATHLIST,
    },
}

TARBALL_HINT = "install it with scripts/setup, which runs apt-get install linux-source-6.1 linux-source-6.12"


@dataclass(frozen=True)
class Source:
    """Where a kernel tree comes from: kind is 'tarball', 'git' or 'tree'."""

    kind: str
    location: str
    ref: str | None = None


@dataclass(frozen=True)
class KernelDef:
    """A resolved kernel definition: inherited fields are already merged in."""

    name: str
    path: Path
    description: str
    source: Source
    config_base: str
    fragments: tuple[Path, ...]
    patches: tuple[Path, ...]
    based_on: str | None = None
    own_patches: tuple[Path, ...] = field(default=())


def kernels_dir() -> Path:
    return project_root() / "kernels"


def list_kernels(directory: Path | None = None) -> list[str]:
    """Names of all kernel definitions."""
    d = directory or kernels_dir()
    return sorted(p.stem for p in d.glob("*.yaml"))


def _patch_files(path: Path, key: str, value: str, roots: Sequence[Path]) -> list[Path]:
    p = resolve_file(path, key, value, inside=roots)
    if p.is_dir():
        files = sorted(q for q in p.iterdir() if q.suffix in (".patch", ".mbox", ".eml", ".diff"))
        if not files:
            raise DefinitionError(path, key, f"directory {p} holds no .patch/.mbox files")
        for q in files:  # a symlink in the directory may point anywhere
            if not is_inside(q, roots):
                raise DefinitionError(path, key, f"{q} resolves to {q.resolve()}, outside the "
                                      f"project ({' or '.join(map(str, roots))})")
        return files
    return [p]


def _not_an_option(path: Path, key: str, value: str) -> str:
    if value.startswith("-"):
        raise DefinitionError(path, key, f"{value!r} must not start with '-' (git would read it "
                              "as an option)")
    return value


def load_kernel(name: str, directory: Path | None = None, _seen: tuple[str, ...] = ()) -> KernelDef:
    """Load and validate kernels/NAME.yaml, following ``base:`` inheritance."""
    d = directory or kernels_dir()
    check_name(name, d, "", "kernel")
    # Where patches and fragments may live: the project, or a directory the caller chose.
    roots = [project_root()] + ([d] if directory is not None else [])
    path = d / f"{name}.yaml"
    if not path.exists():
        known = ", ".join(list_kernels(d)) or "none"
        raise DefinitionError(path, "", f"no kernel definition named {name!r} (known: {known})")
    data = load_yaml(path, SCHEMA)
    if name in _seen:
        raise DefinitionError(path, "base", f"inheritance cycle: {' -> '.join(_seen + (name,))}")

    parent: KernelDef | None = None
    if "base" in data:
        if "source" in data:
            raise DefinitionError(path, "source", "give either 'base' or 'source', not both")
        check_name(data["base"], path, "base", "kernel")
        parent = load_kernel(data["base"], directory, _seen + (name,))
    elif "source" not in data:
        raise DefinitionError(path, "source", "required (or 'base' naming another definition)")

    if parent is not None:
        source = parent.source
    else:
        src = data["source"]
        if "tarball" in src:
            source = Source("tarball", str(resolve_file(path, "source.tarball", src["tarball"],
                                                         hint=TARBALL_HINT)))
        elif "tree" in src:
            source = Source("tree", str(resolve_file(path, "source.tree", src["tree"])))
        else:
            url = _not_an_option(path, "source.git", src["git"])
            if "://" not in url and not url.startswith("git@"):
                url = str(resolve_file(path, "source.git", url))
            source = Source("git", url, _not_an_option(path, "source.ref", src.get("ref", "HEAD")))

    cfg = data.get("config", {})
    fragments = [resolve_file(path, f"config.fragments[{i}]", f, inside=roots)
                 for i, f in enumerate(cfg.get("fragments", []))]
    patches: list[Path] = []
    for i, p in enumerate(data.get("patches", [])):
        patches += _patch_files(path, f"patches[{i}]", p, roots)

    return KernelDef(
        name=name,
        path=path,
        description=data.get("description", ""),
        source=source,
        config_base=cfg.get("base", parent.config_base if parent else "defconfig"),
        fragments=tuple((list(parent.fragments) if parent else []) + fragments),
        patches=tuple((list(parent.patches) if parent else []) + patches),
        based_on=parent.name if parent else None,
        own_patches=tuple(patches),
    )
