"""`kharness try` for real: the shipped dio-sync patch as a mailing-list mbox (with the
base-commit: line `git format-patch --base` writes) goes from the mbox to a verdict in one
command, with one xfstest run on both kernels; the same mbox through `pytest --patch` (the
plugin's path) flags it too; and a series touching one filesystem selects only that filesystem.

Cheap on purpose (CI's budget): the kept definitions have the same kernel cache key as `patched`
(the base-commit line is series metadata and is not kept), so the kernel is the one CI built for
the other tests; the budgets admit two cells (ext4's two deferred-completion patterns) or one at
the quick profile's sizes; the xfstests are one named short test (--xfstests generic/002, in
ext4_4k, the filesystem of the selected cells: about 10 s a kernel, where generic/001 takes 75 s
under TCG). The one-filesystem case is a dry run of a commit range of the synthetic history
test_09 uses (its first commit touches only fs/ext4/inode.c), checked from selection.json; the
same range built and run is an extended test below, as is a series on a later commit of that
history (built there, its xfstests new failure flagged). The last test runs the same xfstest
twice, the second time with the first run's base attempts: one boot fewer (the selection
benchmark shares one base between its faults). Times measured warm (TCG, 2 cores) are in
docs/try.md.
"""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.config.kernels import load_kernel
from harness.drivers.series.xfstests import run_xfstests
from harness.image.xfstests import HOW_TO, configured_source
from harness.kernel.build import kernel_inputs
from harness.kernel.source import import_source
from harness.paths import cache_dir
from harness.results.store import Store
from tests.helpers.history import make_history
from tests.helpers.suite import run_suite

pytestmark = pytest.mark.vm
ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "kernels" / "patches" / "0001-dio-unbound-single-threaded-wq.patch"


def kharness(*args, store: Path, timeout: float = 2400) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "--store", str(store), *map(str, args)],
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    print(proc.stdout[-8000:], proc.stderr[-4000:])
    return proc


@pytest.fixture
def kept():
    """Names of definitions a test keeps in kernels/, removed afterwards (unless one existed before
    the test: a developer's own, which `try` reuses when it holds the same patches)."""
    names: list[str] = []
    yield names
    for n in names:
        (ROOT / "kernels" / f"{n}.yaml").unlink(missing_ok=True)
        shutil.rmtree(ROOT / "kernels" / "patches" / n, ignore_errors=True)


def dio_sync_mbox(tmp_path: Path) -> Path:
    """The shipped patch as a posted series: an mbox with the base-commit: line of baseline's import."""
    base = import_source(load_kernel("baseline").source).commit
    mbox = tmp_path / "dio-sync.mbox"
    mbox.write_text(SHIPPED.read_text().replace("\n-- \n", f"\nbase-commit: {base}\n-- \n", 1))
    return mbox


def test_try_flags_the_dio_sync_regression_from_an_mbox(tmp_path, kept):
    mbox = dio_sync_mbox(tmp_path)
    name = "kh-test-try-dio-sync"
    kept.append(name)
    t0 = time.monotonic()
    proc = kharness("try", mbox, "--name", name, "--budget", "200s", "--xfstests", "generic/002", "--text",
                    "--results-dir", tmp_path / "results", store=tmp_path / "store.sqlite")
    print(f"kharness try: {time.monotonic() - t0:.0f} s")
    assert proc.returncode == 1, "a regression must exit 1"
    assert kernel_inputs(name).key == kernel_inputs("patched").key, "the kept definition should be `patched`'s kernel"
    (run_dir,) = (tmp_path / "results").glob("try-*")
    sel = json.loads((run_dir / "selection.json").read_text())
    assert sel["base"] == "baseline" and sel["touched"] == ["fs/direct-io.c"]
    assert sel["functions"] == {"fs/direct-io.c": ["sb_init_dio_done_wq"]}
    cells = [c["item"] for c in sel["cells"]]
    # deferred completions only: ext4 completes unwritten conversions and O_SYNC overwrites in the workqueue
    assert cells == ["ext4/nvme/randwrite-osync/libaio", "ext4/nvme/unwritten-convert/libaio"], cells
    report = (run_dir / "report.txt").read_text()
    assert "Regressions (" in proc.stdout      # --text printed it too
    assert "Regressions (" in report and "Tested-by" not in report
    assert "sysrq: " in report and "dio-sync" in report, report
    assert f"{name} (" in report and "against baseline (" in report
    assert (run_dir / "comparison.json").exists()
    # the named xfstest ran on both kernels, in the selected cells' filesystem, and is recorded:
    # selection.json, the report, the terminal and the store (one xfstests boot a kernel)
    assert [x["item"] for x in sel["xfstests"]] == ["ext4_4k:generic/002"]
    if configured_source(None, None) is None:   # as test_04 skips: CI sets KHARNESS_XFSTESTS (.ci/run)
        assert "(not run: no xfstests source" in report
        pytest.skip(f"the fio part passed; xfstests not checked: no xfstests source configured: {HOW_TO}")
    assert "xfstests result: ext4_4k:generic/002: pass, pass (base pass)" in report, report
    assert "xfstests ext4_4k:generic/002: pass (pass; base pass)" in proc.stdout
    with Store(tmp_path / "store.sqlite") as store:
        xruns = [r for r in store.runs(front_end="try") if r.workload == "xfstests"]
    assert sorted(r.kernel for r in xruns) == ["baseline", name], [(r.kernel, r.workload) for r in xruns]


def test_pytest_patch_flags_the_dio_sync_regression(tmp_path, kept):
    """The plugin's path: `pytest suite/test_aio_dsync.py --patch=MBOX` keeps the definition (named
    after the series), runs the one cell the budget admits and ends with the plain-text report."""
    name = "fs-direct-io-complete-deferred-aio-writes-on-one-unbound"
    if not (ROOT / "kernels" / f"{name}.yaml").exists():
        kept.append(name)
    t0 = time.monotonic()
    proc, cases = run_suite(tmp_path, f"--patch={dio_sync_mbox(tmp_path)}", "--patch-budget=150s", "--max-runs=5")
    print(f"pytest --patch: {time.monotonic() - t0:.0f} s")
    assert proc.returncode == 1, "the suite fails on the regression"
    assert kernel_inputs(name).key == kernel_inputs("patched").key
    cells = sorted(n for n in cases if n.startswith("test_no_regression["))
    assert cells == ["test_no_regression[ext4-nvme-randwrite-osync-libaio]"], cells   # 150 s: one cell
    failure = cases[cells[0]].find("failure")
    assert failure is not None and "regression" in failure.get("message", "") + (failure.text or "")
    assert "deselected" in proc.stdout and f"kharness: {name} vs baseline" in proc.stdout
    # the summary ends with the report for the list, also written beside the selection
    out = proc.stdout
    assert "Tested: fs: direct-io: complete deferred AIO writes" in out and "Regressions (" in out
    assert "sysrq: " in out and "dio-sync" in out and "Tested-by" not in out
    report = (tmp_path / "results" / "report.txt").read_text()
    assert "Regressions (" in report and f"pytest --kernel={name} --baseline=baseline" in report
    sel = json.loads((tmp_path / "results" / "selection.json").read_text())
    assert sel["kernel"] == name and [c["item"] for c in sel["cells"]] == ["ext4/nvme/randwrite-osync/libaio"]


def test_a_one_filesystem_series_selects_only_that_filesystem(tmp_path):
    repo, base, c = make_history()
    proc = kharness("try", f"baseline:{base}..{c[0]}", "--dry-run", "--budget", "30m", "--results-dir",
                    tmp_path / "results", store=tmp_path / "store.sqlite", timeout=300)
    assert proc.returncode == 0
    (sel_path,) = (tmp_path / "results").glob("try-*/selection.json")
    sel = json.loads(sel_path.read_text())
    assert sel["touched"] == ["fs/ext4/inode.c"] and sel["filesystems"] == ["ext4"]
    assert sel["cells"] and all(c["item"].startswith("ext4/") for c in sel["cells"])
    assert all(x["item"].startswith("ext4_") for x in sel["xfstests"])
    assert "touches fs/ext4/inode.c: ext4 cells and the ext4 tests" in sel["reasons"]


@pytest.mark.extended
def test_a_one_filesystem_series_runs_only_that_filesystem(tmp_path, kept):
    repo, base, c = make_history()
    name = "kh-test-try-ext4-only"
    kept.append(name)
    proc = kharness("try", f"baseline:{base}..{c[0]}", "--name", name, "--budget", "200s", "--no-xfstests",
                    "--results-dir", tmp_path / "results", store=tmp_path / "store.sqlite", timeout=3600)
    assert proc.returncode in (0, 1), "a comment is no kernel change; either verdict is a completed run"
    (run_dir,) = (tmp_path / "results").glob("try-*")
    comparison = json.loads((run_dir / "comparison.json").read_text())
    assert comparison["rows"] and {r["cell"].split("/")[0] for r in comparison["rows"]} == {"ext4"}
    assert os.path.exists(run_dir / "report.txt")


@pytest.mark.extended
def test_a_series_on_a_history_commit_is_built_there_and_its_xfstests_failure_flagged(tmp_path, kept):
    """A series whose base is a commit on top of the import (c5 of the test history on c4): the kept
    definition builds it on c4 (the diff from the import, then the series), so its kernel is c5's
    tree; the named xfstest generic/002 passes on baseline@c4 and fails on it (a new failure)."""
    repo, base, c = make_history()
    name = "kh-test-try-hardlink"
    kept.append(name)
    proc = kharness("try", f"baseline:{c[4]}..{c[5]}", "--name", name, "--budget", "150s",
                    "--xfstests", "generic/002", "--results-dir", tmp_path / "results",
                    store=tmp_path / "store.sqlite", timeout=3600)
    assert proc.returncode == 1, "a new xfstests failure exits 1"
    (run_dir,) = (tmp_path / "results").glob("try-*")
    sel = json.loads((run_dir / "selection.json").read_text())
    assert sel["base"] == f"baseline@{c[4]}" and sel["kernel"] == name and sel["filesystems"] == ["ext4"]
    assert "xfstests new failure: ext4_4k:generic/002" in (run_dir / "report.txt").read_text()
    meta = json.loads((cache_dir("kernels") / kernel_inputs(name).key / "metadata.json").read_text())
    tree = subprocess.run(["git", "-C", str(repo), "rev-parse", f"{meta['commit']}^{{tree}}", f"{c[5]}^{{tree}}"],
                          capture_output=True, text=True, check=True).stdout.split()
    assert tree[0] == tree[1], "the kept definition builds c5's tree"


def test_a_second_run_on_the_same_base_takes_the_bases_xfstests(tmp_path):
    """run_xfstests given an earlier run's base attempts (the selection benchmark's faults share
    one base): one boot fewer, the same classification. A base from another kernel or image is
    not taken (tests/unit/test_series_xfstests.py)."""
    if configured_source(None, None) is None:
        pytest.skip(f"no xfstests source configured: {HOW_TO}")
    items = ["ext4_4k:generic/002"]
    first = run_xfstests(items, "patched", "baseline", tmp_path / "a", group="xfstests-reuse-a")
    again = run_xfstests(items, "patched", "baseline", tmp_path / "b", group="xfstests-reuse-b", base=first.base)
    assert len(first.run_dirs) == 2 and len(again.run_dirs) == 1
    assert "-xfstests-patched-" in Path(again.run_dirs[0]).name
    rows = [(d.test, d.category, d.tonight, d.baseline) for d in first.diffs]
    assert rows and rows == [(d.test, d.category, d.tonight, d.baseline) for d in again.diffs]
    assert again.base == first.base and first.base is not None and first.base.attempts
