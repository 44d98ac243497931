"""`kharness doctor` runs the real checks on this machine; broken environments are made for real."""

import json
import os
import shutil
import sqlite3
import tarfile
from pathlib import Path

import pytest

from harness import doctor
from harness.cli import main
from harness.doctor import FAIL, OK, WARN, Where, run_checks

NAMES = ["qemu", "kvm", "qemu-img", "mmdebstrap", "user namespace", "mkfs.ext4", "make", "gcc", "ccache", "git",
         "kernel build helpers", "kernel source", "cache disk", "results disk", "image fio",
         "xfstests source", "results store"]


def _row(rows, name):
    return next(r for r in rows if r.name == name)


@pytest.fixture
def where(tmp_path) -> Where:
    return Where(store=tmp_path / "store" / "results.sqlite", results=tmp_path / "results")


def test_every_check_reports_a_status_and_non_ok_rows_say_how_to_fix(where):
    rows = run_checks(where)
    assert [r.name for r in rows] == NAMES
    for r in rows:
        assert r.status in (OK, WARN, FAIL), r
        assert r.detail, r
        if r.status != OK:
            assert r.fix, r


def test_cli_prints_the_table_and_exits_by_failures(where, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    code = main(["--store", str(where.store), "doctor", "--results-dir", str(where.results)])
    text = capsys.readouterr().out
    for name in NAMES:
        assert name in text
    for header in ("check", "status", "detail", "fix"):
        assert header in text
    failed = [r for r in run_checks(where) if r.status == FAIL]
    assert code == (1 if failed else 0)
    assert f"{len(NAMES)} checks:" in text


def _path_without(tmp_path: Path, *missing: str) -> str:
    """A PATH with every tool the checks look for except ``missing`` (symlinks to the real ones)."""
    d = tmp_path / "bin"
    d.mkdir()
    for tool in ("qemu-system-x86_64", "qemu-img", "mmdebstrap", "mkfs.ext4", "make", "gcc", "ccache",
                 "git", "flex", "bison", "bc", "cpio", "perl", "dpkg-query"):
        real = shutil.which(tool)
        if real and tool not in missing:
            (d / tool).symlink_to(real)
    return str(d)


def test_without_qemu_on_path_qemu_fails_with_the_package_to_install(where, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", _path_without(tmp_path, "qemu-system-x86_64"))
    rows = run_checks(where)
    qemu = _row(rows, "qemu")
    assert qemu.status == FAIL
    assert "qemu-system-x86_64 is not on PATH" in qemu.detail
    assert "apt-get install qemu-system-x86" in qemu.fix
    assert _row(rows, "qemu-img").status == OK       # only what is missing fails
    monkeypatch.setenv("COLUMNS", "250")
    assert main(["--store", str(where.store), "doctor", "--results-dir", str(where.results)]) == 1
    assert "(qemu)" in capsys.readouterr().out


def test_missing_ccache_and_build_helpers_fail(where, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", _path_without(tmp_path, "ccache", "bison"))
    rows = run_checks(where)
    assert _row(rows, "ccache").status == FAIL and "apt-get install ccache" in _row(rows, "ccache").fix
    helpers = _row(rows, "kernel build helpers")
    assert helpers.status == FAIL and "bison" in helpers.detail and "bison" in helpers.fix


def test_xfstests_pointing_at_a_missing_file_fails_naming_it(where, tmp_path, monkeypatch):
    missing = tmp_path / "xfstests-gone.tar.gz"
    monkeypatch.setenv("KHARNESS_XFSTESTS", str(missing))
    row = _row(run_checks(where), "xfstests source")
    assert row.status == FAIL
    assert str(missing) in row.detail and "does not exist" in row.detail
    assert "KHARNESS_XFSTESTS" in row.fix and "shared/xfstests" in row.fix


def test_xfstests_tarball_is_opened_and_must_hold_check(where, tmp_path, monkeypatch):
    tree = tmp_path / "xfstests-dev"
    tree.mkdir()
    (tree / "check").write_text("#!/bin/bash\n")
    good = tmp_path / "good.tar.gz"
    with tarfile.open(good, "w:gz") as tf:
        tf.add(tree, arcname="xfstests-dev")
    monkeypatch.setenv("KHARNESS_XFSTESTS", str(good))
    assert _row(run_checks(where), "xfstests source").status == OK
    bad = tmp_path / "bad.tar.gz"
    with tarfile.open(bad, "w:gz") as tf:
        tf.add(tmp_path / "good.tar.gz", arcname="something/else")
    monkeypatch.setenv("KHARNESS_XFSTESTS", str(bad))
    row = _row(run_checks(where), "xfstests source")
    assert row.status == FAIL and "check script" in row.detail
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not a tarball")
    monkeypatch.setenv("KHARNESS_XFSTESTS", str(junk))
    assert "not a readable tarball" in _row(run_checks(where), "xfstests source").detail


def test_unset_xfstests_warns_with_the_shared_tarballs_as_example(where, monkeypatch):
    monkeypatch.delenv("KHARNESS_XFSTESTS", raising=False)
    row = _row(run_checks(where), "xfstests source")
    assert row.status == WARN
    assert "KHARNESS_XFSTESTS" in row.fix and "../shared/xfstests/" in row.fix


def test_missing_kernel_tarball_fails_with_the_package(where, tmp_path, monkeypatch):
    root = tmp_path / "project"
    shutil.copytree(doctor.project_root() / "kernels", root / "kernels")
    shutil.copytree(doctor.project_root() / "vm-images", root / "vm-images")
    text = (root / "kernels/baseline.yaml").read_text()
    (root / "kernels/baseline.yaml").write_text(
        text.replace("/usr/src/linux-source-6.1.tar.xz", str(tmp_path / "linux-gone.tar.xz")))
    monkeypatch.setenv("KHARNESS_ROOT", str(root))
    row = _row(run_checks(where), "kernel source")
    assert row.status == FAIL
    assert str(tmp_path / "linux-gone.tar.xz") in row.detail
    assert "linux-source-6.1" in row.fix


def test_store_newer_than_kharness_fails_and_a_current_one_opens(where):
    where.store.parent.mkdir(parents=True)
    conn = sqlite3.connect(where.store)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    row = _row(run_checks(where), "results store")
    assert row.status == FAIL and "99" in row.detail and "upgrade kharness" in row.fix
    current = Where(store=where.store.with_name("other.sqlite"), results=where.results)
    assert "not created yet" in _row(run_checks(current), "results store").detail
    assert not current.store.exists()                # the doctor does not create it
    from harness.results.store import SCHEMA_VERSION, Store
    Store(current.store).close()
    row = _row(run_checks(current), "results store")
    assert row.status == OK and f"schema version {SCHEMA_VERSION}, 0 run(s)" in row.detail


def test_little_free_space_warns_then_fails(where, monkeypatch):
    free_gb = shutil.disk_usage(doctor.cache_root()).free / doctor.GB
    monkeypatch.setattr(doctor, "CACHE_WARN_GB", free_gb + 100)
    row = _row(run_checks(where), "cache disk")
    assert row.status == WARN and "GB free at" in row.detail and "KHARNESS_CACHE" in row.fix
    monkeypatch.setattr(doctor, "CACHE_FAIL_GB", free_gb + 50)
    assert _row(run_checks(where), "cache disk").status == FAIL


def test_results_dir_blocked_by_a_file_fails(tmp_path):
    blocker = tmp_path / "results"
    blocker.write_text("a file where the results directory should be\n")
    row = _row(run_checks(Where(store=tmp_path / "s.sqlite", results=blocker / "runs")), "results disk")
    assert row.status == FAIL and f"{blocker} is not a directory" in row.detail and row.fix


def test_cached_image_without_fio_fails(where, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    entry = cache / "images" / "custom-0123"
    entry.mkdir(parents=True)
    (entry / "metadata.json").write_text(json.dumps(
        {"builder": doctor.BUILDER_VERSION, "recipe": {"packages": ["openssh-server", "xfsprogs"]}}))
    monkeypatch.setenv("KHARNESS_CACHE", str(cache))   # the doctor only reads it
    row = _row(run_checks(where), "image fio")
    assert row.status == FAIL and "custom-0123" in row.detail and "fio" in row.fix
    (entry / "metadata.json").write_text(json.dumps(
        {"builder": doctor.BUILDER_VERSION, "recipe": {"packages": ["openssh-server", "fio"]}}))
    assert _row(run_checks(where), "image fio").status == OK


def test_kvm_reports_the_cached_canary_result(where, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setenv("KHARNESS_CACHE", str(cache))
    if not os.path.exists("/dev/kvm"):
        row = _row(run_checks(where), "kvm")
        assert row.status == WARN and "no /dev/kvm" in row.detail and "kvm_intel" in row.fix
        return
    boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    (cache / "accel-probe.json").write_text(json.dumps(
        {"boot_id": boot_id, "name": "tcg", "reason": "a KVM canary boot printed nothing in 20s"}))
    row = _row(run_checks(where), "kvm")
    if row.detail.startswith("/dev/kvm does not open"):
        assert row.status == WARN
        return
    assert row.status == WARN and "canary boot printed nothing" in row.detail
    assert "this host boot" in row.detail and row.fix
