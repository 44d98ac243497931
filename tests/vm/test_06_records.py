"""Run records end to end, as a user runs them: `kharness run fio` writes a run directory with its
spec and a row in the results store; `kharness reproduce` redoes it (from the directory or from
the store by run id) with the same spec and figures within noise; a hang reproduces with its own
sysrq evidence; a changed patch makes reproduce refuse and name the patch."""

import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from harness.results.store import Store
from harness.run.spec_read import read_spec

pytestmark = pytest.mark.vm
ROOT = Path(__file__).resolve().parents[2]
CELL = "ext4/nvme/unwritten-convert/libaio"


def kharness(*args, store, env=None, timeout=1200):
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "--store", str(store), *map(str, args)],
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})
    print(proc.stdout[-3000:], proc.stderr[-3000:])
    return proc


def only_run_dir(root: Path) -> Path:
    (d,) = [p for p in root.iterdir() if (p / "spec.json").exists()]
    return d


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """One `kharness run fio` on the patched kernel: (store, run directory)."""
    tmp = tmp_path_factory.mktemp("recorded")
    store = tmp / "store.sqlite"
    first = kharness("run", "fio", "--kernel", "patched", "--fs", "ext4", "--disk", "nvme",
                     "--pattern", "unwritten-convert", "--engine", "libaio", "--runtime", "4", "--size", "32m",
                     "--runs", "3", "--results-dir", tmp / "runs", store=store)
    assert first.returncode == 0, first.stderr
    return store, only_run_dir(tmp / "runs")


def test_run_fio_then_reproduce_it(recorded, tmp_path):
    store, run_dir = recorded
    spec = read_spec(run_dir)
    assert spec.kernel.name == "patched" and spec.kernel.patches and len(spec.kernel.key) == 24
    assert spec.workload.cells[0].id == CELL and spec.workload.cells[0].runs == 3
    assert "ioengine=libaio" in spec.workload.cells[0].job.rendered
    with Store(store) as s:
        (row,) = s.runs()
        assert row.run_id == run_dir.name and row.front_end == "cli" and row.status == "done"
        recorded = [m.iops for m in s.measurements([row.run_id])]
        assert len(recorded) == 3 and all(v > 0 for v in recorded)

    # from the run directory
    again = kharness("reproduce", run_dir, "--results-dir", tmp_path / "repro", store=store)
    assert again.returncode == 0, again.stderr
    repro_dir = only_run_dir(tmp_path / "repro")
    assert read_spec(repro_dir).same_work(spec) == []
    assert CELL in again.stdout and "IOPS" in again.stdout and "recorded" in again.stdout
    # from the store, by a prefix of the run id, one cell
    by_id = kharness("reproduce", run_dir.name[:-2], "--cell", CELL, "--results-dir", tmp_path / "repro2",
                     store=store)
    assert by_id.returncode == 0, by_id.stderr
    with Store(store) as s:
        repros = [r for r in s.runs(front_end="reproduce")]
        assert len(repros) == 2 and {r.reproduces for r in repros} == {row.run_id}
        new = [[m.iops for m in s.measurements([r.run_id])] for r in repros]
    # The same work on the same kernel: medians within TCG's noise (5-9% between boots on an idle
    # host, and short runs wobble more), and far from the 3-4x gap between this kernel and the
    # baseline on this cell.
    median = statistics.median(recorded)
    assert [len(n) for n in new] == [3, 3]
    assert all(0.5 < statistics.median(n) / median < 2.0 for n in new), (recorded, new)


def test_reproducing_a_hang_collects_its_own_evidence(tmp_path):
    store = tmp_path / "store.sqlite"
    frozen = kharness("run", "fio", "--kernel", "baseline", "--fs", "xfs", "--disk", "virtio",
                      "--pattern", "append-extend", "--engine", "libaio", "--runtime", "3", "--size", "16m",
                      "--guest-setup", "mkdir -p /mnt/scratch/fio", "--guest-setup", "fsfreeze --freeze /mnt/scratch",
                      "--deadline", "25", "--results-dir", tmp_path / "runs", store=store)
    assert frozen.returncode == 3, "a hang exits 3"
    again = kharness("reproduce", only_run_dir(tmp_path / "runs"), "--results-dir", tmp_path / "repro", store=store)
    assert again.returncode == 0, again.stderr
    repro_dir = only_run_dir(tmp_path / "repro")
    record = json.loads((repro_dir / "record.json").read_text())
    assert record["status"] == "hang" and record["measurements"][0]["status"] == "hang"
    assert list((repro_dir / "sysrq").glob("hang-*-wt-*.txt")), "the reproduction's own sysrq capture"
    assert "sysrq evidence of the reproduction" in again.stdout
    assert "hang" in again.stdout


def test_reproduce_refuses_when_a_patch_changed(recorded, tmp_path):
    store, run_dir = recorded
    # the same definitions in another project root, with the patch's description edited
    proj = tmp_path / "proj"
    shutil.copytree(ROOT / "kernels", proj / "kernels")
    patch = proj / "kernels/patches/0001-dio-unbound-single-threaded-wq.patch"
    text = patch.read_text()
    patch.write_text(text.replace("\n---\n", "\nEdited after the run.\n---\n", 1))
    refused = kharness("reproduce", run_dir, "--results-dir", tmp_path / "repro",
                       store=store, env={"KHARNESS_ROOT": str(proj)}, timeout=120)
    assert refused.returncode == 2
    err = " ".join(refused.stderr.split())
    assert "cannot reproduce" in err and "kernels/patches/0001-dio-unbound-single-threaded-wq.patch" in err
    assert "changed" in err and "--from-cache" in err
    assert not (tmp_path / "repro").exists() or not any((tmp_path / "repro").iterdir())
