"""RunSpec: everything needed to redo one boot's work, as a frozen value with a JSON form.

A spec names the exact kernel (definition, source commit, patch hashes, config hash, cache key),
the image (recipe and key), the accelerator, the VM and its scratch disks, and the workload with
every parameter: for fio, each cell's filesystem (mkfs and mount options) and job (parameters
and the job file as rendered); for xfstests, the section, the tests, the expunges and the
``local.config`` as rendered. It is written as ``spec.json`` into every run directory by every
front end, and ``kharness reproduce`` reads it back.

The JSON form carries ``version``; :func:`spec_from_json` refuses a version it does not know and
names unknown or missing keys, so a spec can never be half-read.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

from .. import __version__
from ..errors import HarnessError
from ..paths import REPO_ROOT
from ..util import run

SPEC_VERSION = 1
MOUNTPOINT = "/mnt/scratch"


class SpecError(HarnessError):
    """A spec (or its JSON) is invalid; names the file and the key."""

    def __init__(self, where: str, key: str, message: str):
        self.where, self.key = where, key
        super().__init__(f"{where}: {key}: {message}" if key else f"{where}: {message}")


@dataclass(frozen=True)
class PatchRef:
    """One patch of a kernel's series, identified by content."""

    file: str
    subject: str
    sha256: str


@dataclass(frozen=True)
class FragmentRef:
    """One kconfig fragment merged into the kernel's config."""

    file: str
    sha256: str


@dataclass(frozen=True)
class KernelSpec:
    """The exact kernel a run used: definition name plus every input of its cache key."""

    name: str
    key: str
    source: str
    base_commit: str
    commit: str
    release: str
    config_base: str
    config_sha256: str
    patches: tuple[PatchRef, ...] = ()
    fragments: tuple[FragmentRef, ...] = ()


@dataclass(frozen=True)
class ImageSpec:
    """The guest image: recipe name and content key."""

    recipe: str
    key: str


@dataclass(frozen=True)
class DiskSpec:
    """A scratch disk: virtio, nvme or scsi, size like 2G, serial by which the guest finds it."""

    kind: str
    size: str
    serial: str


@dataclass(frozen=True)
class VMSpec:
    """The VM around the workload."""

    memory_mb: int = 2048
    cpus: int = 2
    cmdline: str = ""


@dataclass(frozen=True)
class FilesystemSpec:
    """A scratch filesystem: the mkfs argv (``{dev}`` for the device) and mount options."""

    fstype: str
    mkfs: tuple[str, ...]
    mount_options: str = ""


@dataclass(frozen=True)
class FioJobSpec:
    """Every parameter of a fio job (see workloads.fio.FioJob) and the job file as rendered
    for the first run (later runs differ only in ``tag``)."""

    pattern: str
    engine: str
    iodepth: int
    numjobs: int
    bs: str
    size: str
    runtime: int
    ramp_time: int
    directory: str
    rendered: str = ""


@dataclass(frozen=True)
class SysrqSampling:
    """sysrq captures over SSH during a workload: first after ``delay`` s, then every
    ``interval`` s (None: once). They perturb the numbers: keep them off compared runs."""

    keys: str = "wt"
    delay: float = 3.0
    interval: float | None = None

    @classmethod
    def evidence(cls, runtime: float) -> "SysrqSampling":
        """One sysrq-w + sysrq-t capture a third into a ``runtime``-second job (1-3 s in): the
        completions are queued by then, and the dumps (about 0.5 s on TCG) end well before a
        short job does; at 3 s into a 5 s job the workqueue dump sometimes found nothing busy."""
        return cls("wt", delay=max(1.0, min(3.0, runtime / 3)))


@dataclass(frozen=True)
class FioCell:
    """One cell: a filesystem on the run's first disk and a fio job, measured ``runs`` times."""

    fs: FilesystemSpec
    disk: str
    job: FioJobSpec
    runs: int = 1

    @property
    def id(self) -> str:
        """``fs/disk/pattern/engine``, e.g. ``ext4/nvme/unwritten-convert/libaio``."""
        return f"{self.fs.fstype}/{self.disk}/{self.job.pattern}/{self.job.engine}"


@dataclass(frozen=True)
class FioWorkload:
    """fio cells measured in one boot, in order; ``setup`` commands run in the guest after the
    scratch filesystem is mounted and before each cell (argv lists)."""

    cells: tuple[FioCell, ...]
    sampling: SysrqSampling | None = None
    setup: tuple[tuple[str, ...], ...] = ()
    deadline_s: float | None = None
    kind: str = "fio"


@dataclass(frozen=True)
class XfstestsWorkload:
    """xfstests in one section: the tests (each its own ``./check``, in order), what the
    section expunges on this kernel and why, the section definition's hash, and the watchdog for
    a test without a recorded time (scaled by the machine's measured speed at run time)."""

    section: str
    fstype: str
    mkfs_options: str
    section_sha256: str
    tests: tuple[str, ...]
    expunged: tuple[tuple[str, str], ...] = ()
    default_watchdog_s: float = 1800.0
    kind: str = "xfstests"


@dataclass(frozen=True)
class CommandWorkload:
    """One command (argv) run in the guest with a deadline; its exit status is the result."""

    argv: tuple[str, ...]
    timeout_s: float = 600.0
    kind: str = "command"


Workload = Union[FioWorkload, XfstestsWorkload, CommandWorkload]
_WORKLOADS = {"fio": FioWorkload, "xfstests": XfstestsWorkload, "command": CommandWorkload}


@dataclass(frozen=True)
class HarnessSpec:
    """Which kharness produced the run."""

    version: str
    commit: str


@dataclass(frozen=True)
class RunSpec:
    """One boot's work. ``label`` names the run; ``role`` is base/new in a comparison."""

    label: str
    kernel: KernelSpec
    image: ImageSpec
    accel: str
    disks: tuple[DiskSpec, ...]
    workload: Workload
    vm: VMSpec = field(default_factory=VMSpec)
    harness: HarnessSpec = field(default_factory=lambda: harness_spec())
    role: str | None = None
    run_index: int = 0
    version: int = SPEC_VERSION

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict (tuples become lists)."""
        return _plain(dataclasses.asdict(self))

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=1, sort_keys=True)

    def write(self, run_dir: Path) -> Path:
        """Write ``spec.json`` into ``run_dir``."""
        path = run_dir / "spec.json"
        path.write_text(self.dumps() + "\n")
        return path

    def cell(self, cell_id: str) -> FioCell:
        """The fio cell named ``cell_id``; SpecError listing the cells otherwise."""
        cells = self.workload.cells if isinstance(self.workload, FioWorkload) else ()
        for c in cells:
            if c.id == cell_id:
                return c
        raise SpecError(self.label, "cell", f"no cell {cell_id!r} (cells: "
                        f"{', '.join(c.id for c in cells) or 'none: not a fio run'})")

    def same_work(self, other: "RunSpec") -> list[str]:
        """Keys where ``other`` would do different work (label, role, index and harness aside)."""
        a, b = self.to_json(), other.to_json()
        for k in ("label", "role", "run_index", "harness"):
            a.pop(k), b.pop(k)
        return _diff(a, b)


@functools.lru_cache(maxsize=1)
def harness_spec() -> HarnessSpec:
    """This kharness: package version and the repository's git commit (``+dirty`` if modified)."""
    commit = "unknown"
    try:  # through harness.util.run: a deadline, and no git outlives the harness
        out = run(["git", "-C", str(REPO_ROOT), "describe", "--always", "--dirty=+dirty", "--abbrev=40"],
                  timeout=10, check=False)
        if out.returncode == 0:
            commit = out.stdout.strip()
    except HarnessError:
        pass
    return HarnessSpec(__version__, commit)


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def _diff(a: Any, b: Any, path: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for k in sorted(set(a) | set(b)):
            out += _diff(a.get(k), b.get(k), f"{path}.{k}" if path else k)
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in _diff(x, y, f"{path}[{i}]")]
    return [] if a == b else [path]


# -- JSON -> dataclasses, strictly ------------------------------------------------------------
def _build(cls: type, data: Any, where: str, key: str) -> Any:
    if not isinstance(data, dict):
        raise SpecError(where, key, f"want an object, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise SpecError(where, key, f"unknown key(s) {', '.join(unknown)}")
    kwargs = {}
    for name, f in fields.items():
        sub = f"{key}.{name}" if key else name
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:  # type: ignore[misc]
                raise SpecError(where, sub, "missing")
            continue
        kwargs[name] = _value(_FIELD_TYPES.get((cls.__name__, name)), data[name], where, sub)
    return cls(**kwargs)


def _value(kind: Any, value: Any, where: str, key: str) -> Any:
    if kind is None:
        return value
    if isinstance(kind, tuple) and kind[0] == "list":
        if not isinstance(value, list):
            raise SpecError(where, key, f"want a list, got {type(value).__name__}")
        return tuple(_value(kind[1], v, where, f"{key}[{i}]") for i, v in enumerate(value))
    if kind == "opt-sampling":
        return None if value is None else _build(SysrqSampling, value, where, key)
    if kind == "workload":
        if not isinstance(value, dict) or value.get("kind") not in _WORKLOADS:
            raise SpecError(where, f"{key}.kind", f"want one of {', '.join(_WORKLOADS)}")
        return _build(_WORKLOADS[value["kind"]], value, where, key)
    if kind == "strs":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise SpecError(where, key, "want a list of strings")
        return tuple(value)
    if isinstance(kind, type) and dataclasses.is_dataclass(kind):
        return _build(kind, value, where, key)
    return value


_FIELD_TYPES: dict[tuple[str, str], Any] = {
    ("RunSpec", "kernel"): KernelSpec, ("RunSpec", "image"): ImageSpec,
    ("RunSpec", "disks"): ("list", DiskSpec), ("RunSpec", "workload"): "workload",
    ("RunSpec", "vm"): VMSpec, ("RunSpec", "harness"): HarnessSpec,
    ("KernelSpec", "patches"): ("list", PatchRef), ("KernelSpec", "fragments"): ("list", FragmentRef),
    ("FioWorkload", "cells"): ("list", FioCell), ("FioWorkload", "sampling"): "opt-sampling",
    ("FioWorkload", "setup"): ("list", "strs"),
    ("FioCell", "fs"): FilesystemSpec, ("FioCell", "job"): FioJobSpec,
    ("FilesystemSpec", "mkfs"): "strs",
    ("XfstestsWorkload", "tests"): "strs", ("CommandWorkload", "argv"): "strs", ("XfstestsWorkload", "expunged"): ("list", "strs"),
}

_SCALARS: dict[str, tuple[type, ...]] = {"str": (str,), "int": (int,), "float": (int, float)}


def _check_scalars(obj: Any, where: str, key: str = "") -> None:
    """Type-check scalar fields against their annotations (str/int/float, optional or not)."""
    if not dataclasses.is_dataclass(obj):
        return
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        sub = f"{key}.{f.name}" if key else f.name
        ann = str(f.type).replace(" ", "")
        if ann in _SCALARS or ann in (f"{t}|None" for t in _SCALARS):
            base = ann.removesuffix("|None")
            if v is None and ann.endswith("|None"):
                continue
            if isinstance(v, bool) or not isinstance(v, _SCALARS[base]):
                raise SpecError(where, sub, f"want {ann}, got {v!r}")
        elif dataclasses.is_dataclass(v):
            _check_scalars(v, where, sub)
        elif isinstance(v, tuple):
            for i, item in enumerate(v):
                _check_scalars(item, where, f"{sub}[{i}]")


def spec_from_json(data: Any, where: str = "spec") -> RunSpec:
    """A RunSpec from its JSON form; SpecError naming ``where`` and the key on any problem."""
    if not isinstance(data, dict):
        raise SpecError(where, "", "not a JSON object")
    version = data.get("version")
    if version != SPEC_VERSION:
        raise SpecError(where, "version", f"spec version {version!r} is not supported "
                        f"(this kharness reads version {SPEC_VERSION})")
    spec = _build(RunSpec, data, where, "")
    _check_scalars(spec, where)
    return spec


def read_spec(path: Path) -> RunSpec:
    """Read ``spec.json`` (or a run directory holding one)."""
    p = path / "spec.json" if path.is_dir() else path
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError:
        raise SpecError(str(p), "", "no spec.json: not a run directory written by kharness") from None
    except (OSError, ValueError) as e:
        raise SpecError(str(p), "", f"unreadable: {e}") from None
    return spec_from_json(data, str(p))
