"""Outside input at adversarial sizes costs bounded time and memory, and a size cap names the file:
YAML alias bombs, mbox subjects, definitions, xfstests refs, worker tarballs, artifact modes."""

from __future__ import annotations

import io
import os
import stat
import subprocess
import tarfile
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.config import kernels
from harness.config.loader import MAX_DEFINITION_BYTES, load_yaml
from harness.errors import DefinitionError, HarnessError, PatchError
from harness.kernel import patches
from harness.kernel.patches import MAX_MBOX_BYTES, parse_series
from tests.helpers.mutations import examples
from tests.helpers.nights import two_nights  # noqa: F401  (the fixture)
from tests.helpers.specs import spec_dir

SETTINGS = settings(max_examples=examples(40), deadline=None)


# -- YAML --------------------------------------------------------------------------------------------
def alias_bomb(depth: int, width: int = 10) -> str:
    lines = [f"l0: &l0 [{', '.join(['x'] * width)}]"]
    for i in range(1, depth + 1):
        lines.append(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("schema", [kernels.SCHEMA, {}])
def test_alias_bomb_is_refused_quickly(tmp_path, schema):
    p = tmp_path / "bomb.yaml"
    p.write_text(alias_bomb(7))
    assert len(p.read_bytes()) < 600
    t0 = time.monotonic()
    with pytest.raises(DefinitionError, match=r"bomb\.yaml.*alias"):
        load_yaml(p, schema)
    assert time.monotonic() - t0 < 0.5


def test_alias_bomb_under_a_schema_key_is_refused_before_validation(tmp_path):
    """jsonschema renders the instance in its messages: a bomb under ``description`` would cost
    time and memory exponential in its depth if it ever reached the validator."""
    p = tmp_path / "k.yaml"
    p.write_text("description:\n  - " + "\n  - ".join(line.split(": ", 1)[1]
                                                    for line in alias_bomb(7).splitlines()) + "\n")
    t0 = time.monotonic()
    with pytest.raises(DefinitionError, match="alias"):
        load_yaml(p, kernels.SCHEMA)
    assert time.monotonic() - t0 < 0.5


@SETTINGS
@given(st.integers(1, 12), st.integers(2, 40))
def test_nested_aliases_cost_bounded_work(depth, width):
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "def.yaml"
        p.write_text(alias_bomb(depth, width))
        t0 = time.monotonic()
        try:
            data = load_yaml(p, {})
        except DefinitionError as e:
            assert "alias" in str(e) and str(p) in str(e)
        else:
            assert width ** (depth + 1) <= 100_000 and len(data) == depth + 1
        assert time.monotonic() - t0 < 1.0


def test_small_anchors_and_merge_keys_still_load(tmp_path):
    p = tmp_path / "ok.yaml"
    p.write_text("base: &b {a: 1, b: [1, 2]}\nother:\n  <<: *b\n  c: 3\nagain: *b\n")
    assert load_yaml(p, {})["other"] == {"a": 1, "b": [1, 2], "c": 3}


def test_definition_size_is_capped(tmp_path):
    p = tmp_path / "huge.yaml"
    p.write_text("description: |\n" + ("  " + "x" * 99 + "\n") * (MAX_DEFINITION_BYTES // 100 + 10))
    with pytest.raises(DefinitionError, match=r"huge\.yaml.*larger than"):
        load_yaml(p, {})


# -- mbox ------------------------------------------------------------------------------------------------
def mail(subject: str) -> bytes:
    return (b"From 0 Mon Sep 17 00:00:00 2001\nFrom: a@b\nSubject: " + subject.encode()
            + b"\n\nx\n---\ndiff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n")


def test_repeated_bracket_subject_parses_in_linear_time(tmp_path):
    f = tmp_path / "x.mbox"
    f.write_bytes(mail("[1/1 " * 8000 + "fs: x"))            # 40 KB: 11.5 s with the old regex
    t0 = time.monotonic()
    (p,) = parse_series([f])
    assert time.monotonic() - t0 < 1.0
    assert p.number is None


@SETTINGS
@given(st.sampled_from(["[", "[1/1 ", "[PATCH ", "[1/", "]", "[[1/2]", "1/1]", " "]), st.integers(1, 100_000))
def test_subject_number_costs_linear_work(piece, n):
    subject = (piece * n)[:100_000] + "[PATCH 3/7] x"
    t0 = time.monotonic()
    number = patches.patch_number(subject)
    assert time.monotonic() - t0 < 0.5
    assert number in (None, 1, 2, 3)
    assert patches.patch_number(subject[-13:]) == 3


@pytest.mark.parametrize("subject,want", [
    ("[PATCH v2 3/7] fs: x", 3), ("[PATCH 0/2] cover", 0), ("[PATCH] x", None), ("[RFC][PATCH 2/5] y", 2),
    ("[PATCH 12345678901/2] x", None), ("[PATCH 1/2 ] x", 1), ("[PATCH a1/2] x", None), ("x [PATCH 4/5]", 4),
    ("[PATCH [2/3] x", 2), ("[PATCH 1/2] [3/4]", 1), ("[PATCH 1/2 x] [3/4]", 3), ("]1/2]", None),
])
def test_subject_number_matches_the_old_pattern(subject, want):
    import re
    old = re.compile(r"\[[^\]]*?\b([0-9]{1,9})/([0-9]{1,9})\s*\]")
    m = old.search(subject)
    assert (int(m.group(1)) if m else None) == want == patches.patch_number(subject)


@settings(max_examples=examples(300), deadline=None)
@given(st.text(alphabet="[]/ 0123456789aP_\u0663\t", max_size=60))
def test_subject_number_agrees_with_the_old_pattern(subject):
    import re
    old = re.compile(r"\[[^\]]*?\b([0-9]{1,9})/([0-9]{1,9})\s*\]")
    m = old.search(subject)
    assert (int(m.group(1)) if m else None) == patches.patch_number(subject)


def test_mbox_size_is_capped(tmp_path):
    f = tmp_path / "big.mbox"
    f.write_bytes(mail("[PATCH] x") + b"+" * (MAX_MBOX_BYTES + 1))
    with pytest.raises(PatchError, match="larger than"):
        parse_series([f])


# -- git am after a SIGKILL -------------------------------------------------------------------------
def _git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True,
                          env=env).stdout.strip()


def test_stale_am_session_is_cleaned_before_applying(tmp_path):
    from harness.kernel.patches import apply_series
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "x").write_text("a\n")
    _git(repo, "add", "x")
    _git(repo, "commit", "-q", "-m", "base")
    base = _git(repo, "rev-parse", "HEAD")
    f = tmp_path / "0001.patch"
    f.write_bytes(mail("[PATCH] change x"))
    # What a SIGKILL during `git am` leaves: the am session directory, mid-series.
    other = tmp_path / "other.patch"
    other.write_bytes(mail("[PATCH] does not apply").replace(b"-a\n+b", b"-zzz\n+b"))
    subprocess.run(["git", "-C", str(repo), "am", "-3", str(other)], capture_output=True,
                   env={**os.environ, "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"})
    assert (repo / ".git" / "rebase-apply").is_dir()
    commit = apply_series(repo, base, parse_series([f]))
    assert (repo / "x").read_text() == "b\n" and commit != base
    assert not (repo / ".git" / "rebase-apply").exists()


# -- xfstests refs ------------------------------------------------------------------------------------
@pytest.mark.parametrize("ref", ["--upload-pack=touch /tmp/x", "-x", "a b", "a..b", "a\x00b", "a\nb", "\x1b[2J", ""])
def test_bad_xfstests_refs_are_refused(ref):
    from harness.image.xfstests import XfstestsSourceError, check_ref
    with pytest.raises(XfstestsSourceError, match="ref"):
        check_ref(ref)


@pytest.mark.parametrize("ref", ["v2024.12.01", "master", "origin/for-next", "a" * 40, "HEAD~2", "refs/tags/v1"])
def test_good_xfstests_refs_pass(ref):
    from harness.image.xfstests import check_ref
    assert check_ref(ref) == ref


def test_xfstests_git_commands_end_options(monkeypatch, tmp_path):
    from harness.image import xfstests
    seen: list[list[str]] = []

    def fake_run(argv, **kw):
        seen.append([str(a) for a in argv])
        raise xfstests.CommandError([str(a) for a in argv], 1, "no")
    monkeypatch.setattr(xfstests, "run", fake_run)
    monkeypatch.setattr(xfstests, "cache_dir", lambda what: tmp_path / what)
    with pytest.raises(xfstests.XfstestsSourceError):
        xfstests.resolve("https://example.org/xfstests.git", "master")
    clone = next(a for a in seen if "clone" in a)
    assert clone[clone.index("--"):][1] == "https://example.org/xfstests.git"
    with pytest.raises(xfstests.XfstestsSourceError, match="ref"):
        xfstests.resolve("https://example.org/xfstests.git", "--upload-pack=x")


# -- artifacts and worker tarballs --------------------------------------------------------------------
def test_installed_artifact_modes_are_masked(tmp_path, monkeypatch):
    import hashlib

    from harness.executors import artifacts
    monkeypatch.setattr(artifacts, "cache_dir", lambda what: tmp_path / what)
    files = {"bzImage": (b"kernel", 0o6777), "metadata.json": (b"{}", 0o1666)}
    m = artifacts.Manifest("kernel", "", "k1", tuple(
        artifacts.FileEntry(n, len(d), mode, hashlib.sha256(d).hexdigest()) for n, (d, mode) in files.items()))
    refs = {n: [d] for n, (d, _) in files.items()}
    where, fetched = artifacts.install(m, refs, lambda r: r)
    assert fetched
    assert stat.S_IMODE((where / "bzImage").stat().st_mode) == 0o755
    assert stat.S_IMODE((where / "metadata.json").stat().st_mode) == 0o644


def _tgz(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _file(name: str, data: bytes, size: int | None = None) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data) if size is None else size
    return info, data


def test_unpack_caps_total_size_and_members(tmp_path):
    from harness.executors import ray_unit
    blob = _tgz([_file("a", b"x" * 4096), _file("b", b"y" * 4096)])
    with pytest.raises(HarnessError, match="larger than"):
        ray_unit.unpack_run_dir(blob, tmp_path / "d1", max_bytes=6000)
    blob = _tgz([_file(f"f{i}", b"") for i in range(20)])
    with pytest.raises(HarnessError, match="members"):
        ray_unit.unpack_run_dir(blob, tmp_path / "d2", max_members=10)
    ray_unit.unpack_run_dir(blob, tmp_path / "d3")
    assert len(list((tmp_path / "d3").iterdir())) == 20


@pytest.mark.parametrize("kind", ["symlink", "hardlink", "absolute", "dotdot", "fifo", "corrupt"])
def test_unpack_refuses_links_escapes_and_junk(tmp_path, kind):
    from harness.executors import ray_unit
    if kind == "corrupt":
        blob = b"\x1f\x8b" + os.urandom(200)
    else:
        info = tarfile.TarInfo({"absolute": "/etc/x", "dotdot": "../x"}.get(kind, "x"))
        if kind in ("symlink", "hardlink"):
            info.type, info.linkname = (tarfile.SYMTYPE if kind == "symlink" else tarfile.LNKTYPE), "/etc/passwd"
        if kind == "fifo":
            info.type = tarfile.FIFOTYPE
        blob = _tgz([(info, b"" if info.isreg() else None)])
    with pytest.raises(HarnessError, match="run directory from a worker"):
        ray_unit.unpack_run_dir(blob, tmp_path / "d")
    assert not (tmp_path / "x").exists()


def test_unpacked_modes_are_masked(tmp_path):
    from harness.executors import ray_unit
    info, data = _file("x", b"hi")
    info.mode = 0o6777
    ray_unit.unpack_run_dir(_tgz([(info, data)]), tmp_path / "d")
    assert stat.S_IMODE((tmp_path / "d" / "x").stat().st_mode) == 0o755


# -- pytest suite: an unknown filesystem for xfstests ---------------------------------------------------
def test_xfstests_items_unknown_fs_is_a_usage_error(pytester):
    root = Path(__file__).resolve().parents[2]
    pytester.makepyfile(test_fstests_items=(root / "suite/test_fstests_items.py").read_text())
    pytester.makeconftest((root / "suite/conftest.py").read_text())
    res = pytester.runpytest_subprocess("--collect-only", "--kernel=patched", "--fs=btrfs",
                                        "--xfstests=generic/001")
    out = res.stdout.str() + res.stderr.str()
    assert res.ret != 0
    assert "KeyError" not in out and "Traceback" not in out
    assert "btrfs" in out and "ext4" in out


# -- `kharness run fio`: what a hang left undone is listed -------------------------------------------------
def test_fio_table_lists_cells_a_hang_left_undone():
    from types import SimpleNamespace

    from rich.console import Console

    from harness.cli.run import _fio_table
    m = SimpleNamespace(cell="ext4/nvme/a/libaio", run_index=0, iops=None, bw_kib_s=None, clat_p50_us=None,
                        clat_p99_us=None, clat_p999_us=None, status="hang")
    rec = SimpleNamespace(measurements=[m], remaining=("ext4/nvme/b/libaio",), status="hang",
                          failures=("fio hung in ext4/nvme/a/libaio",))
    con = Console(width=200, record=True)
    con.print(_fio_table([rec]))
    text = con.export_text()
    assert "ext4/nvme/b/libaio" in text and "not run" in text and "hang" in text


def test_a_bad_worker_tarball_fails_its_unit_only(tmp_path):
    """RayExecutor._collect with a stand-in Ray: a tarball with a symlink becomes an error record."""
    from types import SimpleNamespace

    from harness.executors.ray import RayExecutor, _Unit
    from tests.helpers.specs import fio_spec
    info = tarfile.TarInfo("evil")
    info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
    out = {"record": {}, "run_dir_tgz": _tgz([(info, None)]), "host": "w1"}

    class RayError(Exception):
        pass
    ray = SimpleNamespace(get=lambda ref: out, exceptions=SimpleNamespace(RayTaskError=RayError, RayError=RayError))
    ex = object.__new__(RayExecutor)
    ex.ray, ex.units, ex.max_retries = ray, [], 3
    unit = _Unit(0, fio_spec(), tmp_path / "runs" / "20261206-000000-x-0001", 1, deadline=1e9, ref=object())
    said: list[str] = []
    rec = ex._collect(unit, said.append, {"group": "g"})
    assert rec.status == "error" and "refusing member 'evil'" in rec.failures[0]
    assert rec.remaining and (unit.run_dir / "record.json").exists()
    assert not (unit.run_dir / "evil").exists()


# -- other parsers of outside input: size caps ----------------------------------------------------------
def test_fio_output_is_capped(monkeypatch):
    from harness.errors import WorkloadError
    from harness.workloads import fio
    monkeypatch.setattr(fio, "MAX_FIO_OUTPUT_CHARS", 1000)
    with pytest.raises(WorkloadError, match=r"r0\.json.*more than the 1000"):
        fio.parse_fio_json('{"jobs": []}' + " " * 2000, "r0.json")


def test_xunit_report_is_capped(tmp_path, monkeypatch):
    from harness.util import read_text_capped
    from harness.workloads import xfstests_results as xr
    monkeypatch.setattr(xr, "MAX_XUNIT_CHARS", 1000)
    with pytest.raises(HarnessError, match="larger than the 1000"):
        xr.parse_xunit("<testsuite>" + " " * 2000 + "</testsuite>")
    f = tmp_path / "result.xml"
    f.write_text("<testsuite>" + " " * 2000 + "</testsuite>")
    with pytest.raises(HarnessError, match=r"result\.xml: xunit report of 2023 bytes is larger"):
        read_text_capped(f, 1000, "xunit report")


def test_huge_run_record_is_recovered_from_the_rest(two_nights, tmp_path, monkeypatch):  # noqa: F811
    from harness.drivers.nightly import units
    from harness.drivers.nightly.fold import group_of

    _plan, store, _db, _ = two_nights
    d = spec_dir(tmp_path / "runs", "20261129-030000-nightly-x-0009")
    (d / "record.json").write_text('{"run_id": "' + "x" * 5000 + '"}')
    (d / "console.log").write_text("noise\n" * 2000 + "[    1.000000] Kernel panic - not syncing: boom\n")
    monkeypatch.setattr(units, "MAX_RECORD_BYTES", 1000)
    monkeypatch.setattr(units, "MAX_CONSOLE_BYTES", 200)
    assert units.recover_orphans(d.parent, store, group_of("n2"), lambda s: None) == [d.name]
    row = store.run(d.name)
    assert row.status == "error" and row.record["failures"] == [units.INTERRUPTED]
    assert [e["kind"] for e in row.record["events"]] == ["panic"]
