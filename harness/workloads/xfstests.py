"""xfstests (fstests): section definitions, local.config rendering, expunges, check and results.

Sections live in ``fstests-configs/<fs>.yaml`` (one file per filesystem, any number of named
sections each). The harness renders them into one fstests ``local.config`` with a ``[section]``
per kharness section, runs ``./check -s SECTION -R xunit ...`` in the guest and parses what check
leaves in ``results/<section>/``: ``result.xml`` (xunit, from common/report), ``check.log``,
``check.time`` and per-test ``<test>.out.bad`` / ``.full`` / ``.dmesg`` / ``.notrun`` / ``.hints``.

How fstests reads a sectioned config (common/config, parse_config_section): it is *not* sourced.
Each line goes through sed (everything after ``#`` dropped, blanks around every ``=`` squeezed,
one pair of surrounding quotes removed) and is eval'ed as ``export KEY="value"``; MKFS_OPTIONS is
eval'ed once more by ``_scratch_do_mkfs``. So values are written double-quoted and restricted to
characters that survive both (see ``SAFE_VALUE``). Values also carry over between sections: check
parses the file's first section at start-up, then the selected one; an *empty* MKFS_OPTIONS,
MOUNT_OPTIONS, TEST_FS_MOUNT_OPTS or FSCK_OPTIONS means "keep the previous section's value" when
FSTYP is unchanged. The renderer therefore sets every device variable in every section and
refuses a section list where an empty one of those would inherit another section's value.
"""

from __future__ import annotations

import difflib
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import jinja2

from ..config.loader import load_yaml
from ..errors import DefinitionError, HarnessError
from ..paths import project_root

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates" / "xfstests"
TEMPLATE = "local.config.j2"

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
ARTIFACT_KINDS = ("out.bad", "full", "dmesg", "notrun", "hints")
STATUSES = ("pass", "fail", "notrun", "error")
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
    used = [d for d in [disks.test_dev, *(pool or [disks.scratch_dev]), logdev] if d]
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


# ---------------------------------------------------------------------------------------------
# Results


@dataclass
class TestResult:
    """One test's outcome in one section. ``full`` is the test's .full log when known."""

    __test__ = False  # not a pytest test class

    name: str
    status: str
    duration_s: float | None
    message: str = ""
    output_diff: str | None = None
    dmesg: str | None = None
    section: str = ""
    full: str | None = None


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


_ENTITY = re.compile(r"&(?!(?:amp|lt|gt|quot|apos|#\d+|#x[0-9A-Fa-f]+);)")
_FAILURE_ATTR = re.compile(r'(<failure message=")(.*)(" type="TestFail"\s*/>)')


def _repair_xunit(xml_text: str) -> str:
    """Fix what common/report writes unescaped: the failure message is echoed raw."""
    def fix(m: re.Match[str]) -> str:
        msg = m.group(2).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        return m.group(1) + msg.replace('"', "&quot;") + m.group(3)

    fixed = []
    in_cdata = False
    for line in xml_text.splitlines(keepends=True):
        if not in_cdata:
            if "<failure" in line:
                line = _ENTITY.sub("&amp;", _FAILURE_ATTR.sub(fix, line))
        if "<![CDATA[" in line:
            in_cdata = True
        if "]]>" in line:
            in_cdata = line.rfind("<![CDATA[") > line.rfind("]]>")
        fixed.append(line)
    return "".join(fixed)


def _parse_xml(xml_text: str) -> ET.Element:
    if not xml_text.strip():
        raise HarnessError("xunit report is empty")
    try:
        return ET.fromstring(xml_text)
    except ET.ParseError as first:
        try:
            return ET.fromstring(_repair_xunit(xml_text))
        except ET.ParseError:
            raise HarnessError(f"xunit report is not well-formed XML: {first}") from None


def _text(el: ET.Element | None) -> str | None:
    if el is None or el.text is None:
        return None
    # common/report writes "<tag>\n<![CDATA[\n...content...]]>\n\t\t</tag>".
    text = el.text.lstrip("\n").rstrip()
    return text + "\n" if text else ""


def parse_xunit(xml_text: str, section: str = "") -> list[TestResult]:
    """TestResults from an fstests result.xml (``<testsuite>`` of ``<testcase>``s).

    pass: no child; notrun: ``<skipped [message=]/>``; fail: ``<failure message= type=TestFail/>``
    with ``<system-out>`` (.full), ``<kernel-log>`` (.dmesg) and ``<system-err>`` (diff of the
    expected output and .out.bad); check's "Unknown test_status" failure and any ``<error>`` give
    status 'error'. Expunged tests are absent. ``section`` defaults to the testcase classname
    minus its "xfstests." prefix.
    """
    root = _parse_xml(xml_text)
    if _local(root.tag) not in ("testsuite", "testsuites"):
        raise HarnessError(f"xunit report root is <{_local(root.tag)}>, not <testsuite>")
    out = []
    for case in root.iter():
        if _local(case.tag) != "testcase":
            continue
        name = case.get("name", "")
        if not name:
            raise HarnessError("xunit report has a <testcase> without a name")
        children = {_local(c.tag): c for c in case}
        time = (case.get("time") or "").strip()
        try:
            duration = float(time) if time else None
        except ValueError:
            duration = None
        cls = case.get("classname", "")
        sect = section or (cls[len("xfstests."):] if cls.startswith("xfstests.") else cls)
        message = ""
        if "error" in children:
            status = "error"
            message = children["error"].get("message", "") or (_text(children["error"]) or "")
        elif "failure" in children:
            message = children["failure"].get("message", "")
            status = "error" if message.startswith("Unknown test_status") else "fail"
        elif "skipped" in children:
            status = "notrun"
            message = children["skipped"].get("message", "")
        else:
            status = "pass"
        out.append(TestResult(name=name, status=status, duration_s=duration,
                              message=message.strip(),
                              output_diff=_text(children.get("system-err")),
                              dmesg=_text(children.get("kernel-log")), section=sect,
                              full=_text(children.get("system-out"))))
    return out


def parse_xunit_properties(xml_text: str) -> dict[str, str]:
    """The ``<properties>`` of an fstests result.xml (KERNEL, FSTYP, MKFS_OPTIONS, ...)."""
    root = _parse_xml(xml_text)
    return {p.get("name", ""): p.get("value", "") for p in root.iter()
            if _local(p.tag) == "property" and p.get("name")}


@dataclass
class CheckLogRun:
    """One check invocation's summary block in check.log (check appends one per run)."""

    kernel: str | None = None
    date: str | None = None
    ran: list[str] = field(default_factory=list)
    not_run: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    interrupted: bool = False
    total: int | None = None
    failed_count: int | None = None

    @property
    def passed_all(self) -> bool:
        return self.failed_count == 0


_FAILED = re.compile(r"^Failed (\d+) of (\d+) tests$")
_PASSED = re.compile(r"^Passed all (\d+) tests$")


def parse_check_log(text: str) -> list[CheckLogRun]:
    """The run blocks of a check.log: "Kernel version:", date, "Ran:", "Not run:", "Failures:",
    then "Failed N of M tests" or "Passed all N tests" (oldest first)."""
    runs: list[CheckLogRun] = []
    cur: CheckLogRun | None = None
    closed = True
    expect_date = False

    def start() -> CheckLogRun:
        run = CheckLogRun()
        runs.append(run)
        return run

    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith("Kernel version:"):
            cur, closed = start(), False
            cur.kernel = line.partition(":")[2].strip()
            expect_date = True
            continue
        if cur is None or closed:
            cur, closed = start(), False
        key, sep, rest = line.partition(": ")
        m_failed, m_passed = _FAILED.match(line), _PASSED.match(line)
        if sep and key in ("Ran", "Not run", "Failures"):
            attr = {"Ran": "ran", "Not run": "not_run", "Failures": "failures"}[key]
            getattr(cur, attr).extend(rest.split())
        elif line == "Interrupted!":
            cur.interrupted = True
        elif m_failed:
            cur.failed_count, cur.total = int(m_failed.group(1)), int(m_failed.group(2))
            closed = True
        elif m_passed:
            cur.failed_count, cur.total = 0, int(m_passed.group(1))
            closed = True
        elif expect_date and cur.date is None:
            cur.date = line
        expect_date = False
    return runs


def collect_artifacts(results_dir: Path, section: str) -> dict[str, dict[str, Path]]:
    """test -> {kind: path} for ``results_dir/section/<dir>/<test>.{out.bad,full,dmesg,notrun,
    hints}``; ``section`` "" reads a results dir written without sections."""
    base = results_dir / section if section else results_dir
    out: dict[str, dict[str, Path]] = {}
    if not base.is_dir():
        return out
    for group in sorted(p for p in base.iterdir() if p.is_dir()):
        for f in sorted(group.iterdir()):
            if not f.is_file():
                continue
            for kind in ARTIFACT_KINDS:
                suffix = "." + kind
                if f.name.endswith(suffix) and len(f.name) > len(suffix):
                    test = f"{group.name}/{f.name[:-len(suffix)]}"
                    out.setdefault(test, {})[kind] = f
                    break
    return out


def _read_capped(path: Path, limit: int, keep: str = "head") -> str:
    data = path.read_bytes()
    text = data.decode("utf-8", errors="replace")
    if len(text) <= limit:
        return text
    if keep == "tail":
        return f"[... {len(text) - limit} characters cut ...]\n" + text[-limit:]
    return text[:limit] + f"\n[... {len(text) - limit} characters cut ...]\n"


def attach_artifacts(results: list[TestResult], artifacts: dict[str, dict[str, Path]],
                     tests_dir: Path | None = None, limit: int = 256 * 1024) -> list[TestResult]:
    """Fill output_diff, dmesg, full and empty notrun messages from result files where the xunit
    report did not carry them (xunit-quiet, or a report cut short). With ``tests_dir`` (the
    xfstests tests/ directory) output_diff is a unified diff against ``<test>.out``; without it,
    the .out.bad text itself under a one-line note."""
    for r in results:
        files = artifacts.get(r.name, {})
        bad = files.get("out.bad")
        if r.output_diff is None and bad is not None:
            actual = _read_capped(bad, limit)
            expected = tests_dir / f"{r.name}.out" if tests_dir else None
            if expected is not None and expected.is_file():
                r.output_diff = "".join(difflib.unified_diff(
                    expected.read_text(errors="replace").splitlines(keepends=True),
                    actual.splitlines(keepends=True), str(expected), str(bad)))
            else:
                r.output_diff = f"(expected output unavailable; actual output {bad})\n{actual}"
        if r.dmesg is None and "dmesg" in files:
            r.dmesg = _read_capped(files["dmesg"], limit)
        if r.full is None and "full" in files:
            r.full = _read_capped(files["full"], limit, keep="tail")
        if r.status == "notrun" and not r.message and "notrun" in files:
            r.message = files["notrun"].read_text(errors="replace").strip()
    return results


# ---------------------------------------------------------------------------------------------
# Comparison and watchdog


class StatusChange(NamedTuple):
    test: str
    base: str | None
    new: str | None


@dataclass
class XfstestsComparison:
    """Base vs new run of the same section, by test name (lists sorted)."""

    new_failures: list[str] = field(default_factory=list)
    shared_failures: list[str] = field(default_factory=list)
    fixed: list[str] = field(default_factory=list)
    notrun_changes: list[StatusChange] = field(default_factory=list)
    only_base: list[str] = field(default_factory=list)
    only_new: list[str] = field(default_factory=list)

    @property
    def regressed(self) -> bool:
        return bool(self.new_failures)


def _by_name(results: list[TestResult], side: str) -> dict[str, TestResult]:
    out: dict[str, TestResult] = {}
    for r in results:
        if r.name in out:
            raise HarnessError(f"compare_runs: {side} has {r.name} twice (sections "
                               f"{out[r.name].section!r}, {r.section!r}); compare one section at a time")
        out[r.name] = r
    return out


def compare_runs(base: list[TestResult], new: list[TestResult]) -> XfstestsComparison:
    """Classify tests: new_failures (pass -> fail/error), shared_failures (failing on both),
    fixed (fail/error -> pass), notrun_changes (notrun on exactly one side), only_base/only_new."""
    b, n = _by_name(base, "base"), _by_name(new, "new")
    bad = ("fail", "error")
    cmp = XfstestsComparison()
    for name in sorted(set(b) | set(n)):
        rb, rn = b.get(name), n.get(name)
        if rb is None:
            cmp.only_new.append(name)
            continue
        if rn is None:
            cmp.only_base.append(name)
            continue
        if rn.status in bad and rb.status == "pass":
            cmp.new_failures.append(name)
        elif rn.status in bad and rb.status in bad:
            cmp.shared_failures.append(name)
        elif rb.status in bad and rn.status == "pass":
            cmp.fixed.append(name)
        if (rb.status == "notrun") != (rn.status == "notrun"):
            cmp.notrun_changes.append(StatusChange(name, rb.status, rn.status))
    return cmp


def parse_check_time(text: str) -> dict[str, float]:
    """check.time ("generic/001 5" per line) -> {test: seconds}; other lines are ignored."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 2 or "/" not in parts[0]:
            continue
        try:
            out[parts[0]] = float(parts[1])
        except ValueError:
            continue
    return out


def watchdog_seconds(test: str, check_time: dict[str, float], default: float = 1800,
                     factor: float = 5, minimum: float = 120) -> float:
    """How long ``test`` may run before it counts as hung: ``factor`` x its last check.time
    duration, at least ``minimum``; ``default`` for a test without a recorded time."""
    last = check_time.get(test)
    if last is None:
        return float(default)
    return float(max(minimum, factor * last))
