"""Cache entries by content: describe a kernel or image entry, move it in chunks, verify it on arrival.

A worker host of a distributed executor never builds: the driver's testbed built the kernel and
the image, and each worker that lacks an entry (``find_kernel(key)`` / ``find_image(recipe, key)``
in ITS cache) gets the entry's files by content. A :class:`Manifest` names every file with its
size, mode and sha256; :func:`publish` cuts the files into chunks and hands each to a ``put``
function (``ray.put`` for Ray); :func:`install` fetches the chunks with the matching ``get``,
hashes every file as it is written and puts the entry in place only if every file matches, under
a per-entry lock and with an atomic rename: a corrupt or interrupted transfer never looks like a
cache entry, and two tasks fetching the same entry on one host write it once.

Nothing here imports Ray; the transport is whatever ``put``/``get`` are.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import HarnessError
from ..paths import cache_dir
from ..util import atomic_dir, file_lock, sha256_file
from ..vocab import Say

CHUNK = 64 << 20   # bytes per transferred piece: bounds the memory a transfer holds at once
KERNEL_FILES = ("bzImage", ".config", "System.map", "metadata.json")
IMAGE_FILES = ("base.qcow2", "id_ed25519", "id_ed25519.pub", "host_ed25519.pub", "metadata.json")
_NAME = re.compile(r"^\.?[A-Za-z0-9][A-Za-z0-9._-]*$")
_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class ArtifactError(HarnessError):
    """An artifact cannot be described, published or installed (a checksum mismatch, above all)."""


@dataclass(frozen=True)
class FileEntry:
    """One file of a cache entry: its name inside the entry, size, permission bits, sha256."""

    name: str
    size: int
    mode: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    """A cache entry by content. ``kind`` is kernel or image; ``name`` is the image recipe ('' for a
    kernel); ``key`` the cache key."""

    kind: str
    name: str
    key: str
    files: tuple[FileEntry, ...]

    @property
    def label(self) -> str:
        return f"kernel {self.key}" if self.kind == "kernel" else f"image {self.name}-{self.key}"

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    def check(self) -> None:
        """Refuse a manifest that could write outside its entry or is not a complete entry."""
        if self.kind not in ("kernel", "image"):
            raise ArtifactError(f"artifact kind {self.kind!r}: want kernel or image")
        if not _KEY.match(self.key) or (self.kind == "image" and not _KEY.match(self.name)):
            raise ArtifactError(f"{self.kind} artifact: bad key or name {self.name!r} {self.key!r}")
        names = [f.name for f in self.files]
        for f in self.files:
            if not _NAME.match(f.name) or f.name in (".", ".."):
                raise ArtifactError(f"{self.label}: refusing file name {f.name!r}")
            if not re.fullmatch(r"[0-9a-f]{64}", f.sha256) or f.size < 0:
                raise ArtifactError(f"{self.label}: {f.name}: bad sha256 or size")
        if len(set(names)) != len(names) or "metadata.json" not in names:
            raise ArtifactError(f"{self.label}: want unique files including metadata.json, got {names}")


def safe_mode(mode: int) -> int:
    """Permission bits a received file may have: the manifest's, without setuid, setgid, sticky
    or group/other write (at most 0o755; a 0o600 key stays 0o600)."""
    return mode & 0o755


def entry_dir(kind: str, name: str, key: str) -> Path:
    """Where the entry lives in this host's cache (what find_kernel / find_image look at)."""
    return cache_dir("kernels") / key if kind == "kernel" else cache_dir("images") / f"{name}-{key}"


def present(manifest: Manifest) -> bool:
    """Whether this host's cache holds the entry (complete entries only: metadata.json last)."""
    return (entry_dir(manifest.kind, manifest.name, manifest.key) / "metadata.json").exists()


def describe(kind: str, name: str, key: str, src: Path | None = None) -> Manifest:
    """The manifest of a cache entry (here, or in ``src``): its files with sizes and sha256."""
    src = src or entry_dir(kind, name, key)
    wanted = KERNEL_FILES if kind == "kernel" else IMAGE_FILES
    files = []
    for n in wanted:
        p = src / n
        if p.is_file():
            files.append(FileEntry(n, p.stat().st_size, p.stat().st_mode & 0o777, sha256_file(p)))
    m = Manifest(kind, name if kind == "image" else "", key, tuple(files))
    if not (src / "metadata.json").exists():
        raise ArtifactError(f"{m.label}: {src} is not a complete cache entry (no metadata.json)")
    if kind == "kernel" and not (src / "bzImage").exists():
        raise ArtifactError(f"{m.label}: {src} has no bzImage")
    if kind == "image" and not (src / "base.qcow2").exists():
        raise ArtifactError(f"{m.label}: {src} has no base.qcow2")
    m.check()
    return m


def chunks(path: Path, size: int = CHUNK) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        while True:
            data = fh.read(size)
            if not data:
                return
            yield data


def publish(manifest: Manifest, put: Callable[[bytes], Any], src: Path | None = None,
            chunk_size: int = CHUNK) -> dict[str, list[Any]]:
    """Hand every file's chunks to ``put``; the refs, per file name, in order. The files are
    hashed again while they are read, so an entry changed since :func:`describe` is refused."""
    src = src or entry_dir(manifest.kind, manifest.name, manifest.key)
    refs: dict[str, list[Any]] = {}
    for f in manifest.files:
        h, n, out = hashlib.sha256(), 0, []
        for data in chunks(src / f.name, chunk_size):
            h.update(data)
            n += len(data)
            out.append(put(data))
        if h.hexdigest() != f.sha256 or n != f.size:
            raise ArtifactError(f"{manifest.label}: {src / f.name} changed while being published")
        refs[f.name] = out
    return refs


def install(manifest: Manifest, refs: dict[str, list[Any]], get: Callable[[Any], bytes], *,
            say: Say = lambda m: None) -> tuple[Path, bool]:
    """Make the entry present in this host's cache: (its directory, whether it was fetched now).

    Each file is written from its chunks while being hashed; a size or sha256 that differs from
    the manifest raises ArtifactError naming the file and both digests, and nothing is left in
    the cache. The entry appears by one rename, under a lock, so concurrent installs are safe."""
    manifest.check()
    final = entry_dir(manifest.kind, manifest.name, manifest.key)
    if present(manifest):
        return final, False
    with file_lock(final.with_name(final.name + ".fetch.lock"), timeout=3600):
        if present(manifest):
            return final, False
        with atomic_dir(final) as tmp:
            for f in sorted(manifest.files, key=lambda f: f.name == "metadata.json"):
                if f.name not in refs:
                    raise ArtifactError(f"{manifest.label}: no data sent for {f.name}")
                h, n = hashlib.sha256(), 0
                fd = os.open(tmp / f.name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as out:
                    for ref in refs[f.name]:
                        data = get(ref)
                        h.update(data)
                        n += len(data)
                        if n > f.size:
                            break
                        out.write(data)
                    out.flush()
                    os.fsync(out.fileno())
                got = h.hexdigest()
                if n != f.size or got != f.sha256:
                    raise ArtifactError(f"{manifest.label}: {f.name} arrived corrupt: sha256 {got[:16]}... "
                                        f"({n} bytes), want {f.sha256[:16]}... ({f.size} bytes); refused")
                os.chmod(tmp / f.name, safe_mode(f.mode))
        say(f"{manifest.label}: fetched {manifest.size / 2**20:.1f} MiB into {final}, sha256 verified")
    return final, True


def verify(manifest: Manifest, where: Path | None = None) -> list[str]:
    """Files of the entry (in this cache, or ``where``) whose content differs from the manifest."""
    where = where or entry_dir(manifest.kind, manifest.name, manifest.key)
    bad = []
    for f in manifest.files:
        p = where / f.name
        if not p.is_file() or p.stat().st_size != f.size or sha256_file(p) != f.sha256:
            bad.append(f.name)
    return bad
