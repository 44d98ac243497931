"""A spec from outside (a run directory, the store, a Ray peer): its JSON read into a RunSpec,
shape first (known keys, scalar types, the version), then every value checked as strictly as the
CLI's own options (:mod:`.spec_checks`). Nothing else builds a RunSpec from JSON."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from ..util import InputTooLarge, read_bytes_capped
from .spec import (
    SPEC_VERSION,
    WORKLOAD_KINDS,
    DiskSpec,
    FilesystemSpec,
    FioCell,
    FioJobSpec,
    FragmentRef,
    HarnessSpec,
    ImageSpec,
    KernelSpec,
    PatchRef,
    RunSpec,
    SpecError,
    SysrqSampling,
    VMSpec,
)
from .spec_checks import check_spec


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
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
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
        if not isinstance(value, dict) or value.get("kind") not in WORKLOAD_KINDS:
            raise SpecError(where, f"{key}.kind", f"want one of {', '.join(WORKLOAD_KINDS)}")
        return _build(WORKLOAD_KINDS[value["kind"]], value, where, key)
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
    ("XfstestsWorkload", "tests"): "strs", ("CommandWorkload", "argv"): "strs",
    ("XfstestsWorkload", "expunged"): ("list", "strs"),
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
    return check_spec(spec, where)   # values bounded as strictly as the CLI's options


def read_spec(path: Path) -> RunSpec:
    """Read ``spec.json`` (or a run directory holding one)."""
    p = path / "spec.json" if path.is_dir() else path
    try:
        data = json.loads(read_bytes_capped(p, 16 << 20, "run spec"))   # a spec is a few KB
    except FileNotFoundError:
        raise SpecError(str(p), "", "no spec.json: not a run directory written by kharness") from None
    except (OSError, ValueError, InputTooLarge) as e:
        raise SpecError(str(p), "", f"unreadable: {e}") from None
    return spec_from_json(data, str(p))
