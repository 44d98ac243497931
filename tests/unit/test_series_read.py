"""Reading a series (harness.drivers.series.read): b4 for threads, format-patch directories,
maildirs, commit ranges, base-commit lines, names; and keeping its definition (series.base)."""

import mailbox
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.drivers.series.base import BaseError, find_base, keep_definition
from harness.drivers.series.read import SeriesError, b4_path, base_commits, read_series, slug, strip_metadata
from harness.errors import HarnessError
from harness.kernel.patches import parse_series, series_key
from tests.helpers.trees import tree_project

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "kernels/patches/0001-dio-unbound-single-threaded-wq.patch"
BASE = "dfae30a3af19545c641935ea2a5523295a21266c"


def with_base(tmp_path: Path, commit: str = BASE) -> Path:
    text = SHIPPED.read_text().replace("\n-- \n", f"\nbase-commit: {commit}\n-- \n", 1)
    p = tmp_path / "dio.mbox"
    p.write_text(text)
    return p


def test_format_patch_mbox_with_base_commit(tmp_path):
    s = read_series(str(with_base(tmp_path)))
    assert s.base_commit == BASE and s.reader == "kharness" and s.kind == "mbox"
    assert s.slug == "fs-direct-io-complete-deferred-aio-writes-on-one-unbound"
    assert s.touched.files == ("fs/direct-io.c",)
    # the base-commit line is metadata: the kept patch is the shipped one, byte for byte
    assert [p.raw for p in s.patches] == [p.raw for p in parse_series([SHIPPED])]


@pytest.mark.skipif(b4_path() is None, reason="b4 is not installed (pip install b4)")
def test_b4_picks_the_newest_version_with_its_review_trailer(fixtures):
    s = read_series(str(fixtures / "series" / "ocfs2-v1-v2.mbox"))
    assert s.reader.startswith("b4 am")
    assert s.subject == "ocfs2: fix direct I/O completions"      # the cover letter's
    assert [p.subject for p in s.patches] == ["ocfs2: fix the write path", "ocfs2: fix the end_io path"]
    assert b"ret = 3" in s.patches[0].raw and b"Reviewed-by: Re Viewer" in s.patches[0].raw
    assert s.base_commit == BASE       # from the cover letter b4 set apart
    assert s.touched.files == ("fs/ocfs2/file.c", "fs/ocfs2/aops.c")


def test_without_b4_the_built_in_reader_still_reads_a_thread(fixtures):
    s = read_series(str(fixtures / "series" / "ocfs2-v1-v2.mbox"), use_b4=False)
    assert s.reader == "kharness" and s.base_commit == BASE
    assert len(s.patches) == 4          # both versions: b4 is what picks one


def test_format_patch_directory_and_maildir(tmp_path):
    d = tmp_path / "fp"
    d.mkdir()
    shutil.copy(SHIPPED, d / "0001-x.patch")
    (d / "notes.txt").write_text("ignored")
    assert read_series(str(d)).kind == "format-patch"
    md = mailbox.Maildir(str(tmp_path / "md"), create=True)
    md.add(with_base(tmp_path).read_bytes())
    md.close()
    s = read_series(str(tmp_path / "md"), use_b4=False)
    assert s.kind == "maildir" and s.base_commit == BASE and len(s.patches) == 1


def test_errors_name_the_series(tmp_path):
    with pytest.raises(SeriesError, match="nope.mbox"):
        read_series(str(tmp_path / "nope.mbox"))
    with pytest.raises(SeriesError, match="needs a definition"):
        read_series("abc..def")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SeriesError, match="no .patch"):
        read_series(str(tmp_path / "empty"))
    two = tmp_path / "two.mbox"
    two.write_text(with_base(tmp_path).read_text() + "\n" + with_base(tmp_path, "1" * 40).read_text())
    with pytest.raises(SeriesError, match="several base-commit"):
        read_series(str(two))


def test_metadata_lines_and_slugs():
    assert strip_metadata(b"x\nbase-commit: abc123\nprerequisite-patch-id: 12ab\ny\n") == b"x\ny\n"
    assert base_commits([b"base-commit: abcdef1\n", b"base-commit: abcdef1\nbase-commit: 1234567\n"]) == \
        ["abcdef1", "1234567"]
    assert slug("[PATCH] ext4: fix it!") == "patch-ext4-fix-it"
    assert slug("!!!") == "series"
    assert len(slug("word " * 40)) <= 60 and not slug("word " * 40).endswith("-")


@given(st.text(max_size=200))
def test_any_subject_gives_a_plain_name(subject):
    from harness.vocab import valid_name
    assert valid_name(slug(subject))


# -- base finding and the kept definition, on a small tree source ------------------------------
@pytest.fixture
def project(tmp_path, monkeypatch):
    root, _ = tree_project(tmp_path, "fs/ext4/inode.c", "int ext4_x(void)\n{\n\treturn 0;\n}\n")
    monkeypatch.setenv("KHARNESS_ROOT", str(root))
    monkeypatch.setenv("KHARNESS_CACHE", str(tmp_path / "cache"))
    from harness.config.kernels import load_kernel
    from harness.kernel.source import import_source
    repo = import_source(load_kernel("base").source)
    return root, repo


def git(repo, *args):
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True,
                          env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                               "GIT_COMMITTER_EMAIL": "t@t", "PATH": "/usr/bin:/bin"}).stdout.strip()


def test_base_from_the_cached_source_a_commit_range_and_the_kept_definition(project, tmp_path):
    root, src = project
    s = read_series(str(with_base(tmp_path, src.commit)))
    base = find_base(s, None)
    assert base.ref == "base" and "cached source" in base.how
    path = keep_definition("dio", s, base)
    assert path == root / "kernels" / "dio.yaml" and "base: base" in path.read_text()
    kept = sorted((root / "kernels" / "patches" / "dio").iterdir())
    assert series_key("x", parse_series(kept)) == series_key("x", parse_series([SHIPPED]))
    assert keep_definition("dio", s, base) == path          # the same series again: reused
    other = read_series(str(Path(__file__).parents[1] / "fixtures" / "series" / "ocfs2-v1-v2.mbox"), use_b4=False)
    with pytest.raises(HarnessError, match="other patches"):
        keep_definition("dio", other, base)

    # a commit on top of the import: the base is base@COMMIT; a range of it reads as a series
    (src.repo / "fs" / "ext4" / "inode.c").write_text("int ext4_x(void)\n{\n\treturn 1;\n}\n")
    git(src.repo, "commit", "-qam", "ext4: return 1")
    c1 = git(src.repo, "rev-parse", "HEAD")
    r = read_series(f"base:{src.commit}..{c1}", range_repo=("base", src.repo))
    assert r.kind == "range" and r.base_commit == src.commit and r.touched.files == ("fs/ext4/inode.c",)
    assert r.touched.functions_of("fs/ext4/inode.c") == ("ext4_x",)
    assert find_base(r, r.range_of).ref == "base"
    on_top = read_series(str(with_base(tmp_path, c1)))
    assert find_base(on_top, None).ref == f"base@{c1}"


def test_no_base_names_the_series(project, tmp_path):
    s = read_series(str(with_base(tmp_path, "0" * 40)))
    with pytest.raises(BaseError, match="dio.mbox.*in no cached kernel source"):
        find_base(s, None)
    assert "applied on its tree" in find_base(s, "base").how     # --base: apply it there anyway
    plain = tmp_path / "plain.patch"
    shutil.copy(SHIPPED, plain)
    with pytest.raises(BaseError, match="plain.patch: no base-commit.*--base NAME"):
        find_base(read_series(str(plain)), None)
    assert find_base(read_series(str(plain)), "base").ref == "base"
