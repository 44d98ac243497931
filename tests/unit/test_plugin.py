"""pytester runs of the kharness pytest plugin: options, markers, collection, usage errors."""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SUITE = (ROOT / "suite/test_aio_dsync.py").read_text()
SUITE_CONFTEST = (ROOT / "suite/conftest.py").read_text()


@pytest.fixture
def suite(pytester):
    pytester.makepyfile(test_aio_dsync=SUITE)
    pytester.makeconftest(SUITE_CONFTEST)
    return pytester


def test_options_are_registered(pytester):
    res = pytester.runpytest_subprocess("--help")
    out = res.stdout.str()
    for opt in ("--kernel", "--baseline", "--fs", "--disk", "--accel", "--runs", "--results-dir", "--quick",
                "--suite-profile", "--max-runs", "--ray"):
        assert opt in out, opt


def test_markers_are_registered(pytester):
    res = pytester.runpytest_subprocess("--markers")
    res.stdout.fnmatch_lines(["@pytest.mark.vm:*", "@pytest.mark.kernel_suite:*"])


def test_without_kernel_the_suite_skips_with_a_reason(suite):
    res = suite.runpytest_subprocess("-rs", "--quick")
    res.assert_outcomes(skipped=7)
    res.stdout.fnmatch_lines(["*the kernel suite needs --kernel NAME*"])


def test_quick_collection(suite):
    res = suite.runpytest_subprocess("--collect-only", "-q", "--quick", "--kernel=patched")
    out = res.stdout.str()
    for cell in ("ext4-nvme-unwritten-convert-libaio", "xfs-nvme-append-extend-libaio"):
        assert f"test_no_regression[{cell}]" in out
    assert "ocfs2" not in out and "io_uring" not in out
    assert "test_no_kernel_errors[baseline]" in out and "test_no_kernel_errors[kernel]" in out
    res.stdout.fnmatch_lines(["7 tests collected*"])


def test_full_matrix_and_filters(suite):
    res = suite.runpytest_subprocess("--collect-only", "-q", "--kernel=patched", "--suite-profile=full")
    # 3 filesystems x 2 disks x 4 patterns x 2 engines + 2 + 1
    res.stdout.fnmatch_lines(["51 tests collected*"])
    res = suite.runpytest_subprocess("--collect-only", "-q", "--kernel=patched")
    # the default profile: ext4 and xfs on NVMe, the four patterns, libaio + 2 + 1
    res.stdout.fnmatch_lines(["11 tests collected*"])
    res = suite.runpytest_subprocess("--collect-only", "-q", "--kernel=patched", "--suite-profile=full", "--fs=ocfs2",
                                     "--disk=virtio")
    out = res.stdout.str()
    assert "test_no_regression[ocfs2-virtio-randwrite-overwrite-io_uring]" in out
    assert "ext4" not in out and "nvme" not in out


def test_unknown_kernel_is_a_usage_error(suite):
    res = suite.runpytest_subprocess("--kernel=nosuchkernel", "-k", "every_workload")
    assert res.ret != 0
    res.stdout.fnmatch_lines(["*no kernel definition named 'nosuchkernel'*"])


def test_unknown_filesystem_is_rejected(suite):
    res = suite.runpytest_subprocess("--collect-only", "--kernel=patched", "--fs=btrfs")
    assert res.ret != 0
    assert "btrfs" in res.stdout.str() + res.stderr.str()


def test_kernel_without_baseline_skips(suite, tmp_path, monkeypatch):
    kdir = tmp_path / "proj" / "kernels"
    kdir.mkdir(parents=True)
    (kdir / "lonely.yaml").write_text("source: {tree: " + str(tmp_path) + "}\n")
    monkeypatch.setenv("KHARNESS_ROOT", str(tmp_path / "proj"))
    res = suite.runpytest_subprocess("-rs", "--kernel=lonely", "-k", "every_workload")
    res.assert_outcomes(skipped=1)
    res.stdout.fnmatch_lines(["*has no baseline: give --baseline NAME*"])


def test_progress_is_shown_live_not_captured(pytester, monkeypatch):
    """Progress lines from inside a test's call reach the terminal as they happen; a captured
    line would appear only in the FAILURES section, after every test ran."""
    monkeypatch.setenv("KHARNESS_ROOT", str(ROOT))
    pytester.makepyfile(test_progress="""
def test_first(kharness):
    kharness.say()("progress: measuring cell 1")
    assert False, "fails, so pytest prints what it captured"

def test_second():
    pass
""")
    res = pytester.runpytest_subprocess("--kernel=patched", "-p", "no:cacheprovider")
    lines = res.stdout.lines
    said = [i for i, line in enumerate(lines) if line.startswith("progress: measuring cell 1")]
    failures = next(i for i, line in enumerate(lines) if "= FAILURES =" in line)
    assert said and said[0] < failures, res.stdout.str()
