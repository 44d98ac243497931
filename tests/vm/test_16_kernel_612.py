"""Debian's 6.12 as the second base, end to end: build, boot, and the flagship suite.

`extended`: a cold 6.12 build (about 24 minutes on 2 cores) does not fit CI's 90 minutes beside
the 6.1 tests; run with KHARNESS_EXTENDED=1. The measured time is in docs/kernel-6.12.md.
"""

import json
from pathlib import Path

import pytest

from harness.kernel.build import build_kernel
from harness.kernel.kconfig import parse_config
from tests.helpers.suite import run_suite

pytestmark = [pytest.mark.vm, pytest.mark.build, pytest.mark.extended]
ROOT = Path(__file__).resolve().parents[2]


def test_612_builds_with_the_shared_fragments():
    base = build_kernel("baseline-6.12")
    meta = json.loads(base.metadata.read_text())
    assert meta["release"].startswith("6.12.")
    cfg = base.config.read_text()
    for opt in ("CONFIG_BLK_DEV_NVME=y", "CONFIG_XFS_FS=y", "CONFIG_OCFS2_FS=y", "CONFIG_EVENT_TRACING=y",
                "CONFIG_MAGIC_SYSRQ=y", "CONFIG_VIRTIO_BLK=y"):
        assert opt in cfg
    # one trim.config for both bases: every option it asks for sticks on 6.12 too
    trim = set(parse_config((ROOT / "kernels/fragments/trim.config").read_text()))
    assert not trim & set(meta["options_not_applied"]), meta["options_not_applied"]

    patched = build_kernel("patched-6.12")
    pmeta = json.loads(patched.metadata.read_text())
    assert pmeta["based_on"] == "baseline-6.12"
    assert pmeta["base_commit"] == meta["base_commit"]


def test_suite_flags_the_ported_patch_on_612(tmp_path):
    proc, cases = run_suite(tmp_path, "--kernel=patched-6.12", "--baseline=baseline-6.12", "--quick",
                            "--max-runs=5", "--fs=ext4", timeout=3600)
    assert proc.returncode == 1, "the suite should fail on the regression"
    failure = cases["test_no_regression[ext4-nvme-unwritten-convert-libaio]"].find("failure")
    assert failure is not None
    msg = failure.get("message", "") + (failure.text or "")
    assert "ext4/nvme/unwritten-convert/libaio: IOPS -" in msg and "regression" in msg
    # 6.9+ prints no max_active per pwq: "dio-sync: active 1, 30 inactive ..." (6.1: "active 1/1")
    assert "dio-sync: active 1," in msg and "blocked in jbd2_log_wait_commit" in msg
    for name in ("test_no_kernel_errors[baseline]", "test_no_kernel_errors[kernel]",
                 "test_every_workload_completed"):
        assert cases[name].find("failure") is None, name
    from harness.results.store import Store
    with Store(tmp_path / "store.sqlite") as store:
        runs = store.runs(front_end="pytest")
        assert {r.kernel for r in runs} == {"baseline-6.12", "patched-6.12"}
        (group,) = {r.group for r in runs}
        verdicts = {(v.cell, v.metric): v.verdict for v in store.verdicts(group)}
        assert verdicts[("ext4/nvme/unwritten-convert/libaio", "IOPS")] == "regression"
        # the counters name the mechanism on 6.12 too (tracing.config is in baseline-6.12)
        assert verdicts[("ext4/nvme/unwritten-convert/libaio", "dio wq peak concurrency")] == "regression"
