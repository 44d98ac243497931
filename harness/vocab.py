"""The shared vocabulary and the typed keys built from it, on the ground floor.

Every layer names the same things: filesystems (``workloads/filesystems.yaml``), scratch disk
kinds, fio patterns (the job templates in ``workloads/templates/fio``), fio engines, a cell
``fs/disk/pattern/engine`` and a kernel reference ``NAME`` or ``NAME@REF``. They are defined here
once, each with one parser or check whose error names the bad text and what is allowed, so the
stages (workloads, vm) and everything above take their names from here and nothing imports
upward. This module imports only the standard library, yaml, errors and paths.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import yaml

from .errors import HarnessError

Say = Callable[[str], None]
"""The one progress callback: a line of text for the user (``print`` by default)."""

_WORKLOADS = Path(__file__).resolve().parent / "workloads"
FILESYSTEMS_FILE = _WORKLOADS / "filesystems.yaml"
FIO_TEMPLATES = _WORKLOADS / "templates" / "fio"


class VocabError(HarnessError):
    """A name or key outside the vocabulary: names the text, what it should be, and what is allowed."""

    def __init__(self, what: str, text: object, allowed: str):
        self.what, self.text, self.allowed = what, text, allowed
        super().__init__(f"{what} {text!r}: {allowed}")


def _filesystems(path: Path = FILESYSTEMS_FILE) -> tuple[str, ...]:
    """The profile names of filesystems.yaml, in file order (its contents are checked by
    ``workloads.fs.load_filesystems``)."""
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        raise HarnessError(f"{path}: want a mapping of filesystem names to profiles")
    return tuple(data)


# The order in which the patterns are listed and planned; a template not named here is added
# after them in name order, so a new pattern needs only its template.
_PATTERN_ORDER = ("randwrite-overwrite", "append-extend", "unwritten-convert", "randwrite-osync")


def _patterns(directory: Path = FIO_TEMPLATES) -> tuple[str, ...]:
    """The fio patterns: each ``NAME.fio.j2`` template not starting with '_' (those are shared parts)."""
    found = {p.name.removesuffix(".fio.j2") for p in directory.glob("*.fio.j2") if not p.name.startswith("_")}
    return tuple(p for p in _PATTERN_ORDER if p in found) + tuple(sorted(found - set(_PATTERN_ORDER)))


FILESYSTEMS: tuple[str, ...] = _filesystems()
DISKS: tuple[str, ...] = ("virtio", "nvme", "scsi")     # virtio-blk, emulated NVMe, virtio-scsi
PATTERNS: tuple[str, ...] = _patterns()
ENGINES: tuple[str, ...] = ("libaio", "io_uring")


def _check(what: str, text: object, known: Iterable[str]) -> str:
    known = tuple(known)
    if not isinstance(text, str) or text not in known:
        raise VocabError(what, text, f"unknown (known: {', '.join(known)})")
    return text


def check_filesystem(name: object) -> str:
    """``name`` if it is a filesystem of filesystems.yaml; VocabError listing them otherwise."""
    return _check("filesystem", name, FILESYSTEMS)


def check_disk(kind: object) -> str:
    """``kind`` if it is a scratch disk kind (virtio, nvme, scsi); VocabError otherwise."""
    return _check("disk kind", kind, DISKS)


def check_pattern(name: object) -> str:
    """``name`` if it is a fio pattern (a template); VocabError listing them otherwise."""
    return _check("fio pattern", name, PATTERNS)


def check_engine(name: object) -> str:
    """``name`` if it is a fio ioengine kharness knows; VocabError listing them otherwise."""
    return _check("fio ioengine", name, ENGINES)


@dataclass(frozen=True, order=True)
class CellId:
    """A fio cell: ``fs/disk/pattern/engine``, e.g. ``ext4/nvme/unwritten-convert/libaio``.

    ``str()`` is the text stored in records, run labels and store rows; :attr:`slug` is the same
    for file names (``ext4-nvme-unwritten-convert-libaio``)."""

    fs: str
    disk: str
    pattern: str
    engine: str

    FORM = "FS/DISK/PATTERN/ENGINE"

    def __post_init__(self) -> None:
        check_filesystem(self.fs), check_disk(self.disk), check_pattern(self.pattern), check_engine(self.engine)

    @classmethod
    def parse(cls, text: object) -> CellId:
        """The cell ``text`` names; VocabError naming the text and the allowed parts otherwise."""
        if not isinstance(text, str):
            raise VocabError("cell", text, f"want {cls.FORM}")
        parts = text.split("/")
        if len(parts) != 4:
            raise VocabError("cell", text, f"want {cls.FORM} (e.g. ext4/nvme/unwritten-convert/libaio)")
        try:
            return cls(*parts)
        except VocabError as e:
            raise VocabError("cell", text, f"{e} in {cls.FORM}") from None

    def __str__(self) -> str:
        return f"{self.fs}/{self.disk}/{self.pattern}/{self.engine}"

    @property
    def slug(self) -> str:
        """The id for a file or run-directory name: '/' becomes '-'."""
        return str(self).replace("/", "-")


# A kernel definition name (config/loader.check_name: NAME.yaml must be a valid file name).
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")     # fullmatch: "$" would let a final "\n" in
NAME_MAX = 200
_GIT_REF = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._/+-]*")
NAME_RULE = "letters, digits, '.', '_' and '-' only, starting with a letter or digit, no '..', " \
            f"at most {NAME_MAX} characters"
REF_RULE = "a branch, tag or commit (letters, digits and ._/+-, not starting with '-' or '.', no '..', " \
           "no whitespace or control characters, not ending in '.lock', '/' or '.', at most 256 characters)"


def valid_name(name: object) -> bool:
    """Whether ``name`` is a plain definition name (see :data:`NAME_RULE`)."""
    return isinstance(name, str) and bool(NAME_RE.fullmatch(name)) and ".." not in name and len(name) <= NAME_MAX


def valid_git_ref(ref: object) -> bool:
    """Whether ``ref`` is a plain git branch, tag or commit name (see :data:`REF_RULE`)."""
    return (isinstance(ref, str) and bool(_GIT_REF.fullmatch(ref)) and ".." not in ref
            and not ref.endswith((".lock", "/", ".")) and len(ref) <= 256)


@dataclass(frozen=True)
class KernelRef:
    """A kernel reference: a definition ``name``, at ``ref`` (a branch, tag or commit of its
    source) or at its imported source (None). ``str()`` is ``NAME`` or ``NAME@REF``."""

    name: str
    ref: str | None = None

    FORM = "NAME or NAME@REF"

    def __post_init__(self) -> None:
        if not valid_name(self.name):
            raise VocabError("kernel name", self.name, f"use {NAME_RULE}")
        if self.ref is not None and not valid_git_ref(self.ref):
            raise VocabError("kernel REF", self.ref, f"REF must be {REF_RULE}")

    @classmethod
    def parse(cls, text: object) -> KernelRef:
        """``NAME`` or ``NAME@REF``; VocabError naming the text and the rule it breaks."""
        if not isinstance(text, str):
            raise VocabError("kernel", text, f"give {cls.FORM}")
        name, sep, ref = text.partition("@")
        if sep and not ref:
            raise VocabError("kernel", text, f"give {cls.FORM}")
        try:
            return cls(name, ref if sep else None)
        except VocabError as e:
            raise VocabError("kernel", text, f"{e}") from None

    def at(self, commit: str) -> KernelRef:
        """The same definition at ``commit``."""
        return KernelRef(self.name, commit)

    def __str__(self) -> str:
        return self.name if self.ref is None else f"{self.name}@{self.ref}"
