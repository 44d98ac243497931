"""xfstests (fstests) results: what ``./check`` leaves in ``results/<section>/``.

``result.xml`` (xunit, from common/report), ``check.log``, ``check.time`` and per-test
``<test>.out.bad`` / ``.full`` / ``.dmesg`` / ``.notrun`` / ``.hints``, parsed into
:class:`TestResult` records; base vs new runs compared by test name; ``check.time`` turned
into per-test watchdog deadlines.
"""

from __future__ import annotations

import difflib
import math
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from ..errors import HarnessError

ARTIFACT_KINDS = ("out.bad", "full", "dmesg", "notrun", "hints")
STATUSES = ("pass", "fail", "notrun", "error")


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


MAX_XUNIT_CHARS = 256 << 20   # result.xml with every test's .full, dmesg and diff


def _parse_xml(xml_text: str) -> ET.Element:
    if len(xml_text) > MAX_XUNIT_CHARS:
        raise HarnessError(f"xunit report of {len(xml_text)} characters is larger than the "
                           f"{MAX_XUNIT_CHARS} kharness parses; refused")
    if not xml_text.strip():
        raise HarnessError("xunit report is empty")
    try:
        xml_text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates (text read with surrogateescape): no XML has them
        xml_text = xml_text.encode("utf-8", "replace").decode("utf-8")
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
        duration = _seconds((case.get("time") or "").strip())
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


# ASCII digits, bounded: int() refuses strings of more than 4300 digits.
_FAILED = re.compile(r"^Failed ([0-9]{1,18}) of ([0-9]{1,18}) tests$")
_PASSED = re.compile(r"^Passed all ([0-9]{1,18}) tests$")


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


def _seconds(text: str) -> float | None:
    """A duration: a finite, non-negative number of seconds, else None ("inf", "nan", "-3", "x")."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def parse_check_time(text: str) -> dict[str, float]:
    """check.time ("generic/001 5" per line) -> {test: seconds}; other lines are ignored, and so
    are durations that are not finite, non-negative numbers ("inf", "nan", "-1"), so that such a
    test gets the default watchdog rather than none."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 2 or "/" not in parts[0]:
            continue
        seconds = _seconds(parts[1])
        if seconds is not None:
            out[parts[0]] = seconds
    return out


def watchdog_seconds(test: str, check_time: dict[str, float], default: float = 1800,
                     factor: float = 5, minimum: float = 120) -> float:
    """How long ``test`` may run before it counts as hung: ``factor`` x its last check.time
    duration, at least ``minimum``; ``default`` for a test without a usable recorded time (none,
    or not a finite, non-negative number) or when that product overflows to infinity."""
    last = check_time.get(test)
    if last is None or not math.isfinite(last) or last < 0:
        return float(default)
    seconds = float(max(minimum, factor * last))
    return seconds if math.isfinite(seconds) else float(default)  # 5 x 1e308 overflows
