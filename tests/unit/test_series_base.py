"""The definition `kharness try` keeps for a base at a commit other than the import
(harness.drivers.series.base): building it alone gives the tried kernel's tree, on a tree
source (a diff from the import as its first patch) and on a git source (a source pinned at
the commit), with real git repositories and the real apply path (harness.kernel.build)."""

import subprocess
from pathlib import Path

import pytest

from harness.config.kernels import load_kernel
from harness.drivers.series.base import find_base, keep_definition, root_definitions
from harness.drivers.series.read import read_series
from harness.drivers.series.run import plan_try
from harness.errors import HarnessError
from harness.kernel.build import apply_definition
from harness.kernel.source import import_source

ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t",
       "PATH": "/usr/bin:/bin"}
# a non-UTF-8 byte (Latin-1 e-acute) in a kernel file: the base diff must keep bytes, not text
INODE = b"int ext4_x(void)\n{\n\treturn 0; /* caf\xe9 */\n}\n"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True,
                          env=ENV).stdout.strip()


def commit(repo: Path, path: str, data: bytes, msg: str) -> str:
    f = repo / path
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_bytes(data)
    git(repo, "add", "-A", "-f", ".")
    git(repo, "commit", "-qm", msg)
    return git(repo, "rev-parse", "HEAD")


def tree_of(repo: Path, rev: str) -> str:
    return git(repo, "rev-parse", f"{rev}^{{tree}}")


@pytest.fixture
def proj(tmp_path, monkeypatch):
    root = tmp_path / "proj"
    (root / "kernels").mkdir(parents=True)
    monkeypatch.setenv("KHARNESS_ROOT", str(root))
    monkeypatch.setenv("KHARNESS_CACHE", str(tmp_path / "cache"))
    return root


def kernel_tree(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    (src / "fs" / "ext4").mkdir(parents=True)
    (src / "Makefile").write_text("all:\n")
    (src / "fs" / "ext4" / "inode.c").write_bytes(INODE)
    (src / "fs" / "ext4" / "logo.bin").write_bytes(bytes(range(256)))
    return src


def test_a_tree_base_at_a_later_commit_builds_on_that_commit(proj, tmp_path):
    (proj / "kernels" / "base.yaml").write_text(f"source: {{tree: {kernel_tree(tmp_path)}}}\n")
    repo = import_source(load_kernel("base").source).repo
    # a history on top of the import (as tests/helpers/history.py makes): c1 changes a text and
    # a binary file and deletes nothing; the series is c2, a range of that history
    commit(repo, "fs/ext4/logo.bin", bytes(reversed(range(256))), "ext4: new logo")
    c1 = commit(repo, "fs/ext4/inode.c", INODE.replace(b"return 0", b"return 1"), "ext4: return 1")
    c2 = commit(repo, "fs/ext4/inode.c", INODE.replace(b"return 0", b"return 2"), "ext4: return 2")
    plan = plan_try(f"base:{c1}..{c2}", name="ret2", budget_s=300.0)
    assert plan.base.ref == f"base@{c1}" and plan.kernel == "ret2"
    text = plan.definition.read_text()
    assert "base: base\n" in text and f"built on base@{c1}" in text
    kept = sorted(p.name for p in (proj / "kernels" / "patches" / "ret2").iterdir())
    assert kept == [f"0000-base-at-{c1[:12]}.patch", "0001-ext4-return-2.patch"]
    # the definition alone (what reproduce, nightly plans and pytest --kernel=ret2 build): c2's tree
    base_commit, patched = apply_definition(load_kernel("ret2"))
    assert base_commit == git(repo, "rev-parse", "refs/kharness/base")
    assert tree_of(repo, patched) == tree_of(repo, c2)
    # the same series again reuses it; the import itself as base needs no base patch
    assert plan_try(f"base:{c1}..{c2}", name="ret2", budget_s=300.0).definition == plan.definition
    imp = git(repo, "rev-parse", "refs/kharness/base")
    plain = plan_try(f"base:{imp}..{c1}", name="on-import", budget_s=300.0)
    assert plain.base.ref == "base" and not any((proj / "kernels" / "patches" / "on-import").glob("0000-*"))
    # a kept definition of the same name on another base is refused, not silently rebased
    with pytest.raises(HarnessError, match="other patches"):
        plan_try(f"base:{imp}..{c2}", name="ret2", budget_s=300.0)


def test_a_git_base_at_a_commit_pins_the_source_there(proj, tmp_path):
    origin = tmp_path / "origin"
    origin.mkdir()
    git(origin, "init", "-q")
    commit(origin, "Makefile", b"all:\n", "import")
    commit(origin, "fs/ext4/inode.c", INODE, "ext4: inode")
    frag = proj / "kernels" / "configs" / "x.config"
    frag.parent.mkdir()
    frag.write_text("CONFIG_EXT4_FS=y\n")
    (proj / "kernels" / "gitk.yaml").write_text(
        f"source: {{git: {origin}}}\nconfig: {{base: tinyconfig, fragments: [configs/x.config]}}\n")
    c1 = commit(origin, "fs/ext4/inode.c", INODE.replace(b"return 0", b"return 1"), "ext4: return 1")
    c2 = commit(origin, "fs/ext4/inode.c", INODE.replace(b"return 0", b"return 2"), "ext4: return 2")
    repo = import_source(load_kernel("gitk").source).repo       # the cached clone (at HEAD = c2)
    commit(origin, "fs/ext4/inode.c", INODE.replace(b"return 0", b"return 3"), "ext4: later")  # HEAD moves on
    s = read_series(f"gitk:{c1}..{c2}", range_repo=("gitk", repo))
    base = find_base(s, "gitk")
    assert base.ref == f"gitk@{c1}"
    keep_definition("ret2", s, base)
    k = load_kernel("ret2")
    assert k.source.kind == "git" and k.source.ref == c1 and k.config_base == "tinyconfig"
    assert k.fragments == (frag,) and len(k.patches) == 1
    base_commit, patched = apply_definition(k)
    assert base_commit == c1 and tree_of(repo, patched) == tree_of(repo, c2)
    assert [d.name for d in root_definitions()] == ["gitk"]     # a kept definition is no base for others
