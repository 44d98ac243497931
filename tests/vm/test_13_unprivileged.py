"""No root needed (kharness issue 21): an ordinary user builds a kernel, builds a guest image,
boots it and runs fio, with nothing of root's but the packages scripts/setup installed.

The test itself runs as root (as CI does) only to create the user ``kharness-ci`` and its
workspace (tests/helpers/unprivileged.py); every kharness command runs as that user through
``runuser`` with a clean environment. The image build is the part that used to need root
(debootstrap, chroot): here mmdebstrap runs in unshare mode and the tree is assembled as root of
the user's own user namespace. The user's cache lives in its home and is kept between runs.
"""

from __future__ import annotations

import json
import os
import shutil
import stat

import pytest

from tests.helpers.unprivileged import Workspace, owned_by, prepare, processes_of

pytestmark = [pytest.mark.vm, pytest.mark.build]

CELL = ("--fs", "ext4", "--disk", "nvme", "--pattern", "unwritten-convert", "--engine", "libaio")


@pytest.fixture(scope="module")
def ws() -> Workspace:
    if os.geteuid() != 0:
        pytest.skip("creates an ordinary user to run as: run the test suite as root (CI does)")
    return prepare()


def test_an_ordinary_user_builds_boots_and_runs_fio(ws):
    work = ws.home / "ci" / "run"
    if work.exists():   # an earlier CI run's results and store
        shutil.rmtree(work)
    proc = ws.run("kernel", "build", "baseline", timeout=3600)
    assert proc.returncode == 0, proc.stderr
    kernels = list((ws.cache() / "kernels").glob("*/bzImage"))
    assert kernels and all(k.stat().st_uid == ws.uid for k in kernels)

    proc = ws.run("image", "build", "debian-bookworm", timeout=3600)
    assert proc.returncode == 0, proc.stderr
    (meta,) = [p for p in (ws.cache() / "images").glob("debian-bookworm-*/metadata.json")
               if json.loads(p.read_text()).get("builder", 0) >= 4]
    entry = meta.parent
    assert json.loads(meta.read_text())["built_by"] == "user"
    assert owned_by(entry, ws.uid), "an image file the user does not own"
    assert stat.S_IMODE(entry.stat().st_mode) == 0o700
    assert stat.S_IMODE((entry / "base.qcow2").stat().st_mode) == 0o600

    results = work / "results"
    proc = ws.run("--store", str(work / "store.sqlite"), "run", "fio", "--kernel", "baseline", *CELL,
                  "--runtime", "5", "--results-dir", str(results), timeout=1800)
    assert proc.returncode == 0, proc.stderr
    (record,) = results.glob("*/record.json")
    rec = json.loads(record.read_text())
    assert rec["status"] == "done"
    (m,) = rec["measurements"]
    assert m["status"] == "ok" and m["iops"] > 0
    assert owned_by(record.parent, ws.uid)
    assert not [c for c in processes_of(ws.uid) if "qemu" in c or "mmdebstrap" in c or "unshare" in c]


def test_doctor_as_an_ordinary_user_passes_the_image_checks(ws):
    proc = ws.run("doctor", timeout=300)
    status = {}
    for line in proc.stdout.splitlines():
        cells = [c.strip() for c in line.strip("│ ").split("│")]
        if len(cells) >= 2 and cells[0] and cells[1] in ("ok", "warn", "FAIL", "fail"):
            status[cells[0]] = cells[1]
    assert status.get("user namespace") == "ok", proc.stdout
    assert status.get("mmdebstrap") == "ok", proc.stdout
