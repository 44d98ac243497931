"""What a run needs from this machine, checked: each check says ok, warn or fail, what it found,
and how to fix it. Read-only, except that the results store is opened (and so migrated) when it
exists, as any kharness command would."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .config.images import load_image
from .config.kernels import TARBALL_HINT, load_kernel
from .errors import DefinitionError, HarnessError
from .image import userns
from .image.build import BUILDER_VERSION
from .image.xfstests import configured_source
from .paths import cache_root, project_root, results_root
from .results.store import SCHEMA_VERSION, Store, default_store_path

OK, WARN, FAIL = "ok", "warn", "fail"
GB = 1 << 30
CACHE_WARN_GB, CACHE_FAIL_GB = 20.0, 5.0        # a kernel build tree + ccache + images ~ 15 GB
RESULTS_WARN_GB, RESULTS_FAIL_GB = 2.0, 0.2
SETUP = "run scripts/setup (as root)"


@dataclass(frozen=True)
class DoctorCheck:
    """One row of the report."""

    name: str
    status: str      # ok | warn | fail
    detail: str
    fix: str = ""


@dataclass(frozen=True)
class Where:
    """The store and results directory the report is about (the CLI's --store/--results-dir)."""

    store: Path | None = None
    results: Path | None = None


def _version(argv: list[str]) -> str:
    """The first line a tool prints about its version ('' if it prints nothing in 10 s)."""
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=10, errors="replace")
    except (OSError, subprocess.TimeoutExpired):
        return ""
    lines = (p.stdout.strip() or p.stderr.strip()).splitlines()
    return lines[0].strip() if lines else ""


def _tool(name: str, package: str, version_argv: list[str] | None = None,
          status_if_missing: str = FAIL, why: str = "") -> DoctorCheck:
    path = shutil.which(name)
    if path is None:
        return DoctorCheck(name, status_if_missing, f"{name} is not on PATH" + (f" ({why})" if why else ""),
                     f"apt-get install {package} ({SETUP})")
    version = _version(version_argv or [name, "--version"])
    return DoctorCheck(name, OK, f"{path}" + (f": {version}" if version else ""))


def check_qemu(where: Where) -> DoctorCheck:
    c = _tool("qemu-system-x86_64", "qemu-system-x86", why="boots every guest")
    return DoctorCheck("qemu", c.status, c.detail, c.fix)


def _virt_flags() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    flags = set(next((l for l in text.splitlines() if l.startswith("flags")), "").split())
    return ",".join(f for f in ("vmx", "svm") if f in flags) or "none"


def check_kvm(where: Where) -> DoctorCheck:
    tcg = "runs fall back to TCG (software emulation, about 10x slower guests)"
    flags = _virt_flags()
    enable = ("enable VT-x/AMD-V in the firmware (or nested virtualization on the VM host) and "
              "load kvm_intel or kvm_amd")
    if not os.path.exists("/dev/kvm"):
        return DoctorCheck("kvm", WARN, f"no /dev/kvm (CPU virtualization flags: {flags}); {tcg}", enable)
    try:
        os.close(os.open("/dev/kvm", os.O_RDWR))
    except OSError as e:
        return DoctorCheck("kvm", WARN, f"/dev/kvm does not open ({e.strerror}); {tcg}",
                     "run as root or add the user to the kvm group")
    memo = cache_root() / "accel-probe.json"
    try:
        probe = json.loads(memo.read_text())
        boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except (OSError, ValueError):
        probe, boot_id = None, ""
    if isinstance(probe, dict) and probe.get("name") in ("kvm", "tcg"):
        when = "this host boot" if probe.get("boot_id") == boot_id else "an earlier host boot"
        if probe["name"] == "kvm":
            return DoctorCheck("kvm", OK, f"/dev/kvm opens; canary boot used KVM ({when}, {memo})")
        return DoctorCheck("kvm", WARN, f"canary result ({when}, {memo}): {probe.get('reason', '')}",
                     enable if flags == "none" else "check dmesg for kvm errors; "
                     "force with --accel kvm to see QEMU's error")
    if flags == "none":
        return DoctorCheck("kvm", WARN, "/dev/kvm opens but the CPU shows no vmx/svm flags: the KVM "
                     f"canary boot will likely fail and {tcg}", enable)
    return DoctorCheck("kvm", OK, f"/dev/kvm opens (CPU flags: {flags}); the first run confirms it "
                 "with a canary boot")


def check_qemu_img(where: Where) -> DoctorCheck:
    return _tool("qemu-img", "qemu-utils")


def check_mmdebstrap(where: Where) -> DoctorCheck:
    return _tool("mmdebstrap", "mmdebstrap", ["dpkg-query", "-W", "-f=${Version}", "mmdebstrap"],
                 why="builds guest images")


def check_userns(where: Where) -> DoctorCheck:
    """Can this user own an image's files (root, or root of a user namespace of its own)?"""
    if userns.privileged():
        return DoctorCheck("user namespace", OK, "running as root: images are built without one")
    why = userns.problem()
    if why:
        return DoctorCheck("user namespace", FAIL, f"image builds as an ordinary user need one: {why}",
                           f"apt-get install uidmap ({SETUP}); give the user subordinate ids")
    return DoctorCheck("user namespace", OK, "image builds run as root of a user namespace (unshare --map-auto)")


def check_mkfs_ext4(where: Where) -> DoctorCheck:
    return _tool("mkfs.ext4", "e2fsprogs", ["mkfs.ext4", "-V"])


def check_make(where: Where) -> DoctorCheck:
    return _tool("make", "build-essential")


def check_gcc(where: Where) -> DoctorCheck:
    return _tool("gcc", "build-essential")


def check_ccache(where: Where) -> DoctorCheck:
    return _tool("ccache", "ccache", why="kernel builds run CC='ccache gcc'")


def check_git(where: Where) -> DoctorCheck:
    return _tool("git", "git")


def check_build_helpers(where: Where) -> DoctorCheck:
    missing = [t for t in ("flex", "bison", "bc", "cpio", "perl") if shutil.which(t) is None]
    headers = {"/usr/include/libelf.h": "libelf-dev", "/usr/include/openssl/ssl.h": "libssl-dev"}
    missing_pkgs = missing + [pkg for h, pkg in headers.items() if not Path(h).exists()]
    if missing_pkgs:
        return DoctorCheck("kernel build helpers", FAIL, f"missing: {', '.join(missing_pkgs)}",
                     f"apt-get install {' '.join(missing_pkgs)} ({SETUP})")
    return DoctorCheck("kernel build helpers", OK, "flex, bison, bc, cpio, perl, libelf and openssl headers")


def check_kernel_source(where: Where) -> DoctorCheck:
    try:
        kdef = load_kernel("baseline")
    except DefinitionError as e:
        fix = (TARBALL_HINT if e.key == "source.tarball" else
               f"make the source that {e.path.name} names exist" if e.key.startswith("source.")
               else f"fix {e.path}")
        return DoctorCheck("kernel source", FAIL, str(e), fix)
    src = kdef.source
    if src.kind == "git" and ("://" in src.location or src.location.startswith("git@")):
        return DoctorCheck("kernel source", OK, f"baseline: git {src.location} (fetched at the first build)")
    path = Path(src.location).expanduser()
    if not path.exists():
        fix = TARBALL_HINT if src.kind == "tarball" else f"create {path} or change {kdef.path}"
        return DoctorCheck("kernel source", FAIL, f"baseline: {src.kind} {path} does not exist", fix)
    if not os.access(path, os.R_OK):
        return DoctorCheck("kernel source", FAIL, f"baseline: {path} is not readable",
                     f"chmod a+r {path}, or run as a user who can read it")
    size = f", {path.stat().st_size / (1 << 20):.0f} MiB" if path.is_file() else ""
    return DoctorCheck("kernel source", OK, f"baseline: {src.kind} {path}{size}")


def _nearest_existing(path: Path) -> Path:
    p = path.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _space(name: str, path: Path, what: str, warn_gb: float, fail_gb: float) -> DoctorCheck:
    at = _nearest_existing(path)
    if not at.is_dir():
        return DoctorCheck(name, FAIL, f"{at} is not a directory ({what} go under {path})",
                     f"move {at} aside, or choose another place")
    if not os.access(at, os.W_OK):
        return DoctorCheck(name, FAIL, f"{at} is not writable ({what})",
                     f"make {at} writable, or choose another place")
    free = shutil.disk_usage(at).free / GB
    detail = f"{free:.1f} GB free at {path} ({what})"
    if free < fail_gb:
        return DoctorCheck(name, FAIL, detail, f"free space on that filesystem (at least {warn_gb:.0f} GB)")
    if free < warn_gb:
        return DoctorCheck(name, WARN, detail, f"free space on that filesystem (under {warn_gb:.0f} GB "
                     "can run out during a kernel build or an image build)" if name == "cache disk"
                     else f"free space (under {warn_gb:.0f} GB can run out during long runs)")
    return DoctorCheck(name, OK, detail)


def check_cache_disk(where: Where) -> DoctorCheck:
    fix_env = "or point KHARNESS_CACHE at a larger filesystem"
    c = _space("cache disk", cache_root(), "kernel trees, ccache, images", CACHE_WARN_GB, CACHE_FAIL_GB)
    return c if c.status == OK else DoctorCheck(c.name, c.status, c.detail, f"{c.fix}, {fix_env}")


def check_results_disk(where: Where) -> DoctorCheck:
    return _space("results disk", where.results or results_root(), "run directories",
                  RESULTS_WARN_GB, RESULTS_FAIL_GB)


def check_image_fio(where: Where) -> DoctorCheck:
    built, older = [], 0
    for meta in sorted((cache_root() / "images").glob("*/metadata.json")):
        try:
            data = json.loads(meta.read_text())
        except (OSError, ValueError):
            continue
        if data.get("builder") == BUILDER_VERSION:
            built.append((meta.parent.name, data.get("recipe", {}).get("packages", [])))
        else:
            older += 1
    if built:
        without = [name for name, pkgs in built if "fio" not in pkgs]
        if without:
            return DoctorCheck("image fio", FAIL, f"cached image(s) without fio: {', '.join(without)}",
                         "add fio to the recipe's packages in vm-images/, then kharness image build")
        return DoctorCheck("image fio", OK, f"fio in {', '.join(name for name, _ in built)}")
    try:
        pkgs = load_image("debian-bookworm").packages
    except HarnessError as e:
        return DoctorCheck("image fio", FAIL, str(e), "fix vm-images/debian-bookworm.yaml")
    if "fio" not in pkgs:
        return DoctorCheck("image fio", FAIL, "recipe debian-bookworm does not list fio",
                     "add fio to vm-images/debian-bookworm.yaml")
    stale = f" ({older} cached from an older image builder, unused)" if older else ""
    return DoctorCheck("image fio", OK, f"no image built yet{stale}; recipe debian-bookworm lists fio "
                 "(the first run builds it, or: kharness image build)")


def _shared_hint() -> str:
    shared = project_root().parent / "shared" / "xfstests"
    found = sorted(shared.glob("xfstests-*.tar.gz")) if shared.is_dir() else []
    example = (f"export KHARNESS_XFSTESTS={found[0]}" if found else
               "e.g. export KHARNESS_XFSTESTS=$(ls ../shared/xfstests/xfstests-*.tar.gz | head -1)")
    return f"{example} (a tarball as in ../shared/xfstests/, a git URL or a checkout)"


def _tarball_has_check(path: Path) -> bool:
    with tarfile.open(path) as tf:
        return any(re.fullmatch(r"(\./)?[^/]+/check", m.name) for m in tf)


def check_xfstests(where: Where) -> DoctorCheck:
    where_ = configured_source(None, None)
    if where_ is None:
        return DoctorCheck("xfstests source", WARN, "KHARNESS_XFSTESTS is not set: xfstests runs and "
                     "their tests are skipped", _shared_hint())
    loc = where_[0]
    fix = f"point KHARNESS_XFSTESTS at an existing source; {_shared_hint()}"
    if "://" in loc or loc.startswith("git@"):
        return DoctorCheck("xfstests source", OK, f"KHARNESS_XFSTESTS={loc} (cloned at the first image build)")
    path = Path(loc).expanduser()
    if not path.exists():
        return DoctorCheck("xfstests source", FAIL, f"KHARNESS_XFSTESTS={loc}: {path} does not exist", fix)
    if not os.access(path, os.R_OK):
        return DoctorCheck("xfstests source", FAIL, f"KHARNESS_XFSTESTS={loc}: {path} is not readable", fix)
    if path.is_file():
        try:
            ok = _tarball_has_check(path)
        except (OSError, tarfile.TarError) as e:
            return DoctorCheck("xfstests source", FAIL, f"KHARNESS_XFSTESTS={loc}: not a readable tarball "
                         f"({e})", fix)
        if not ok:
            return DoctorCheck("xfstests source", FAIL, f"KHARNESS_XFSTESTS={loc}: the tarball has no "
                         "top-level directory with xfstests' check script", fix)
        return DoctorCheck("xfstests source", OK, f"KHARNESS_XFSTESTS={loc} (tarball)")
    if (path / ".git").exists() or (path / "HEAD").exists() or (path / "check").exists():
        return DoctorCheck("xfstests source", OK, f"KHARNESS_XFSTESTS={loc} (directory)")
    return DoctorCheck("xfstests source", FAIL, f"KHARNESS_XFSTESTS={loc}: neither a git repository nor "
                 "an xfstests tree (no check script)", fix)


def check_store(where: Where) -> DoctorCheck:
    path = where.store or default_store_path()
    if not path.exists():
        at = _nearest_existing(path.parent)
        if not os.access(at, os.W_OK):
            return DoctorCheck("results store", FAIL, f"{path} does not exist and {at} is not writable",
                         "choose a writable place with --store or KHARNESS_STORE")
        return DoctorCheck("results store", OK, f"{path} (not created yet; the first run creates it, "
                     f"schema version {SCHEMA_VERSION})")
    try:
        with Store(path) as store:
            version = store.schema_version
            runs = store.conn.execute("SELECT count(*) FROM runs").fetchone()[0]
    except HarnessError as e:
        return DoctorCheck("results store", FAIL, str(e), "upgrade kharness if the store is newer; "
                     "otherwise move the file aside (it is recreated empty) or choose another with --store")
    return DoctorCheck("results store", OK, f"{path}: schema version {version}, {runs} run(s)")


CHECKS: tuple[Callable[[Where], DoctorCheck], ...] = (
    check_qemu, check_kvm, check_qemu_img, check_mmdebstrap, check_userns, check_mkfs_ext4, check_make,
    check_gcc, check_ccache, check_git, check_build_helpers, check_kernel_source,
    check_cache_disk, check_results_disk, check_image_fio, check_xfstests, check_store)


def run_checks(where: Where = Where()) -> list[DoctorCheck]:
    """Every check, in order; a check that breaks is reported as a failure, not raised."""
    rows = []
    for fn in CHECKS:
        try:
            rows.append(fn(where))
        except Exception as e:  # a doctor reports, it does not crash
            name = fn.__name__.removeprefix("check_").replace("_", " ")
            rows.append(DoctorCheck(name, FAIL, f"the check itself failed: {type(e).__name__}: {e}",
                              "report this as a kharness bug"))
    return rows
