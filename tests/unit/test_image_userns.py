"""harness.image.userns: who may own an image's files, and how a command becomes their owner."""

from __future__ import annotations

import pytest

from harness.image import userns


def test_a_range_of_65536_ids_counts_by_name_or_uid(tmp_path):
    f = tmp_path / "subuid"
    f.write_text("alice:100000:65536\n1002:200000:65536\nbob:300000:1000\n")
    assert userns._has_range(f, "alice", 1001)
    assert userns._has_range(f, "carol", 1002)          # by uid
    assert not userns._has_range(f, "bob", 1003)         # too few ids for an image's users
    assert not userns._has_range(tmp_path / "missing", "alice", 1001)


def test_root_runs_in_a_private_mount_namespace_only(monkeypatch):
    monkeypatch.setattr(userns, "privileged", lambda: True)
    assert userns.as_image_root(["tar", "-x"]) == ["unshare", "--mount", "--", "tar", "-x"]


def test_an_ordinary_user_runs_as_root_of_its_own_namespace(monkeypatch):
    monkeypatch.setattr(userns, "privileged", lambda: False)
    monkeypatch.setattr(userns, "problem", lambda: None)
    argv = userns.as_image_root(["tar", "-x"])
    assert argv[:1] == ["unshare"] and {"--map-root-user", "--map-auto", "--mount"} <= set(argv)
    assert argv[-3:] == ["--", "tar", "-x"]


def test_without_subordinate_ids_the_error_says_how_to_get_them(monkeypatch, tmp_path):
    monkeypatch.setattr(userns, "privileged", lambda: False)
    monkeypatch.setattr(userns, "SUBID_FILES", (tmp_path / "subuid", tmp_path / "subgid"))
    with pytest.raises(userns.UsernsError, match="subordinate ids .* usermod --add-subuids"):
        userns.as_image_root(["true"])
