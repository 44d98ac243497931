"""xfstests in a booted guest: one ``./check`` per test under a watchdog, results copied and parsed.

The guest image (``debian-bookworm-xfstests``) carries xfstests built at image-build time in
``/opt/xfstests``. Each test runs alone, so its deadline can follow ``check.time`` (a multiple of
the recorded time, else the workload's default scaled by the machine's measured speed), and a
hang costs one test: the hang handler collects evidence, kills the VM, and the composer runs the
remaining tests in a fresh boot. After every test, ``results/<section>/`` is copied into the run
directory before anything else can fail.
"""

from __future__ import annotations

import re
import shlex
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

from ..config.fstests import Section, get_section
from ..errors import HarnessError
from ..util import read_text_capped, sha256_json
from ..vm.disks import Disk
from ..vm.machine import VM
from ..vm.ssh import GuestCommandError
from ..workloads.xfstests_config import DiskMap, check_argv, render_local_config
from ..workloads.xfstests_results import (
    MAX_XUNIT_CHARS,
    attach_artifacts,
    collect_artifacts,
    parse_check_time,
    parse_xunit,
    watchdog_seconds,
)
from .hang import console_offset, handle_hang
from .records import XfstestRecord

XFSTESTS_DIR = "/opt/xfstests"
MKFS = {"ext4": ["mkfs.ext4", "-F", "-q"], "ext2": ["mkfs.ext2", "-F", "-q"], "ext3": ["mkfs.ext3", "-F", "-q"],
        "xfs": ["mkfs.xfs", "-f", "-q"], "ocfs2": ["mkfs.ocfs2", "-q", "-F"]}
# Measured on the reference machine (2-core TCG): the speed factor scales watchdogs from these.
REFERENCE_BOOT_S = 7.3
REFERENCE_MKFS_S = 1.0


def section_sha256(section: Section) -> str:
    """A hash of everything a section definition says (reproduce compares it)."""
    return sha256_json({"fstype": section.fstype, "mkfs": section.mkfs_options, "mount": section.mount_options,
                        "pool": section.scratch_pool, "logdev": section.logdev, "vars": section.vars,
                        "expunge": [repr(e) for e in section.expunge]})


def expand_tests(spec: list[str], source_tree: Path | None = None) -> list[str]:
    """Tests from 'generic/001'-style names and 'group:NAME' entries. Groups are read from the
    ``_begin_fstest`` lines of the host copy of the xfstests source."""
    tests: list[str] = []
    for item in spec:
        if item.startswith("group:"):
            group = item.split(":", 1)[1]
            if source_tree is None:
                raise HarnessError(f"{item}: expanding a group needs the xfstests source")
            for f in sorted((source_tree / "tests").glob("*/[0-9]*")):
                if f.suffix or not f.is_file():
                    continue
                m = re.search(r"^_begin_fstest\s+(.*)$", f.read_text(errors="replace"), re.M)
                if m and group in m.group(1).split():
                    tests.append(f"{f.parent.name}/{f.name}")
        else:
            tests.append(item)
    return list(dict.fromkeys(tests))   # first occurrence of each, in order


def disks_for(section: Section, kind: str, size: str = "5G") -> list[str]:
    """Disk specs for a section: test, scratch (or a pool) and an optional log device."""
    n = 1 + max(1, section.scratch_pool) + (1 if section.logdev else 0)
    return [f"{kind}:{size}"] * n


@dataclass(frozen=True)
class Guest:
    """A guest prepared for a section: its kernel release and how slow this machine is."""

    release: str
    speed_factor: float


def prepare_guest(vm: VM, section_name: str, disks: list[Disk], run_dir: Path) -> Guest:
    """Map disks, write local.config, make the test filesystem; measure the machine's speed."""
    section = get_section(section_name)
    devs = [vm.device_for(d) for d in disks]
    pool = devs[1:1 + section.scratch_pool] if section.scratch_pool else []
    dm = DiskMap(test_dev=devs[0], scratch_dev=None if pool else devs[1], scratch_pool=pool,
                 logdev=devs[-1] if section.logdev else None)
    local = run_dir / "local.config"
    local.write_text(render_local_config([section], dm))
    vm.put(local, f"{XFSTESTS_DIR}/local.config")
    vm.run(["mkdir", "-p", dm.test_dir, dm.scratch_mnt], timeout=30)
    mkfs = MKFS.get(section.fstype, [f"mkfs.{section.fstype}"])
    t0 = time.monotonic()
    vm.run(mkfs + shlex.split(section.mkfs_options) + [dm.test_dev], timeout=600)
    mkfs_s = time.monotonic() - t0
    factor = max(1.0, (vm.boot_seconds or 0) / REFERENCE_BOOT_S, mkfs_s / REFERENCE_MKFS_S)
    return Guest(vm.run(["uname", "-r"], timeout=30).stdout.strip(), round(factor, 2))


def _fetch_results(vm: VM, dest: Path) -> None:
    """Copy results/ (all sections, and check.time) from the guest: a tarball over SFTP."""
    dest.mkdir(parents=True, exist_ok=True)
    tarball = "/tmp/kharness-results.tar"
    vm.run(["tar", "-cf", tarball, "-C", f"{XFSTESTS_DIR}/results", "."], timeout=300, check=False)
    local = dest / "results.tar"
    vm.get(tarball, local)
    with tarfile.open(local) as tf:
        tf.extractall(dest / "results", filter="data")
    local.unlink()


def run_test(vm: VM, section: str, test: str, run_dir: Path, *, limit: float,
             check_time: dict[str, float], tests_source: Path | None = None) -> XfstestRecord:
    """Run one test; a watchdog expiry goes to the hang handler (HangError, VM killed)."""
    tdir = run_dir / "tests" / test.replace("/", "-")
    rel = str(tdir.relative_to(run_dir))
    since = console_offset(vm)
    t0 = time.monotonic()
    try:
        vm.run(["env", "-C", XFSTESTS_DIR] + check_argv(section, [test]), timeout=limit, check=False)
    except GuestCommandError as e:
        if e.timeout is None:
            raise
        raise handle_hang(vm, what=f"xfstests {section} {test}", limit=limit, evidence_dir=tdir / "sysrq",
                          label=test.replace("/", "-"), since=since) from None
    _fetch_results(vm, tdir)
    res_dir = tdir / "results"
    xml = res_dir / section / "result.xml"
    text = read_text_capped(xml, MAX_XUNIT_CHARS, "xunit report") if xml.exists() else None
    parsed = [r for r in (parse_xunit(text, section) if text is not None else []) if r.name == test]
    if not parsed:
        return XfstestRecord(section, test, "error", time.monotonic() - t0, "no result in result.xml", rel)
    attach_artifacts(parsed, collect_artifacts(res_dir, section),
                     tests_dir=(tests_source / "tests") if tests_source else None)
    ct = res_dir / "check.time"
    if ct.exists():
        check_time.update(parse_check_time(ct.read_text()))
    r = parsed[0]
    return XfstestRecord(section, test, r.status, r.duration_s, r.message or "", rel,
                         (r.output_diff or "")[-8000:] or None, (r.dmesg or "")[-8000:] or None)


def watchdog_for(test: str, check_time: dict[str, float], default: float, factor: float) -> float:
    """The test's watchdog: from check.time when known, else ``default`` x the speed factor."""
    return watchdog_seconds(test, check_time, default=default * factor)
