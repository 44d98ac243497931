"""xfstests (fstests) local.config, expunges and the ./check command line.

Sections (:mod:`harness.config.fstests`) are rendered into one fstests ``local.config`` with a
``[section]`` per kharness section; ``./check -s SECTION -R xunit ...`` then runs in the guest,
with an expunge file (``-E``) listing the section's expunge entries that apply to the kernel under
test (no kernel-version condition, or one it matches).

How fstests reads a sectioned config (common/config, parse_config_section): it is *not* sourced.
Each line goes through sed (everything after ``#`` dropped, blanks around every ``=`` squeezed,
one pair of surrounding quotes removed) and is eval'ed as ``export KEY="value"``; MKFS_OPTIONS is
eval'ed once more by ``_scratch_do_mkfs``. So values are written double-quoted and restricted to
characters that survive both (``SAFE_VALUE`` in :mod:`harness.config.fstests`). Values also carry
over between sections: check parses the file's first section at start-up, then the selected one;
an *empty* MKFS_OPTIONS, MOUNT_OPTIONS, TEST_FS_MOUNT_OPTS or FSCK_OPTIONS means "keep the
previous section's value" when FSTYP is unchanged. The renderer therefore sets every device
variable in every section and refuses a section list where an empty one of those would inherit
another section's value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

from ..config.fstests import (
    GROUP_NAME,
    INHERITING_VARS,
    MANAGED_VARS,
    SAFE_PATH,
    SECTION_NAME,
    TEST_NAME,
    Section,
    _unsafe_value,
    parse_version_condition,
)
from ..errors import DefinitionError, HarnessError

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates" / "xfstests"
TEMPLATE = "local.config.j2"


# ---------------------------------------------------------------------------------------------
# local.config


@dataclass
class DiskMap:
    """Guest device paths for fstests (found by disk serial; plain strings here)."""

    test_dev: str
    scratch_dev: str | None = None
    scratch_pool: list[str] = field(default_factory=list)
    logdev: str | None = None
    test_dir: str = "/mnt/test"
    scratch_mnt: str = "/mnt/scratch"


def fstests_quote(value: Any) -> str:
    """``value`` double-quoted for fstests' config parser; HarnessError if it cannot be."""
    text = str(value)
    why = _unsafe_value(text)
    if why:
        raise HarnessError(f"value {text!r} cannot go into local.config: {why}")
    return f'"{text}"'


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                             trim_blocks=True, lstrip_blocks=True, autoescape=False)
    env.filters["fstests_quote"] = fstests_quote
    return env


def _check_path(section: str, what: str, value: str) -> None:
    if not SAFE_PATH.match(value):
        raise HarnessError(f"section {section}: {what} {value!r} is not an absolute path of "
                           "[A-Za-z0-9_.:/+@-] (fstests' config parser would mangle it)")


def _section_context(s: Section, disks: DiskMap, all_vars: set[str]) -> dict[str, Any]:
    if not SECTION_NAME.match(s.name):
        raise HarnessError(f"section name {s.name!r}: fstests only recognises [A-Za-z0-9_]+")
    for what, value in (("TEST_DEV", disks.test_dev), ("TEST_DIR", disks.test_dir),
                        ("SCRATCH_MNT", disks.scratch_mnt)):
        _check_path(s.name, what, value)
    pool: list[str] = []
    if s.scratch_pool:
        if len(disks.scratch_pool) < s.scratch_pool:
            raise HarnessError(f"section {s.name} needs a scratch pool of {s.scratch_pool} devices "
                               f"but the VM has {len(disks.scratch_pool)} "
                               f"({' '.join(disks.scratch_pool) or 'none'})")
        pool = list(disks.scratch_pool[:s.scratch_pool])
        for dev in pool:
            _check_path(s.name, "SCRATCH_DEV_POOL device", dev)
    else:
        if not disks.scratch_dev:
            raise HarnessError(f"section {s.name} needs a scratch device (SCRATCH_DEV) "
                               "but the VM has none")
        _check_path(s.name, "SCRATCH_DEV", disks.scratch_dev)
    logdev = ""
    if s.logdev:
        if not disks.logdev:
            raise HarnessError(f"section {s.name} needs an external log device (SCRATCH_LOGDEV) "
                               "but the VM has none")
        _check_path(s.name, "SCRATCH_LOGDEV", disks.logdev)
        logdev = disks.logdev
    scratch: list[str | None] = list(pool) if pool else [disks.scratch_dev]
    named = [disks.test_dev, *scratch, logdev]
    used = [d for d in named if d]
    clash = sorted({d for d in used if used.count(d) > 1})
    if clash:
        raise HarnessError(f"section {s.name} would use {', '.join(clash)} for more than one of "
                           "TEST_DEV, SCRATCH_DEV(_POOL), SCRATCH_LOGDEV")
    values = {"FSTYP": s.fstype, "MKFS_OPTIONS": s.mkfs_options, "MOUNT_OPTIONS": s.mount_options,
              **s.vars}
    for key, value in values.items():
        why = _unsafe_value(value)
        if why:
            raise HarnessError(f"section {s.name}: {key} {value!r} {why}")
    extra = {k: v for k, v in s.vars.items() if k not in ("USE_EXTERNAL", "RECREATE_TEST_DEV")}
    for key in extra:
        if key in MANAGED_VARS:
            raise HarnessError(f"section {s.name}: vars.{key} is set by kharness")
    resets = sorted(all_vars - set(s.vars) - set(INHERITING_VARS))
    return {
        "name": s.name, "fstype": s.fstype, "source": str(s.path) if s.path else "",
        "pool": pool, "logdev": logdev,
        "use_external": s.vars.get("USE_EXTERNAL", "yes" if s.logdev else "no"),
        "recreate_test_dev": s.vars.get("RECREATE_TEST_DEV", "true"),
        "mkfs_options": s.mkfs_options, "mount_options": s.mount_options,
        "vars": sorted(extra.items()), "resets": resets,
    }


def _check_inheritance(sections: list[Section]) -> None:
    """Refuse an empty MKFS_OPTIONS etc. that fstests would fill from an earlier same-FSTYP section."""
    for i, s in enumerate(sections):
        mine = {"MKFS_OPTIONS": s.mkfs_options, "MOUNT_OPTIONS": s.mount_options, **s.vars}
        for earlier in sections[:i]:
            if earlier.fstype != s.fstype:
                continue
            theirs = {"MKFS_OPTIONS": earlier.mkfs_options,
                      "MOUNT_OPTIONS": earlier.mount_options, **earlier.vars}
            for var in INHERITING_VARS:
                if not mine.get(var, "").strip() and theirs.get(var, "").strip():
                    raise HarnessError(
                        f"section {s.name} leaves {var} empty, so fstests would run it with "
                        f"{var}={theirs[var]!r} inherited from section {earlier.name} (same FSTYP "
                        f"{s.fstype}); set it explicitly, put {s.name} before {earlier.name}, "
                        "or render the sections in separate configs")


def render_local_config(sections: list[Section], disks: DiskMap) -> str:
    """The fstests local.config text with one ``[name]`` per section (order kept)."""
    if not sections:
        raise HarnessError("render_local_config: no sections given")
    names = [s.name for s in sections]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise HarnessError(f"section(s) given twice: {', '.join(dupes)}")
    _check_inheritance(sections)
    all_vars = {k for s in sections for k in s.vars if k not in ("USE_EXTERNAL", "RECREATE_TEST_DEV")}
    ctx = [_section_context(s, disks, all_vars) for s in sections]
    return _environment().get_template(TEMPLATE).render(sections=ctx, disks=disks)


# ---------------------------------------------------------------------------------------------
# Expunges and kernel versions


def kernel_version(release: str) -> tuple[int, int, int]:
    """The leading x.y[.z] of a kernel release ("6.1.192-g1748276115c8" -> (6, 1, 192))."""
    m = re.match(r"^\s*v?(\d+)\.(\d+)(?:\.(\d+))?", release)
    if not m:
        raise HarnessError(f"kernel release {release!r} does not start with a version x.y[.z]")
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)


def version_matches(condition: str, version: tuple[int, int, int]) -> bool:
    """Whether ``version`` satisfies every comma-joined clause of ``condition``.

    ``==`` compares only the components given (``==6.1`` matches 6.1.x); the other operators
    pad the operand with zeros (``<6.2`` is ``< 6.2.0``).
    """
    for op, want in parse_version_condition(condition):
        if op == "==":
            ok = version[:len(want)] == want
        else:
            padded = tuple(want) + (0,) * (3 - len(want))
            ok = {"<": version < padded, "<=": version <= padded,
                  ">": version > padded, ">=": version >= padded}[op]
        if not ok:
            return False
    return True


def expunged(section: Section, kernel_release: str) -> list[tuple[str, str]]:
    """(test, reason) of the section's expunge entries that apply to ``kernel_release``."""
    version = kernel_version(kernel_release)
    out = []
    for i, e in enumerate(section.expunge):
        if e.kernel is not None:
            try:
                applies = version_matches(e.kernel, version)
            except ValueError as err:
                raise DefinitionError(section.path or section.name,
                                      f"sections.{section.name}.expunge[{i}].kernel", str(err)) from None
            if not applies:
                continue
        out.append((e.test, e.reason))
    return out


def expunge_file_text(entries: list[tuple[str, str]], header: str = "") -> str:
    """Text for ``./check -E FILE``: one test per line, reasons as ``# comments``.

    check strips ``#...`` from each line (sed) and expunges a test when a line starts with its
    name followed by a word boundary, so comments and trailing blanks are safe.
    """
    lines = [f"# {h}" for h in header.splitlines()] if header else []
    for test, reason in entries:
        if not TEST_NAME.match(test):
            raise HarnessError(f"expunge entry {test!r} is not a test name like generic/475")
        reason = " ".join(reason.split())
        lines.append(f"{test}  # {reason}" if reason else test)
    return "\n".join(lines) + "\n" if lines else ""


def check_argv(section: str, tests: list[str] | None = None, groups: list[str] | None = None,
               expunge_file: str | None = None) -> list[str]:
    """``./check`` for one section with the xunit report; options before test names (check
    insists). Run it in the xfstests directory."""
    if not SECTION_NAME.match(section):
        raise HarnessError(f"section name {section!r}: fstests only recognises [A-Za-z0-9_]+")
    if not tests and not groups:
        raise HarnessError("check_argv: give tests or groups (check runs nothing without either)")
    argv = ["./check", "-s", section, "-R", "xunit"]
    if expunge_file is not None:
        if not expunge_file or re.search(r"\s", expunge_file) or expunge_file.startswith("-"):
            raise HarnessError(f"expunge file path {expunge_file!r}: check reads it unquoted; "
                               "use a path without blanks")
        argv += ["-E", expunge_file]
    for g in groups or []:
        if not GROUP_NAME.match(g):
            raise HarnessError(f"group {g!r}: want a name like quick or xfs/quick")
    if groups:
        argv += ["-g", ",".join(groups)]
    for t in tests or []:
        if not re.match(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.*?\[\]-]+$", t):
            raise HarnessError(f"test {t!r}: want <dir>/<name> like generic/001 or xfs/*")
    return argv + list(tests or [])
