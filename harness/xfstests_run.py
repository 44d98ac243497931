"""Run xfstests in VMs: one ``./check`` per test under a watchdog, results copied and parsed.

The guest image (``debian-bookworm-xfstests``) carries xfstests built at image-build time in
``/opt/xfstests``. Each test runs alone, so its deadline can follow ``check.time`` (a multiple
of the recorded time, else a default), and so a hang costs one test: sysrq evidence is
collected through the QMP keyboard, the VM is killed, and the remaining tests go on in a fresh
VM. After every test, ``results/<section>/`` (result.xml, check.log, .out.bad, .full, .dmesg)
is copied into the run directory before anything else can fail.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .errors import DefinitionError, HarnessError
from .evidence.capture import capture_sysrq
from .evidence.events import scan_console
from .image.build import build_image
from .image.xfstests import configured_source, resolve
from .kernel.build import build_kernel
from .results.rundir import RunDir
from .session import new_run_dir, vm_config
from .vm.accel import choose_accel
from .vm.disks import Disk, parse_disk
from .vm.machine import VM
from .workloads.xfstests import (DiskMap, Section, TestResult, attach_artifacts, check_argv,
                                 collect_artifacts, expunged, load_sections, parse_check_time,
                                 parse_xunit, render_local_config, watchdog_seconds)

Say = Callable[[str], None]
XFSTESTS_DIR = "/opt/xfstests"
IMAGE = "debian-bookworm-xfstests"
MKFS = {"ext4": ["mkfs.ext4", "-F", "-q"], "ext2": ["mkfs.ext2", "-F", "-q"], "ext3": ["mkfs.ext3", "-F", "-q"],
        "xfs": ["mkfs.xfs", "-f", "-q"], "ocfs2": ["mkfs.ocfs2", "-q", "-F"]}


@dataclass
class XfstestsRun:
    """The outcome of running a list of tests in one section on one kernel."""

    kernel: str
    section: str
    results: list[TestResult] = field(default_factory=list)
    run_dir: Path | None = None
    hung: list[str] = field(default_factory=list)
    boots: int = 0

    def by_name(self) -> dict[str, TestResult]:
        return {r.name: r for r in self.results}


def get_section(name: str) -> Section:
    sections = load_sections()
    if name not in sections:
        raise DefinitionError("fstests-configs/", name, f"unknown section (known: {', '.join(sorted(sections))})")
    return sections[name]


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
    seen: set[str] = set()
    return [t for t in tests if not (t in seen or seen.add(t))]


def disks_for(section: Section, kind: str, size: str = "5G") -> list[Disk]:
    """test, scratch (or a pool) and an optional log device, all of one kind."""
    n = 1 + max(1, section.scratch_pool) + (1 if section.logdev else 0)
    return [parse_disk(f"{kind}:{size}", i) for i in range(n)]


def _prepare_guest(vm: VM, section: Section, disks: list[Disk], run: RunDir) -> str:
    """Map disks, write local.config, make the test filesystem; return the guest kernel release."""
    devs = [vm.device_for(d) for d in disks]
    pool = devs[1:1 + section.scratch_pool] if section.scratch_pool else []
    dm = DiskMap(test_dev=devs[0], scratch_dev=None if pool else devs[1], scratch_pool=pool,
                 logdev=devs[-1] if section.logdev else None)
    local = run.path / "local.config"
    local.write_text(render_local_config([section], dm))
    vm.put(local, f"{XFSTESTS_DIR}/local.config")
    vm.run(["mkdir", "-p", dm.test_dir, dm.scratch_mnt], timeout=30)
    mkfs = MKFS.get(section.fstype, [f"mkfs.{section.fstype}"])
    vm.run(mkfs + shlex.split(section.mkfs_options) + [dm.test_dev], timeout=600)
    return vm.run(["uname", "-r"], timeout=30).stdout.strip()


def _fetch_results(vm: VM, section: str, dest: Path) -> None:
    """Copy results/<section>/ and check.time from the guest (a tarball over SFTP)."""
    dest.mkdir(parents=True, exist_ok=True)
    tarball = "/tmp/kharness-results.tar"
    vm.run(["tar", "-cf", tarball, "-C", f"{XFSTESTS_DIR}/results", "."], timeout=300, check=False)
    local = dest / "results.tar"
    vm.get(tarball, local)
    with tarfile.open(local) as tf:
        tf.extractall(dest / "results", filter="data")
    local.unlink()


def run_xfstests(kernel: str, section_name: str, tests: list[str], *, disk_kind: str = "virtio",
                 accel: str | None = None, run_dir: Path | None = None, say: Say = print,
                 default_watchdog: float = 1800.0, image: str = IMAGE) -> XfstestsRun:
    """Run ``tests`` (names or group:NAME) in section ``section_name`` on ``kernel``."""
    section = get_section(section_name)
    where = configured_source(None, None)
    src_tree = resolve(*where).tree if where else None
    todo = expand_tests(tests, src_tree)
    if not todo:
        raise HarnessError(f"no tests selected from {tests}")
    kb = build_kernel(kernel)
    img = build_image(image)
    acc = choose_accel(kb.bzimage, accel)
    rd = run_dir or new_run_dir(f"xfstests-{kernel}-{section_name}")
    run = RunDir(rd, kernel=kernel, kernel_key=kb.key, image=img.key, section=section_name,
                 tests=todo, workload="xfstests", accel=acc.name, disks=[disk_kind])
    out = XfstestsRun(kernel, section_name, run_dir=rd)
    disks = disks_for(section, disk_kind)
    check_time: dict[str, float] = {}
    skipped = {}
    boot = 0
    while todo:
        boot += 1
        vdir = rd / f"boot{boot}"
        cfg = vm_config(kb, img, acc, vdir, disks)
        with VM(cfg) as vm:
            out.boots += 1
            release = _prepare_guest(vm, section, disks, run)
            skipped = dict(expunged(section, release))
            while todo:
                test = todo.pop(0)
                if test in skipped:
                    out.results.append(TestResult(test, "notrun", None, f"expunged: {skipped[test]}",
                                                  section=section_name))
                    continue
                limit = watchdog_seconds(test, check_time, default=default_watchdog)
                argv = ["env", "-C", XFSTESTS_DIR] + check_argv(section_name, [test])
                say(f"  {kernel} {section_name} {test} (watchdog {limit:.0f}s)")
                tdir = rd / "tests" / test.replace("/", "-")
                t0 = time.monotonic()
                try:
                    vm.run(argv, timeout=limit, check=False)
                except HarnessError as e:
                    time.sleep(1)  # let a dying guest finish printing
                    hung = vm.alive and "timed out" in str(e)
                    summary: list[str] = []
                    if hung:
                        cap = capture_sysrq(vm, "wt", via="qmp", out_dir=tdir / "sysrq", label="hang")
                        summary = cap.summary()
                    events = scan_console(vm.console_text())
                    vm.kill()
                    out.hung.append(test)
                    if hung:
                        head = f"hung: no result within {limit:.0f}s; VM killed; sysrq evidence in {tdir / 'sysrq'}"
                    else:
                        head = f"guest died during the test ({e}); console: {vm.console}"
                    msg = (head + "".join(f"\n  {s}" for s in summary[:10])
                           + "".join(f"\n  {t}" for t in sorted({ev.title for ev in events})))
                    out.results.append(TestResult(test, "error", time.monotonic() - t0, msg, section=section_name))
                    run.update(results=len(out.results), hung=out.hung)
                    say(f"    {msg.splitlines()[0]}")
                    break  # reboot for the rest
                _fetch_results(vm, section_name, tdir)
                res_dir = tdir / "results"
                xml = res_dir / section_name / "result.xml"
                parsed = parse_xunit(xml.read_text(), section_name) if xml.exists() else []
                parsed = [r for r in parsed if r.name == test] or [
                    TestResult(test, "error", time.monotonic() - t0, "no result in result.xml", section=section_name)]
                attach_artifacts(parsed, collect_artifacts(res_dir, section_name),
                                 tests_dir=(src_tree / "tests") if src_tree else None)
                out.results += parsed
                ct = res_dir / "check.time"
                if ct.exists():
                    check_time.update(parse_check_time(ct.read_text()))
                run.update(results=len(out.results))
                say(f"    {parsed[0].status}" + (f": {parsed[0].message[:100]}" if parsed[0].message else ""))
    run.finish("done", results={r.name: r.status for r in out.results}, hung=out.hung)
    return out
