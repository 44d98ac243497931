"""`kharness try --dry-run`: read, base and select without building; selection.json recorded,
nothing written to kernels/."""

import json
import subprocess
import sys
from pathlib import Path

from tests.helpers.trees import tree_project

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "kernels/patches/0001-dio-unbound-single-threaded-wq.patch"


def project(tmp_path: Path) -> tuple[Path, dict]:
    proj, _ = tree_project(tmp_path, "fs/ocfs2/aops.c", "int f(void) { return __blockdev_direct_IO(0); }\n")
    env = {"KHARNESS_ROOT": str(proj), "KHARNESS_CACHE": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin"}
    return proj, env


def test_dry_run_prints_and_records_the_selection(tmp_path):
    proj, env = project(tmp_path)
    series = tmp_path / "dio.patch"
    series.write_bytes(SHIPPED.read_bytes())
    argv = [sys.executable, "-m", "harness.cli", "--store", str(tmp_path / "s.sqlite"), "try", str(series),
            "--dry-run", "--budget", "5m", "--results-dir", str(tmp_path / "res")]
    no_base = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert no_base.returncode == 2 and "dio.patch: no base-commit" in no_base.stdout + no_base.stderr
    p = subprocess.run([*argv, "--base", "base"], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "touches sb_init_dio_done_wq in fs/direct-io.c" in p.stdout
    (sel,) = (tmp_path / "res").glob("try-*/selection.json")
    data = json.loads(sel.read_text())
    assert data["base"] == "base" and data["touched"] == ["fs/direct-io.c"]
    assert data["cells"] and data["estimated_s"] <= 300 and not data["definition"]
    assert sorted(p.name for p in (proj / "kernels").iterdir()) == ["base.yaml"]


def test_pytest_patch_keeps_the_definition_and_collects_only_the_selected_cells(tmp_path):
    proj, env = project(tmp_path)
    series = tmp_path / "dio.patch"
    series.write_bytes(SHIPPED.read_bytes())
    p = subprocess.run([sys.executable, "-m", "pytest", "suite/test_aio_dsync.py", f"--patch={series}",
                        "--baseline=base", "--patch-budget=200s", "--collect-only", "-q", "-p", "no:cacheprovider",
                        f"--kharness-store={tmp_path / 's.sqlite'}"],
                       capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    cells = [line for line in p.stdout.splitlines() if "test_no_regression[" in line]
    # 200 s: one disk's boots and two cells: ext4's two deferred-completion patterns
    assert sorted(c.split("[")[1] for c in cells) == ["ext4-nvme-randwrite-osync-libaio]",
                                                       "ext4-nvme-unwritten-convert-libaio]"], p.stdout
    assert "deselected" in p.stdout
    kept = proj / "kernels" / "fs-direct-io-complete-deferred-aio-writes-on-one-unbound.yaml"
    assert "base: base" in kept.read_text()
