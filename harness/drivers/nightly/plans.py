"""Nightly plans: nightly/NAME.yaml.

A plan says what a night measures: the kernels to test as references (``NAME`` or ``NAME@REF``,
REF a branch, tag or commit of the definition's source repository, resolved to a commit at the
start of each night), the baseline reference they are compared with the same night, the fio
matrix (filesystems x disks x patterns x engines, with runtime, size, iodepth and repeats), the
xfstests selections with a retry count, the wall-time budget, which cells matter most
(priorities), which cells are measured twice on the baseline as controls (their false-alarm rate
is the detector's measured noise floor), and the history detector's settings.

Everything is validated at load time, naming the file and key: the schema rejects unknown keys;
kernel names must be definitions, refs must look like git refs, filesystems, disks, patterns,
engines, sections and test names must exist, and every priority or control pattern must match a
cell of the matrix (a typo never silently matches nothing).
"""

from __future__ import annotations

import fnmatch
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...config.fstests import GROUP_NAME, TEST_NAME, get_section
from ...config.kernels import load_kernel
from ...config.loader import check_name, load_yaml
from ...errors import DefinitionError, HarnessError
from ...paths import project_root
from ...vm.disks import parse_disk
from ...vocab import CellId, KernelRef, VocabError, check_engine, check_pattern
from ...workloads.fio import FioJob, validate_job
from ...workloads.fs import get_filesystem

_STRS = {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1, "uniqueItems": True}
_SIZE = {"type": "string", "pattern": r"^[1-9][0-9]*[kKmMgG]?$"}

SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["kernels", "baseline"],
    "properties": {
        "description": {"type": "string"},
        "kernels": _STRS,
        "baseline": {"type": "string", "minLength": 1},
        "budget_minutes": {"type": "number", "exclusiveMinimum": 0},
        "evidence": {"type": "boolean"},
        "fio": {
            "type": "object", "additionalProperties": False,
            "required": ["filesystems", "disks", "patterns", "engines"],
            "properties": {
                "filesystems": _STRS, "disks": _STRS, "patterns": _STRS, "engines": _STRS,
                "runtime": {"type": "integer", "minimum": 1, "maximum": 3600},
                "size": _SIZE, "bs": _SIZE,
                "iodepth": {"type": "integer", "minimum": 1, "maximum": 4096},
                "repeats": {"type": "integer", "minimum": 1, "maximum": 100},
                "disk_size": {"type": "string", "pattern": r"^[0-9]+[MG]$"},
            },
        },
        "priorities": {
            "type": "array",
            "items": {"type": "object", "additionalProperties": False, "required": ["cells", "priority"],
                      "properties": {"cells": {"type": "string", "minLength": 1},
                                     "priority": {"type": "integer"}}},
        },
        "control": {
            "type": "object", "additionalProperties": False, "required": ["cells"],
            "properties": {"cells": _STRS},
        },
        "xfstests": {
            "type": "object", "additionalProperties": False, "required": ["sections"],
            "properties": {
                "retries": {"type": "integer", "minimum": 0, "maximum": 20},
                "disk": {"type": "string", "enum": ["virtio", "nvme", "scsi"]},
                "watchdog": {"type": "number", "exclusiveMinimum": 0},
                "sections": {
                    "type": "array", "minItems": 1,
                    "items": {"type": "object", "additionalProperties": False, "required": ["section", "tests"],
                              "properties": {"section": {"type": "string", "minLength": 1},
                                             "tests": _STRS,
                                             "priority": {"type": "integer"}}},
                },
            },
        },
        "history": {
            "type": "object", "additionalProperties": False,
            "properties": {
                "min_nights": {"type": "integer", "minimum": 2, "maximum": 1000},
                "window": {"type": "integer", "minimum": 1, "maximum": 30},
                "alpha": {"type": "number", "exclusiveMinimum": 0, "maximum": 0.5},
                "min_effect_pct": {"type": "number", "minimum": 0},
                "max_nights": {"type": "integer", "minimum": 2, "maximum": 10000},
            },
        },
        "estimate": {
            "type": "object", "additionalProperties": False,
            "properties": {k: {"type": "number", "minimum": 0}
                           for k in ("boot_s", "mkfs_s", "fio_overhead_s", "xfstest_s", "build_s")},
        },
    },
}

@dataclass(frozen=True)
class FioPlan:
    """The fio matrix of a plan; every cell is measured ``repeats`` times, one boot each."""

    filesystems: tuple[str, ...]
    disks: tuple[str, ...]
    patterns: tuple[str, ...]
    engines: tuple[str, ...]
    runtime: int = 5
    size: str = "32m"
    bs: str = "4k"
    iodepth: int = 32
    repeats: int = 3
    disk_size: str = "2G"

    def cell_ids(self) -> list[str]:
        """``fs/disk/pattern/engine`` for every cell, filesystems varying slowest."""
        return [str(CellId(*t)) for t in itertools.product(self.filesystems, self.disks, self.patterns, self.engines)]


@dataclass(frozen=True)
class XfstestsSelection:
    """Tests (names or ``group:NAME``) of one fstests section."""

    section: str
    tests: tuple[str, ...]
    priority: int = 0


@dataclass(frozen=True)
class HistoryPolicy:
    """The history detector's settings (see :mod:`harness.results.history`)."""

    min_nights: int = 5          # nights of history before change-point detection takes over
    window: int = 3              # a change point this many nights back or fewer is "new"
    alpha: float = 0.05          # significance of the newest-segment test (Bonferroni over the window)
    min_effect_pct: float = 5.0  # smaller changes are never flagged
    max_nights: int = 60         # how far back the series reaches


@dataclass(frozen=True)
class Estimate:
    """Seconds per step, for the budget (defaults measured on the 2-core TCG reference machine)."""

    boot_s: float = 8.0
    mkfs_s: float = 2.0
    fio_overhead_s: float = 5.0
    xfstest_s: float = 40.0
    build_s: float = 60.0


@dataclass(frozen=True)
class Plan:
    """A validated nightly plan."""

    name: str
    path: Path
    description: str
    kernels: tuple[str, ...]
    baseline: str
    fio: FioPlan | None
    xfstests: tuple[XfstestsSelection, ...] = ()
    retries: int = 2
    xfstests_disk: str = "virtio"
    xfstests_watchdog: float = 1800.0
    budget_s: float = 7200.0
    priorities: tuple[tuple[str, int], ...] = ()
    control: tuple[str, ...] = ()
    evidence: bool = True
    history: HistoryPolicy = field(default_factory=HistoryPolicy)
    estimate: Estimate = field(default_factory=Estimate)

    def cells(self) -> list[str]:
        return self.fio.cell_ids() if self.fio else []

    def priority(self, cell: str) -> int:
        """The first matching priority rule's value (0 if none matches)."""
        return next((p for pat, p in self.priorities if fnmatch.fnmatchcase(cell, pat)), 0)

    def control_cells(self) -> list[str]:
        return [c for c in self.cells() if any(fnmatch.fnmatchcase(c, p) for p in self.control)]


def plans_dir() -> Path:
    return project_root() / "nightly"


def list_plans(directory: Path | None = None) -> list[str]:
    return sorted(p.stem for p in (directory or plans_dir()).glob("*.yaml"))


def check_kernel_ref(text: str, where: Path, key: str) -> KernelRef:
    """``NAME`` or ``NAME@REF`` (:meth:`KernelRef.parse`) whose NAME is a kernel definition;
    DefinitionError naming ``where`` and ``key`` otherwise."""
    try:
        ref = KernelRef.parse(text)
    except VocabError as e:
        raise DefinitionError(where, key, str(e)) from None
    try:
        load_kernel(ref.name)
    except DefinitionError as e:
        raise DefinitionError(where, key, f"{text!r}: {e.message}") from None
    return ref


def _check_fio(path: Path, d: dict) -> FioPlan:
    for i, f in enumerate(d["filesystems"]):
        try:
            get_filesystem(f)
        except HarnessError as e:
            raise DefinitionError(path, f"fio.filesystems[{i}]", str(e)) from None
    for i, k in enumerate(d["disks"]):
        try:
            if ":" in k:
                raise HarnessError("give the kind only (virtio, nvme, scsi); the size is fio.disk_size")
            parse_disk(k)
        except HarnessError as e:
            raise DefinitionError(path, f"fio.disks[{i}]", str(e)) from None
    for key, check in (("patterns", check_pattern), ("engines", check_engine)):
        for i, v in enumerate(d[key]):
            try:
                check(v)
            except VocabError as e:
                raise DefinitionError(path, f"fio.{key}[{i}]", str(e)) from None
    fio = FioPlan(tuple(d["filesystems"]), tuple(d["disks"]), tuple(d["patterns"]), tuple(d["engines"]),
                  **{k: d[k] for k in ("runtime", "size", "bs", "iodepth", "repeats", "disk_size") if k in d})
    try:
        validate_job(FioJob(pattern=fio.patterns[0], directory="/mnt/scratch/fio", engine=fio.engines[0],
                            iodepth=fio.iodepth, bs=fio.bs, size=fio.size, runtime=fio.runtime))
    except HarnessError as e:
        raise DefinitionError(path, "fio", str(e)) from None
    return fio


def _check_xfstests(path: Path, d: dict) -> tuple[XfstestsSelection, ...]:
    out = []
    for i, s in enumerate(d["sections"]):
        try:
            get_section(s["section"])
        except HarnessError as e:
            raise DefinitionError(path, f"xfstests.sections[{i}].section", str(e)) from None
        for j, t in enumerate(s["tests"]):
            ok = GROUP_NAME.match(t[6:]) if t.startswith("group:") else TEST_NAME.match(t)
            if not ok:
                raise DefinitionError(path, f"xfstests.sections[{i}].tests[{j}]",
                                      f"{t!r} is not a test name (generic/001) or group:NAME")
        out.append(XfstestsSelection(s["section"], tuple(s["tests"]), s.get("priority", 0)))
    names = [s.section for s in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise DefinitionError(path, "xfstests.sections", f"section {dup[0]} is listed twice")
    return tuple(out)


def load_plan_file(path: Path, name: str | None = None) -> Plan:
    """Load and validate one plan file."""
    data = load_yaml(path, SCHEMA)
    name = check_name(name or path.stem, path, "", "plan")
    kernels = tuple(data["kernels"])
    for i, k in enumerate(kernels):
        check_kernel_ref(k, path, f"kernels[{i}]")
    check_kernel_ref(data["baseline"], path, "baseline")
    if data["baseline"] in kernels:
        raise DefinitionError(path, "kernels", f"{data['baseline']!r} is the baseline itself; "
                              "measure the baseline against itself with control.cells")
    fio = _check_fio(path, data["fio"]) if "fio" in data else None
    xfs = data.get("xfstests", {})
    sels = _check_xfstests(path, xfs) if xfs else ()
    if fio is None and not sels:
        raise DefinitionError(path, "fio", "a plan needs fio cells, xfstests sections, or both")
    cells = fio.cell_ids() if fio else []
    prios = []
    for i, r in enumerate(data.get("priorities", [])):
        if not any(fnmatch.fnmatchcase(c, r["cells"]) for c in cells):
            raise DefinitionError(path, f"priorities[{i}].cells", f"{r['cells']!r} matches no cell of the "
                                  f"fio matrix (cells look like "
                                  f"{cells[0] if cells else 'ext4/nvme/unwritten-convert/libaio'})")
        prios.append((r["cells"], r["priority"]))
    control = tuple(data.get("control", {}).get("cells", ()))
    for i, pat in enumerate(control):
        if not any(fnmatch.fnmatchcase(c, pat) for c in cells):
            raise DefinitionError(path, f"control.cells[{i}]", f"{pat!r} matches no cell of the fio matrix")
    return Plan(name=name, path=path, description=data.get("description", ""), kernels=kernels,
                baseline=data["baseline"], fio=fio, xfstests=sels, retries=xfs.get("retries", 2),
                xfstests_disk=xfs.get("disk", "virtio"), xfstests_watchdog=float(xfs.get("watchdog", 1800)),
                budget_s=float(data.get("budget_minutes", 120)) * 60, priorities=tuple(prios), control=control,
                evidence=data.get("evidence", True), history=HistoryPolicy(**data.get("history", {})),
                estimate=Estimate(**data.get("estimate", {})))


def load_plan(ref: str, directory: Path | None = None) -> Plan:
    """A plan by name (``nightly/NAME.yaml``) or by path to a ``.yaml`` file."""
    if ref.endswith((".yaml", ".yml")) or "/" in ref:
        p = Path(ref)
        if not p.exists():
            raise DefinitionError(p, "", "no such plan file")
        return load_plan_file(p.resolve())
    d = directory or plans_dir()
    check_name(ref, d, "", "plan")
    path = d / f"{ref}.yaml"
    if not path.exists():
        raise DefinitionError(path, "", f"no plan named {ref!r} (known: {', '.join(list_plans(d)) or 'none'})")
    return load_plan_file(path)
