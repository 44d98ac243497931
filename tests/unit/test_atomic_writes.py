"""Files a resume or a report reads are written atomically and durably; a resume that meets a
damaged run directory records it and goes on."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest

from harness.drivers.nightly.fold import fold_night, group_of
from harness.drivers.nightly.units import recover_orphans
from harness.errors import HarnessError
from harness.util import WriteError, write_json, write_text_atomic
from tests.helpers.nights import COMMITS, two_nights  # noqa: F401  (the fixture)
from tests.helpers.specs import spec_dir


def test_write_json_fsyncs_file_and_directory_and_leaves_no_temporary(tmp_path, monkeypatch):
    synced: list[int] = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real(fd))[1])
    write_json(tmp_path / "spec.json", {"a": 1})
    assert json.loads((tmp_path / "spec.json").read_text()) == {"a": 1}
    assert len(synced) >= 2                       # the file, then its directory after the rename
    assert [p.name for p in tmp_path.iterdir()] == ["spec.json"]


def test_failed_write_keeps_the_previous_file(tmp_path, monkeypatch):
    target = tmp_path / "record.json"
    write_text_atomic(target, "old\n")

    def full(fd, data):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "write", full)
    with pytest.raises(WriteError, match="record.json.*No space left"):
        write_text_atomic(target, "new\n")
    monkeypatch.undo()
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["record.json"]


@pytest.fixture
def tiny_fs(tmp_path):
    """A 64 KiB tmpfs (root only); the test is skipped where mounting is not permitted."""
    mnt = tmp_path / f"tiny-{uuid.uuid4().hex[:6]}"
    mnt.mkdir()
    try:
        res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "kharness-test", str(mnt)],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as e:
        pytest.skip(f"cannot mount a tmpfs here: {e}")
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True, timeout=30)


def test_full_disk_during_result_writing(tiny_fs):
    target = tiny_fs / "record.json"
    write_json(target, {"status": "done", "measurements": [1, 2, 3]})
    before = target.read_text()
    with pytest.raises(HarnessError, match=r"record\.json") as e:
        write_json(target, {"status": "done", "blob": "x" * 200_000})
    assert e.value.errno == 28
    assert target.read_text() == before
    assert [p.name for p in tiny_fs.iterdir()] == ["record.json"]   # no temporary left behind


def test_truncated_spec_is_recorded_as_damaged_and_the_resume_goes_on(two_nights, tmp_path):  # noqa: F811
    plan, store, db, _ = two_nights
    root = tmp_path / "night" / "runs"
    bad = spec_dir(root, "20261129-020000-nightly-a-0001")
    (bad / "spec.json").write_text((bad / "spec.json").read_text()[:57])       # cut mid-write
    worse = root / "20261129-020001-nightly-b-0002"
    worse.mkdir()
    (worse / "spec.json").write_bytes(b"\xff\xfe{")                              # not even UTF-8
    good = spec_dir(root, "20261129-020002-nightly-c-0003")
    said: list[str] = []
    got = recover_orphans(root, store, group_of("n2"), said.append)
    assert got == [bad.name, worse.name, good.name]
    for d in (bad, worse):
        row = store.run(d.name)
        assert row.status == "boot-failed" and row.group == group_of("n2")
        assert "damaged run directory" in row.record["failures"][0] and "spec.json" in row.record["failures"][0]
    assert store.run(good.name).status == "error"                                # interrupted, recovered
    assert sum("damaged" in s for s in said) == 2
    assert recover_orphans(root, store, group_of("n2"), said.append) == []       # once only
    res = fold_night(store, db, plan, "n2", COMMITS[2])                          # the report still folds
    assert {r["run_id"]: r["status"] for r in res.runs}[bad.name] == "boot-failed"


def test_resume_writers_use_atomic_writes():
    """Every writer of a file a resume or a report reads goes through the atomic helpers."""
    root = Path(__file__).resolve().parents[2] / "harness"
    names = ("spec.json", "record.json", "events.json", "metadata.json", "report.html", "index.html",
             "summary.json", "kcidb.json", "junit.xml", "night.json", "state.json", "comparison.json")
    offenders = []
    for f in root.rglob("*.py"):
        for i, line in enumerate(f.read_text().splitlines(), 1):
            if ".write_text(" in line or ".write_bytes(" in line or 'open(' in line and '"w' in line:
                if any(n in line for n in names) or "path.write_text(html" in line or "path.write_text(_env" in line \
                        or "path.write_text(self.dumps" in line:
                    offenders.append(f"{f.relative_to(root)}:{i}: {line.strip()}")
    assert offenders == []
