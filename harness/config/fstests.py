"""fstests sections: the definitions in ``fstests-configs/<fs>.yaml``.

One file per filesystem, any number of named sections each: ``fstype``, ``mkfs_options``,
``mount_options``, what the section ``needs`` (a scratch device pool, an external log device),
extra fstests ``vars`` and ``expunge`` entries, each optionally limited to kernel versions by a
condition like ``">=6.1,<6.6"`` (:func:`parse_version_condition`). Loading validates the schema and
refuses values that would not reach fstests intact through its config parser (common/config,
parse_config_section: sed, then eval; see :mod:`harness.workloads.xfstests_config`, which renders
sections into ``local.config``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DefinitionError
from ..paths import project_root
from .loader import load_yaml

SECTION_NAME = re.compile(r"^[A-Za-z0-9_]+$")
TEST_NAME = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
GROUP_NAME = re.compile(r"^(?:[A-Za-z0-9_.-]+/)?[A-Za-z0-9_.-]+$")
VAR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# What survives common/config's sed + eval and _scratch_do_mkfs's second eval unchanged.
SAFE_VALUE = re.compile(r"^[A-Za-z0-9 _,.:/=+%@^-]*$")
SAFE_PATH = re.compile(r"^/[A-Za-z0-9_.:/+@-]*$")

# Variables the renderer writes itself: a section's `vars` may not set them.
MANAGED_VARS = {
    "FSTYP": "fstype", "MKFS_OPTIONS": "mkfs_options", "MOUNT_OPTIONS": "mount_options",
    "TEST_DEV": "the DiskMap", "TEST_DIR": "the DiskMap", "SCRATCH_DEV": "the DiskMap",
    "SCRATCH_MNT": "the DiskMap", "SCRATCH_DEV_POOL": "needs.scratch_pool",
    "SCRATCH_LOGDEV": "needs.logdev", "TEST_LOGDEV": "nothing (kharness gives only a scratch logdev)",
    "RESULT_BASE": "nothing (kharness collects results from the default results/ directory)",
}
# Empty means "inherit the previous section's value" in common/config get_next_config().
INHERITING_VARS = ("MKFS_OPTIONS", "MOUNT_OPTIONS", "TEST_FS_MOUNT_OPTS", "FSCK_OPTIONS")
_OPS = ("<=", ">=", "==", "<", ">")

_STR = {"type": "string"}
SECTION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["fstype", "mkfs_options"],
    "properties": {
        "description": _STR,
        "fstype": {"type": "string", "pattern": "^[a-z0-9]+$"},
        "mkfs_options": _STR,
        "mount_options": _STR,
        "needs": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "scratch_pool": {"type": "integer", "minimum": 2},
                "logdev": {"type": "boolean"},
            },
        },
        "vars": {
            "type": "object",
            "propertyNames": {"pattern": VAR_NAME.pattern},
            "additionalProperties": _STR,
        },
        "expunge": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["test", "reason"],
                "properties": {
                    "test": {"type": "string", "pattern": TEST_NAME.pattern},
                    "reason": {"type": "string", "minLength": 1},
                    "kernel": {"type": "string", "minLength": 1},
                },
            },
        },
    },
}
SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["sections"],
    "properties": {
        "description": _STR,
        "sections": {
            "type": "object",
            "minProperties": 1,
            "propertyNames": {"pattern": SECTION_NAME.pattern},
            "additionalProperties": SECTION_SCHEMA,
        },
    },
}


# ---------------------------------------------------------------------------------------------
# Sections


@dataclass(frozen=True)
class ExpungeEntry:
    """One test to leave out: ``kernel`` is an optional version condition like ">=6.1,<6.6"."""

    test: str
    reason: str
    kernel: str | None = None


@dataclass
class Section:
    """One fstests config section as defined in fstests-configs/*.yaml."""

    name: str
    fstype: str
    mkfs_options: str = ""
    mount_options: str = ""
    scratch_pool: int = 0
    logdev: bool = False
    vars: dict[str, str] = field(default_factory=dict)
    expunge: list[ExpungeEntry] = field(default_factory=list)
    description: str = ""
    path: Path | None = None


def configs_dir() -> Path:
    return project_root() / "fstests-configs"


def _unsafe_value(value: str) -> str | None:
    """Why ``value`` would not reach fstests intact, or None."""
    if "\n" in value or "\t" in value:
        return "must be a single line without tabs"
    if not SAFE_VALUE.match(value):
        bad = "".join(sorted({c for c in value if not SAFE_VALUE.match(c)}))
        return (f"contains {bad!r}; fstests' config parser (sed + eval) only passes "
                "letters, digits, spaces and _,.:/=+%@^-")
    if re.search(r"\s=|=\s", value):
        return "has blanks around '='; fstests' config parser would squeeze them out"
    return None


def _section_from(path: Path, name: str, d: dict[str, Any]) -> Section:
    key = f"sections.{name}"
    for opt in ("mkfs_options", "mount_options"):
        why = _unsafe_value(d.get(opt, ""))
        if why:
            raise DefinitionError(path, f"{key}.{opt}", why)
    if d.get("mount_options", "").strip() and not d["mount_options"].lstrip().startswith("-"):
        raise DefinitionError(path, f"{key}.mount_options",
                              "fstests wants mount(8) arguments, e.g. \"-o noatime\"")
    variables = dict(d.get("vars", {}))
    for var, value in variables.items():
        vkey = f"{key}.vars.{var}"
        if var in MANAGED_VARS:
            raise DefinitionError(path, vkey, f"set by kharness; use {MANAGED_VARS[var]} instead")
        why = _unsafe_value(value)
        if why:
            raise DefinitionError(path, vkey, why)
        if var in INHERITING_VARS + ("USE_EXTERNAL",) and not value.strip():
            raise DefinitionError(path, vkey, "fstests treats an empty value as 'keep the previous "
                                  "section's value'; leave the key out instead")
        if var == "RECREATE_TEST_DEV" and value not in ("true", "false"):
            raise DefinitionError(path, vkey, "must be \"true\" or \"false\" (check runs it)")
    needs = d.get("needs", {})
    if needs.get("logdev") and variables.get("USE_EXTERNAL", "yes") != "yes":
        raise DefinitionError(path, f"{key}.vars.USE_EXTERNAL",
                              "needs.logdev requires USE_EXTERNAL=yes (or leave it out)")
    expunge = []
    for i, e in enumerate(d.get("expunge", [])):
        if "kernel" in e:
            try:
                parse_version_condition(e["kernel"])
            except ValueError as err:
                raise DefinitionError(path, f"{key}.expunge[{i}].kernel", str(err)) from None
        expunge.append(ExpungeEntry(e["test"], e["reason"].strip(), e.get("kernel")))
    return Section(name=name, fstype=d["fstype"], mkfs_options=d["mkfs_options"].strip(),
                   mount_options=d.get("mount_options", "").strip(),
                   scratch_pool=needs.get("scratch_pool", 0), logdev=needs.get("logdev", False),
                   vars=variables, expunge=expunge, description=d.get("description", ""), path=path)


def load_section_file(path: Path) -> dict[str, Section]:
    """The sections of one fstests-configs/*.yaml file, validated."""
    data = load_yaml(path, SCHEMA)
    return {name: _section_from(path, name, d) for name, d in data["sections"].items()}


def load_sections(directory: Path | None = None) -> dict[str, Section]:
    """All sections of ``directory``/*.yaml (default fstests-configs/); names must be unique."""
    d = directory or configs_dir()
    files = sorted(d.glob("*.yaml"))
    if not files:
        raise DefinitionError(d, "", "no fstests section files (*.yaml) here")
    out: dict[str, Section] = {}
    for path in files:
        for name, section in load_section_file(path).items():
            if name in out:
                raise DefinitionError(path, f"sections.{name}",
                                      f"section name also defined in {out[name].path}; "
                                      "section names must be unique across files")
            out[name] = section
    return out


def get_section(name: str) -> Section:
    """The section called ``name`` from fstests-configs/; DefinitionError naming the known ones."""
    sections = load_sections()
    if name not in sections:
        raise DefinitionError(configs_dir(), name,
                              f"unknown section (known: {', '.join(sorted(sections))})")
    return sections[name]


# ---------------------------------------------------------------------------------------------
# Kernel-version conditions of expunge entries


def parse_version_condition(text: str) -> list[tuple[str, tuple[int, ...]]]:
    """``">=6.1,<6.6"`` -> [(">=", (6, 1)), ("<", (6, 6))]; ValueError if malformed."""
    out = []
    for part in text.split(","):
        m = re.fullmatch(r"\s*(<=|>=|==|<|>)\s*(\d+(?:\.\d+){0,2})\s*", part)
        if not m:
            raise ValueError(f"bad version condition {part.strip()!r} in {text!r}: want "
                             f"OP VERSION with OP one of {' '.join(_OPS)} and VERSION like 6.1 or "
                             "6.1.5, several joined by ','")
        out.append((m.group(1), tuple(int(x) for x in m.group(2).split("."))))
    return out
