"""Real kernel-stage tests: Debian's tarball, the shipped patch, broken patches, a real build.

These use the per-user cache (see docs/definitions.md), so on a machine that already built the kernels they
are quick; on a fresh machine the baseline build dominates (about 10 minutes on 2 cores).
"""

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from harness.config.kernels import load_kernel
from harness.errors import BuildError, PatchError
from harness.kernel.build import apply_definition, build_kernel
from harness.kernel.git import git
from harness.kernel.kconfig import parse_config
from harness.kernel.source import import_source

pytestmark = pytest.mark.build

ROOT = Path(__file__).resolve().parents[2]


def _definition(tmp_path: Path, patch_text: str) -> "object":
    d = tmp_path / "kernels"
    (d / "patches").mkdir(parents=True)
    (d / "patches/0001-bad.patch").write_text(patch_text)
    (d / "broken.yaml").write_text(
        "source: {tarball: /usr/src/linux-source-6.1.tar.xz}\npatches: [patches/0001-bad.patch]\n")
    return load_kernel("broken", d)


def test_tarball_import_has_the_tree():
    src = import_source(load_kernel("baseline").source)
    files = git(src.repo, "ls-tree", "-r", "--name-only", src.commit, "--", "fs/direct-io.c", "Makefile",
                "fs/iomap/direct-io.c")
    assert files.split() == ["Makefile", "fs/direct-io.c", "fs/iomap/direct-io.c"]
    count = int(git(src.repo, "ls-tree", "-r", "--name-only", src.commit).count("\n")) + 1
    assert count > 60000, f"only {count} files imported: was the top-level .gitignore honoured?"


def test_shipped_patch_applies_and_changes_the_workqueue():
    base, commit = apply_definition(load_kernel("patched"))
    assert base != commit
    src = import_source(load_kernel("patched").source)
    text = git(src.repo, "show", f"{commit}:fs/direct-io.c")
    assert 'alloc_workqueue("dio-sync",' in text and "WQ_UNBOUND, 1)" in text
    assert '"dio/%s"' in git(src.repo, "show", f"{base}:fs/direct-io.c")
    # applied once, then found by its series ref
    assert apply_definition(load_kernel("patched")) == (base, commit)


def test_patch_that_does_not_apply_names_patch_file_and_hunk(tmp_path):
    good = (ROOT / "kernels/patches/0001-dio-unbound-single-threaded-wq.patch").read_text()
    bad = good.replace("struct workqueue_struct *old;", "struct workqueue_struct *older_than_this;")
    bad = bad.replace("index 514042f..9b01395", "index 1234567..89abcde")
    kdef = _definition(tmp_path, bad)
    with pytest.raises(PatchError) as e:
        apply_definition(kdef)
    msg = str(e.value)
    assert "0001-bad.patch" in msg and "complete deferred AIO writes" in msg
    assert "fs/direct-io.c" in msg
    # nothing half-applied: no am in progress, work tree clean
    src = import_source(kdef.source)
    assert not (src.repo / ".git/rebase-apply").exists()
    status = subprocess.run(["git", "-C", str(src.repo), "status", "--porcelain", "-uno"],
                            capture_output=True, text=True).stdout
    assert status == ""


def test_malformed_patch_is_rejected(tmp_path):
    good = (ROOT / "kernels/patches/0001-dio-unbound-single-threaded-wq.patch").read_text()
    broken = good.replace("@@ -561,9 +561,8 @@", "@@ -561,9 +561,zz @@")
    kdef = _definition(tmp_path, broken)
    with pytest.raises(PatchError) as e:
        apply_definition(kdef)
    assert "0001-bad.patch" in str(e.value)
    src = import_source(kdef.source)
    assert not (src.repo / ".git/rebase-apply").exists()


def test_build_baseline_then_patched_incrementally_and_cache_hit():
    base = build_kernel("baseline")
    assert base.bzimage.stat().st_size > 1_000_000
    meta = json.loads(base.metadata.read_text())
    assert meta["release"].startswith("6.1.")
    assert meta["patches"] == []
    cfg = base.config.read_text()
    for opt in ("CONFIG_BLK_DEV_NVME=y", "CONFIG_XFS_FS=y", "CONFIG_OCFS2_FS=y", "CONFIG_KEYBOARD_ATKBD=y",
                "CONFIG_MAGIC_SYSRQ=y", "CONFIG_VIRTIO_BLK=y"):
        assert opt in cfg
    # trim.config is valid for this base: every option it asks for stuck (test_16 checks 6.12)
    trim = set(parse_config((ROOT / "kernels/fragments/trim.config").read_text()))
    assert not trim & set(meta["options_not_applied"]), meta["options_not_applied"]

    patched = build_kernel("patched")
    assert patched.key != base.key
    pmeta = json.loads(patched.metadata.read_text())
    assert pmeta["based_on"] == "baseline"
    assert [p["subject"] for p in pmeta["patches"]][0].startswith("fs: direct-io:")
    assert pmeta["commit"] != meta["commit"] and pmeta["base_commit"] == meta["base_commit"]
    if not patched.cached:
        # only what the patch touched was recompiled (reusing the baseline's build tree)
        log = (patched.dir / "build.log").read_text()
        compiled = [l for l in log.splitlines() if l.startswith("  CC ")]
        assert any("fs/direct-io.o" in l for l in compiled)
        assert len(compiled) < 50, compiled

    again = build_kernel("patched")  # cache-hit time is measured in benchmarks/, not asserted
    assert again.cached and again.key == patched.key and again.dir == patched.dir


def _tiny_tree(d: Path) -> Path:
    (d / "fs").mkdir(parents=True)
    (d / "Makefile").write_text("all:\n")
    (d / "fs/a.c").write_text("int a(void)\n{\n\treturn 1;\n}\n")
    return d


TINY_PATCH = """From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001
From: Dev <dev@example.org>
Date: Mon, 1 Jan 2024 00:00:00 +0000
Subject: [PATCH] fs: return 2

---
 fs/a.c | 2 +-
 1 file changed, 1 insertion(+), 1 deletion(-)

diff --git a/fs/a.c b/fs/a.c
--- a/fs/a.c
+++ b/fs/a.c
@@ -1,4 +1,4 @@
 int a(void)
 {
-\treturn 1;
+\treturn 2;
 }
--
2.39.5
"""


@pytest.mark.parametrize("kind", ["git", "tree"])
def test_git_and_plain_tree_sources(tmp_path, kind):
    tree = _tiny_tree(tmp_path / "src")
    if kind == "git":
        for argv in (["init", "-q", "-b", "main"], ["add", "-A"],
                     ["-c", "user.name=d", "-c", "user.email=d@x", "commit", "-qm", "init"]):
            subprocess.run(["git", "-C", str(tree), *argv], check=True)
        source = f"source: {{git: {tree}, ref: main}}\n"
    else:
        source = f"source: {{tree: {tree}}}\n"
    d = tmp_path / "kernels"
    (d / "patches").mkdir(parents=True)
    (d / "patches/0001.patch").write_text(TINY_PATCH)
    (d / "k.yaml").write_text(source + "patches: [patches/0001.patch]\n")
    kdef = load_kernel("k", d)
    base, commit = apply_definition(kdef)
    src = import_source(kdef.source)
    assert "return 1;" in git(src.repo, "show", f"{base}:fs/a.c")
    assert "return 2;" in git(src.repo, "show", f"{commit}:fs/a.c")


def test_compile_error_shows_compiler_lines_and_log(tmp_path, monkeypatch):
    good = (ROOT / "kernels/patches/0001-dio-unbound-single-threaded-wq.patch").read_text()
    broken = good.replace("WQ_UNBOUND, 1);", "WQ_UNBOUND, 1)")
    assert broken != good
    d = tmp_path / "kernels"
    (d / "patches").mkdir(parents=True)
    (d / "fragments").mkdir()
    # the baseline's source and config, read from its definition: the shared O= tree then
    # recompiles only fs/direct-io.c and fails in seconds, and the next baseline build in that
    # tree has nothing to redo
    baseline = yaml.safe_load((ROOT / "kernels/baseline.yaml").read_text())
    for frag in baseline["config"]["fragments"]:
        (d / frag).write_text((ROOT / "kernels" / frag).read_text())
    (d / "patches/0001-broken.patch").write_text(broken)
    (d / "broken.yaml").write_text(yaml.safe_dump({"source": baseline["source"], "config": baseline["config"],
                                                   "patches": ["patches/0001-broken.patch"]}))
    monkeypatch.setenv("KHARNESS_ROOT", str(tmp_path))
    with pytest.raises(BuildError) as e:
        build_kernel("broken")
    msg = str(e.value)
    assert "fs/direct-io.c" in msg and "error:" in msg
    assert e.value.log.exists() and "fs/direct-io.o" in e.value.log.read_text()
