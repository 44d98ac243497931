"""`kharness try` for real: the shipped dio-sync patch as a mailing-list mbox (with the
base-commit: line `git format-patch --base` writes) goes from the mbox to a verdict in one
command, and a series touching one filesystem selects only that filesystem.

Cheap on purpose (CI's budget): the kept definition has the same kernel cache key as `patched`
(the base-commit line is series metadata and is not kept), so the kernel is the one CI built for
the other tests; the budget admits two cells (ext4's two deferred-completion patterns) at the
quick profile's sizes; xfstests are left to their own tests (--no-xfstests). The one-filesystem
case is a dry run of a commit range of the synthetic history test_09 uses (its first commit
touches only fs/ext4/inode.c), checked from selection.json; the same range built and run is the
extended test below. Measured warm (TCG, 2 cores): the mbox test 2 min 20 s, the dry run 6 s.
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
from harness.kernel.build import kernel_inputs
from harness.kernel.source import import_source
from tests.helpers.history import make_history

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
    """Names of definitions a test keeps in kernels/, removed afterwards."""
    names: list[str] = []
    yield names
    for n in names:
        (ROOT / "kernels" / f"{n}.yaml").unlink(missing_ok=True)
        shutil.rmtree(ROOT / "kernels" / "patches" / n, ignore_errors=True)


def test_try_flags_the_dio_sync_regression_from_an_mbox(tmp_path, kept):
    base = import_source(load_kernel("baseline").source).commit
    mbox = tmp_path / "dio-sync.mbox"
    mbox.write_text(SHIPPED.read_text().replace("\n-- \n", f"\nbase-commit: {base}\n-- \n", 1))
    name = "kh-test-try-dio-sync"
    kept.append(name)
    t0 = time.monotonic()
    proc = kharness("try", mbox, "--name", name, "--budget", "200s", "--no-xfstests", "--text",
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
