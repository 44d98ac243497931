"""What a spec read from JSON must hold before anything acts on it: the CLI's own rules.

:func:`run.spec.spec_from_json` builds the dataclasses (shape, keys, scalar types) and then calls
:func:`check_spec`. A ``spec.json`` comes from elsewhere (a shared run directory, the results
store, a Ray peer, a nightly report), and its values reach QEMU option strings, host paths, git,
the guest and every deadline, so each is held to what the front ends themselves produce:

* disks: a known kind, a size up to ``vm.disks.MAX_SIZE``, the serial rule (``vm.disks.SERIAL``);
* kernel and image: definition names (``vocab.valid_name``), cache keys of the exact hex form
  the caches use, git commits as full hex object names;
* numbers: finite (no ``Infinity``/``NaN``) and bounded: every deadline in (0, 24 h], memory and
  CPUs (``vm.machine``), fio parameters (``workloads.fio.LIMITS``), runs, indexes, counts;
* workloads: a known kind; fio cells of the vocabulary with jobs that render; xfstests sections
  and test names by their patterns; guest commands as non-empty argv lists of strings without
  NUL, bounded in number and length.

The first value that breaks a rule raises SpecError naming the file and the key
(``spec.json: disks[1].serial: ...``). The limits are listed in docs/threat-model.md.
"""

from __future__ import annotations

import dataclasses
import math
import re
import shlex
from collections.abc import Sequence
from typing import Any

from ..config.fstests import SECTION_NAME, TEST_NAME
from ..errors import HarnessError
from ..image.build import IMAGE_KEY
from ..kernel.build import KERNEL_KEY
from ..vm.disks import Disk
from ..vm.machine import CPUS, ICOUNT_SHIFT, MEMORY_MB
from ..vocab import DISKS, ENGINES, FILESYSTEMS, NAME_RULE, PATTERNS, valid_name
from ..workloads.fio import LIMITS, MAX_BYTES, FioJob, size_bytes, validate_job
from .spec import MOUNTPOINT, RunSpec, SpecError

MAX_DEADLINE_S = 24 * 3600.0     # any timeout, deadline or watchdog a spec sets
MAX_RUNS = 100                   # runs of one fio cell in one boot (nightly plans: repeats <= 100)
MAX_RUN_INDEX = 100_000
MAX_DISKS = 8
MAX_CELLS = 1000
MAX_TESTS = 5000                 # tests of one xfstests boot
MAX_COMMANDS = 64                # setup commands of a fio workload
MAX_ARGS = 1000                  # words of one guest command
MAX_ARGV_CHARS = 65536           # characters of one guest command, all words together
MAX_TEXT = 200                   # a role
MAX_LABEL = 1000                 # a label names kernel refs (NAME@REF: up to 457 characters)
MAX_CMDLINE = 1024               # the spec's part of the kernel command line (COMMAND_LINE_SIZE: 2048 on x86)
ACCELS = ("kvm", "tcg")
COMMIT = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")   # a SHA-1 or SHA-256 git object name
SYSRQ_KEYS = re.compile(r"^[0-9a-z]{1,16}$")               # sysrq command keys (drivers/tty/sysrq.c)
FSTYPE = re.compile(r"^[a-z0-9]{1,32}$")
_FIO_DIR = re.compile(r"^[A-Za-z0-9_./-]{1,200}$")
_FIO_SIZE = re.compile(r"^[1-9][0-9]{0,15}[kmgt]?$", re.IGNORECASE)   # a fio size, short enough to parse


class _Checker:
    """The spec's file (``where``) and a SpecError for a key of it."""

    def __init__(self, where: str):
        self.where = where

    def fail(self, key: str, message: str) -> SpecError:
        return SpecError(self.where, key, message)

    def number(self, key: str, value: Any, low: float, high: float, *, low_open: bool = False) -> None:
        """A finite number in [low, high] (or (low, high] with ``low_open``)."""
        if isinstance(value, float) and not math.isfinite(value):
            raise self.fail(key, f"{value!r}: want a finite number")
        if value < low or (low_open and value == low):
            raise self.fail(key, f"{value!r}: want at least {low}" + (" (exclusive)" if low_open else ""))
        if value > high:
            raise self.fail(key, f"{value!r}: want at most {high}")

    def deadline(self, key: str, value: Any) -> None:
        self.number(key, value, 0, MAX_DEADLINE_S, low_open=True)

    def text(self, key: str, value: str, what: str, *, max_len: int = MAX_TEXT, empty: bool = False) -> None:
        """Printable text (no control characters) of at most ``max_len`` characters."""
        if (not value and not empty) or len(value) > max_len or not value.isprintable():
            raise self.fail(key, f"{what} {value[:80]!r}: want 1-{max_len} printable characters")

    def pattern(self, key: str, value: str, rx: re.Pattern[str], what: str, rule: str) -> None:
        if not rx.match(value):
            raise self.fail(key, f"{what} {value[:80]!r}: want {rule}")

    def argv(self, key: str, argv: Sequence[str]) -> None:
        """A guest command: a non-empty list of strings without NUL, bounded."""
        if not argv:
            raise self.fail(key, "an empty command: want an argv list of at least one string")
        if len(argv) > MAX_ARGS:
            raise self.fail(key, f"{len(argv)} words: want at most {MAX_ARGS}")
        if sum(len(a) for a in argv) > MAX_ARGV_CHARS:
            raise self.fail(key, f"too long: want at most {MAX_ARGV_CHARS} characters in all")
        for i, a in enumerate(argv):
            if "\0" in a:
                raise self.fail(f"{key}[{i}]", "holds a NUL character")


def _finite(c: _Checker, obj: Any, key: str = "") -> None:
    """Every float anywhere in the spec is finite (JSON's Infinity and NaN are not numbers here)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        raise c.fail(key, f"{obj!r}: want a finite number")
    if dataclasses.is_dataclass(obj):
        for f in dataclasses.fields(obj):
            _finite(c, getattr(obj, f.name), f"{key}.{f.name}" if key else f.name)
    elif isinstance(obj, tuple):
        for i, v in enumerate(obj):
            _finite(c, v, f"{key}[{i}]")


def _identity(c: _Checker, spec: RunSpec) -> None:
    c.text("label", spec.label, "label", max_len=MAX_LABEL)
    if spec.role is not None:
        c.text("role", spec.role, "role")
    c.number("run_index", spec.run_index, 0, MAX_RUN_INDEX)
    if spec.accel not in ACCELS:
        raise c.fail("accel", f"{spec.accel!r}: use one of {', '.join(ACCELS)}")


def _artifacts(c: _Checker, spec: RunSpec) -> None:
    k, i = spec.kernel, spec.image
    if not valid_name(k.name):
        raise c.fail("kernel.name", f"invalid kernel name {k.name[:80]!r}: use {NAME_RULE}")
    c.pattern("kernel.key", k.key, KERNEL_KEY, "kernel cache key", "24 lowercase hex digits")
    for key in ("base_commit", "commit"):
        c.pattern(f"kernel.{key}", getattr(k, key), COMMIT, "git commit", "a full hex object name (40 or 64 digits)")
    if not valid_name(i.recipe):
        raise c.fail("image.recipe", f"invalid image recipe name {i.recipe[:80]!r}: use {NAME_RULE}")
    c.pattern("image.key", i.key, IMAGE_KEY, "image key", "20 lowercase hex digits")


def _machine(c: _Checker, spec: RunSpec) -> None:
    c.number("vm.memory_mb", spec.vm.memory_mb, *MEMORY_MB)
    c.number("vm.cpus", spec.vm.cpus, *CPUS)
    c.text("vm.cmdline", spec.vm.cmdline, "kernel cmdline", max_len=MAX_CMDLINE, empty=True)
    if spec.vm.icount_shift is not None:
        if isinstance(spec.vm.icount_shift, bool) or not isinstance(spec.vm.icount_shift, int):
            raise c.fail("vm.icount_shift", f"{spec.vm.icount_shift!r}: want an integer or null")
        c.number("vm.icount_shift", spec.vm.icount_shift, *ICOUNT_SHIFT)
        if spec.accel != "tcg":
            raise c.fail("vm.icount_shift", f"icount needs accel tcg, not {spec.accel!r}")
    if not isinstance(spec.vm.icount_sleep, bool):
        raise c.fail("vm.icount_sleep", f"{spec.vm.icount_sleep!r}: want true or false")
    if len(spec.disks) > MAX_DISKS:
        raise c.fail("disks", f"{len(spec.disks)} disks: want at most {MAX_DISKS}")
    for n, d in enumerate(spec.disks):
        key = f"disks[{n}]"
        if d.kind not in DISKS:
            raise c.fail(f"{key}.kind", f"{d.kind[:40]!r}: use one of {', '.join(DISKS)}")
        try:
            Disk(kind=d.kind, size=d.size, serial=d.serial)   # the rules the VM itself applies
        except HarnessError as e:
            field = "serial" if str(e).startswith("disk serial") else "size"
            raise c.fail(f"{key}.{field}", str(e)) from None


def _fio(c: _Checker, wl: Any) -> None:
    if not wl.cells or len(wl.cells) > MAX_CELLS:
        raise c.fail("workload.cells", f"{len(wl.cells)} cells: want 1 to {MAX_CELLS}")
    for n, cell in enumerate(wl.cells):
        key = f"workload.cells[{n}]"
        if cell.fs.fstype not in FILESYSTEMS:
            raise c.fail(f"{key}.fs.fstype", f"{cell.fs.fstype[:40]!r}: use one of {', '.join(FILESYSTEMS)}")
        if not cell.fs.mkfs or len(cell.fs.mkfs) > MAX_ARGS:
            raise c.fail(f"{key}.fs.mkfs", f"mkfs argv of {len(cell.fs.mkfs)} words: want 1 to {MAX_ARGS}")
        c.argv(f"{key}.fs.mkfs", cell.fs.mkfs)
        c.text(f"{key}.fs.mount_options", cell.fs.mount_options, "mount options", empty=True)
        if cell.disk not in DISKS:
            raise c.fail(f"{key}.disk", f"{cell.disk[:40]!r}: use one of {', '.join(DISKS)}")
        c.number(f"{key}.runs", cell.runs, 1, MAX_RUNS)
        _job(c, f"{key}.job", cell.job)
    if len(wl.setup) > MAX_COMMANDS:
        raise c.fail("workload.setup", f"{len(wl.setup)} commands: want at most {MAX_COMMANDS}")
    for n, argv in enumerate(wl.setup):
        c.argv(f"workload.setup[{n}]", argv)
    if wl.deadline_s is not None:
        c.deadline("workload.deadline_s", wl.deadline_s)
    if wl.sampling is not None:
        s = wl.sampling
        c.pattern("workload.sampling.keys", s.keys, SYSRQ_KEYS, "sysrq keys", "1-16 of [0-9a-z]")
        c.number("workload.sampling.delay", s.delay, 0, MAX_DEADLINE_S)
        if s.interval is not None:
            c.deadline("workload.sampling.interval", s.interval)   # as `kharness run --sample` takes it


def _job(c: _Checker, key: str, job: Any) -> None:
    if job.pattern not in PATTERNS:
        raise c.fail(f"{key}.pattern", f"{job.pattern[:40]!r}: use one of {', '.join(PATTERNS)}")
    if job.engine not in ENGINES:
        raise c.fail(f"{key}.engine", f"{job.engine[:40]!r}: use one of {', '.join(ENGINES)}")
    for name, (low, high) in LIMITS.items():
        c.number(f"{key}.{name}", getattr(job, name), low, high)
    for name in ("bs", "size"):
        value = getattr(job, name)
        if not _FIO_SIZE.match(value) or size_bytes(value) > MAX_BYTES[name]:
            raise c.fail(f"{key}.{name}", f"{value[:40]!r}: want a fio size like 4k or 64m, at most "
                                          f"{MAX_BYTES[name] >> 20}m")
    d = job.directory
    if not (d == MOUNTPOINT or d.startswith(MOUNTPOINT + "/")) or not _FIO_DIR.match(d) or ".." in d:
        raise c.fail(f"{key}.directory", f"{d[:80]!r}: want a path under {MOUNTPOINT} of [A-Za-z0-9_./-]")
    try:   # whatever else the CLI's own check refuses
        validate_job(FioJob(pattern=job.pattern, directory=d, engine=job.engine, iodepth=job.iodepth,
                            numjobs=job.numjobs, bs=job.bs, size=job.size, runtime=job.runtime,
                            ramp_time=job.ramp_time, tag="r0", calibrate=job.calibrate))
    except HarnessError as e:
        raise c.fail(key, str(e)) from None


def _test_name(c: _Checker, key: str, test: str) -> None:
    if not TEST_NAME.match(test) or any(part.startswith(".") for part in test.split("/")):
        raise c.fail(key, f"xfstests test {test[:80]!r}: want e.g. generic/001")


def _xfstests(c: _Checker, wl: Any) -> None:
    c.pattern("workload.section", wl.section, SECTION_NAME, "section", "[A-Za-z0-9_]+")
    c.pattern("workload.fstype", wl.fstype, FSTYPE, "fstype", "1-32 of [a-z0-9]")
    c.text("workload.mkfs_options", wl.mkfs_options, "mkfs options", max_len=1000, empty=True)
    if not wl.tests or len(wl.tests) > MAX_TESTS:
        raise c.fail("workload.tests", f"{len(wl.tests)} tests: want 1 to {MAX_TESTS}")
    for n, t in enumerate(wl.tests):
        _test_name(c, f"workload.tests[{n}]", t)
    for n, pair in enumerate(wl.expunged):
        if len(pair) != 2:
            raise c.fail(f"workload.expunged[{n}]", "want [test, reason]")
        _test_name(c, f"workload.expunged[{n}]", pair[0])
    c.deadline("workload.default_watchdog_s", wl.default_watchdog_s)


def _command(c: _Checker, wl: Any) -> None:
    # An interactive `kharness vm boot` records an empty argv: running it again runs nothing.
    if wl.argv:
        c.argv("workload.argv", wl.argv)
    c.deadline("workload.timeout_s", wl.timeout_s)


_WORKLOAD_CHECKS = {"fio": _fio, "xfstests": _xfstests, "command": _command}


def check_spec(spec: RunSpec, where: str) -> RunSpec:
    """``spec`` if every value is one the CLI would produce or accept; SpecError naming ``where``
    (the spec's file when known) and the first key that is not."""
    c = _Checker(where)
    _finite(c, spec)
    _identity(c, spec)
    _artifacts(c, spec)
    _machine(c, spec)
    kind = getattr(spec.workload, "kind", None)
    if kind not in _WORKLOAD_CHECKS:
        raise c.fail("workload.kind", f"{kind!r}: want one of {', '.join(_WORKLOAD_CHECKS)}")
    _WORKLOAD_CHECKS[kind](c, spec.workload)
    return spec


def _shown(argv: Sequence[str]) -> str:
    """A command as a shell line for the terminal: quoted, control characters as escapes."""
    return " ".join(shlex.quote(a) if a.isprintable() else "'" + a.encode("unicode_escape").decode() + "'"
                    for a in argv)


def describe_spec(spec: RunSpec) -> list[str]:
    """What running ``spec`` does, one line per thing, for a user to read before it runs: the
    kernel, image, VM and disks, the workload, and every command it runs in the guest."""
    k, vm = spec.kernel, spec.vm
    lines = [f"kernel {k.name} (key {k.key}, commit {k.commit[:12]}, {len(k.patches)} patches), "
             f"image {spec.image.recipe} (key {spec.image.key}), accelerator {spec.accel}",
             f"VM: memory {vm.memory_mb} MiB, {vm.cpus} CPUs"
             + (f", kernel cmdline + {vm.cmdline!r}" if vm.cmdline else ""),
             "disks: " + (", ".join(f"{d.kind} {d.size} serial {d.serial}" for d in spec.disks) or "none")]
    wl: Any = spec.workload
    if wl.kind == "fio":
        for cell in wl.cells:
            j = cell.job
            lines.append(f"fio cell {cell.id} x{cell.runs}: bs {j.bs}, size {j.size}, iodepth {j.iodepth}, "
                         f"numjobs {j.numjobs}, runtime {j.runtime}s in {j.directory}")
            lines.append(f"  guest command: {_shown(cell.fs.mkfs)}")
        lines += [f"  guest command (setup): {_shown(argv)}" for argv in wl.setup]
        if wl.sampling is not None:
            lines.append(f"  sysrq {wl.sampling.keys} during each run (after {wl.sampling.delay:g}s)")
    elif wl.kind == "xfstests":
        lines.append(f"xfstests section {wl.section} ({wl.fstype}): {len(wl.tests)} tests: {' '.join(wl.tests)}")
        if wl.expunged:
            lines.append("  expunged: " + " ".join(t for t, _ in wl.expunged))
    else:
        lines.append(f"guest command: {_shown(wl.argv) or '(none: an interactive session)'} "
                     f"(deadline {wl.timeout_s:g}s)")
    return lines
