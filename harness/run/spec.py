"""RunSpec: everything needed to redo one boot's work, as a frozen value with a JSON form.

A spec names the exact kernel (definition, source commit, patch hashes, config hash, cache key),
the image (recipe and key), the accelerator, the VM and its scratch disks, and the workload with
every parameter: for fio, each cell's filesystem (mkfs and mount options) and job (parameters
and the job file as rendered); for xfstests, the section, the tests, the expunges and the
``local.config`` as rendered. It is written as ``spec.json`` into every run directory by every
front end, and ``kharness reproduce`` reads it back.

The JSON form carries ``version``; :func:`.spec_read.spec_from_json` refuses a version it does not know and
names unknown or missing keys, so a spec can never be half-read.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from .. import __version__
from ..errors import HarnessError
from ..paths import REPO_ROOT
from ..util import run, write_text_atomic
from ..vocab import CellId

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
    icount_shift: int | None = None   # TCG with deterministic guest time: -icount shift=N (None: off)
    icount_sleep: bool = True         # with icount: sleep=on (off: an idle guest's clock jumps ahead)


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
    calibrate: bool = False      # a calibration job before the measured one (workloads.fio.FioJob)

    def hang_deadline(self, prep_seconds: float = 120.0) -> float:
        """How long fio may take before it counts as hung: runtime, prep and a wide margin."""
        return self.runtime * 3 + self.ramp_time + prep_seconds + 60


@dataclass(frozen=True)
class SysrqSampling:
    """sysrq captures over SSH during a workload: first after ``delay`` s, then every
    ``interval`` s (None: once). They perturb the numbers: keep them off compared runs."""

    keys: str = "wt"
    delay: float = 3.0
    interval: float | None = None

    @classmethod
    def evidence(cls, runtime: float) -> SysrqSampling:
        """One sysrq-w + sysrq-t capture a third into a ``runtime``-second job (1-3 s in): the
        completions are queued by then, and the dumps end well before a
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
    def cell_id(self) -> CellId:
        """The cell's typed key (fs, disk, pattern, engine)."""
        return CellId(self.fs.fstype, self.disk, self.job.pattern, self.job.engine)

    @property
    def id(self) -> str:
        """``fs/disk/pattern/engine``, e.g. ``ext4/nvme/unwritten-convert/libaio``."""
        return str(self.cell_id)


# -- workloads --------------------------------------------------------------------------------
# Each kind carries what the layers above ask of a workload (the WorkloadKind protocol), so they
# never test for a kind: its work items (what ``remaining`` lists), narrowing to some of them, the
# check that an item exists, the time a boot of it may take, and ``kind`` (JSON, labels, store).
# ``run.boot.RUNNERS`` holds how a boot carries each kind out.
@runtime_checkable
class WorkloadKind(Protocol):
    """What every workload kind offers (FioWorkload, XfstestsWorkload, CommandWorkload)."""

    kind: str

    def work(self) -> tuple[str, ...]:
        """The work items, in order: what a boot cut short lists as ``remaining``."""
        ...

    def narrowed(self, keep: Iterable[str]) -> WorkloadKind:
        """The same workload with only the work items in ``keep``."""
        ...

    def undone(self, measured: Iterable[str]) -> tuple[str, ...]:
        """The work items still to do when ``measured`` (cell ids) were recorded before a crash."""
        ...

    def require(self, item: str, where: str) -> None:
        """SpecError naming ``where`` and listing the items unless ``item`` is one of them."""
        ...

    def busy_seconds(self) -> float:
        """How long a boot of this workload may run past booting, its own deadlines included."""
        ...


@dataclass(frozen=True)
class FioWorkload:
    """fio cells measured in one boot, in order; ``setup`` commands run in the guest after the
    scratch filesystem is mounted and before each cell (argv lists)."""

    cells: tuple[FioCell, ...]
    sampling: SysrqSampling | None = None
    setup: tuple[tuple[str, ...], ...] = ()
    deadline_s: float | None = None
    kind: str = "fio"

    def work(self) -> tuple[str, ...]:
        return tuple(c.id for c in self.cells)

    def narrowed(self, keep: Iterable[str]) -> FioWorkload:
        keep = set(keep)
        return dataclasses.replace(self, cells=tuple(c for c in self.cells if c.id in keep))

    def undone(self, measured: Iterable[str]) -> tuple[str, ...]:
        done = set(measured)
        return tuple(c for c in self.work() if c not in done)

    def require(self, item: str, where: str) -> None:
        if item not in self.work():
            raise SpecError(where, "cell", f"no cell {item!r} (cells: {', '.join(self.work()) or 'none'})")

    def busy_seconds(self) -> float:
        return sum(180.0 + c.runs * ((self.deadline_s or c.job.hang_deadline()) + 60.0) for c in self.cells)


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

    def work(self) -> tuple[str, ...]:
        return tuple(self.tests)

    def narrowed(self, keep: Iterable[str]) -> XfstestsWorkload:
        keep = set(keep)
        return dataclasses.replace(self, tests=tuple(t for t in self.tests if t in keep))

    def undone(self, measured: Iterable[str]) -> tuple[str, ...]:
        return self.work()   # results are kept only in record.json: a crashed boot redoes them all

    def require(self, item: str, where: str) -> None:
        if item not in self.tests:
            raise SpecError(where, "tests", f"no test {item!r} (tests: {', '.join(self.tests) or 'none'})")

    def busy_seconds(self) -> float:
        return 900.0 + len(self.tests) * 3 * max(self.default_watchdog_s, 120.0)


@dataclass(frozen=True)
class CommandWorkload:
    """One command (argv) run in the guest with a deadline; its exit status is the result."""

    argv: tuple[str, ...]
    timeout_s: float = 600.0
    kind: str = "command"

    def work(self) -> tuple[str, ...]:
        return ("command",)

    def narrowed(self, keep: Iterable[str]) -> CommandWorkload:
        return self   # one item: nothing to narrow

    def undone(self, measured: Iterable[str]) -> tuple[str, ...]:
        return self.work()

    def require(self, item: str, where: str) -> None:
        if item != "command":
            raise SpecError(where, "workload", f"no item {item!r}: a command run has one item, 'command'")

    def busy_seconds(self) -> float:
        return self.timeout_s + 60.0


Workload = FioWorkload | XfstestsWorkload | CommandWorkload
WORKLOAD_KINDS: dict[str, type] = {"fio": FioWorkload, "xfstests": XfstestsWorkload, "command": CommandWorkload}


@dataclass(frozen=True)
class HarnessSpec:
    """Which kharness produced the run."""

    version: str
    commit: str


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
        write_text_atomic(path, self.dumps() + "\n")
        return path

    def cell(self, cell_id: str) -> FioCell:
        """The fio cell named ``cell_id``; SpecError listing the cells otherwise."""
        cells: tuple[FioCell, ...] = getattr(self.workload, "cells", ())
        for c in cells:
            if c.id == cell_id:
                return c
        raise SpecError(self.label, "cell", f"no cell {cell_id!r} (cells: "
                        f"{', '.join(c.id for c in cells) or 'none: not a fio run'})")

    def narrowed(self, keep: Iterable[str]) -> RunSpec:
        """This spec with only the work items (cells, tests) named in ``keep``."""
        return dataclasses.replace(self, workload=self.workload.narrowed(keep))

    def same_work(self, other: RunSpec) -> list[str]:
        """Keys where ``other`` would do different work (label, role, index and harness aside)."""
        a, b = self.to_json(), other.to_json()
        for k in ("label", "role", "run_index", "harness"):
            a.pop(k), b.pop(k)
        return _diff(a, b)


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
