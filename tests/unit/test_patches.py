"""mbox / format-patch parsing and series keys (no git needed)."""

from pathlib import Path

import pytest

from harness.errors import PatchError
from harness.kernel.patches import parse_series, series_key

DIFF = """---
 fs/a.c | 1 +
diff --git a/fs/a.c b/fs/a.c
index 1111111..2222222 100644
--- a/fs/a.c
+++ b/fs/a.c
@@ -1 +1,2 @@
 x
+y
--
2.39.5
"""


def msg(subject: str, body: str = "Body.\n\n" + DIFF,
        frm: str = "From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001") -> str:
    return f"{frm}\nFrom: Dev <dev@example.org>\nDate: Mon, 1 Jan 2024 00:00:00 +0000\nSubject: {subject}\n\n{body}\n"


def test_format_patch_file(tmp_path):
    p = tmp_path / "0001-a.patch"
    p.write_text(msg("[PATCH] fs: add y"))
    (s,) = parse_series([p])
    assert s.subject == "fs: add y" and s.number is None and s.source == p


def test_lore_mbox_skips_cover_and_replies_and_orders(tmp_path):
    mbox = tmp_path / "series.mbox"
    mbox.write_text(
        msg("[PATCH v2 0/2] cover", "This series...\n", frm="From lore Mon Sep 17 00:00:00 2001")
        + msg("[PATCH v2 2/2] second", frm="From lore Mon Sep 17 00:00:00 2001")
        + msg("Re: [PATCH v2 1/2] first", "Looks good\n> " + DIFF.replace("\n", "\n> "),
              frm="From lore Mon Sep 17 00:00:00 2001")
        + msg("[PATCH v2 1/2] first", frm="From lore Mon Sep 17 00:00:00 2001"))
    series = parse_series([mbox])
    assert [p.subject for p in series] == ["first", "second"]
    assert [p.number for p in series] == [1, 2]


def test_patchwork_single_mail_without_from_line(tmp_path):
    p = tmp_path / "pw.mbox"
    p.write_text("From: Dev <dev@example.org>\nSubject: [RFC,PATCH] fs: z\n\n" + DIFF)
    (s,) = parse_series([p])
    assert s.subject == "fs: z"


def test_encoded_subject(tmp_path):
    p = tmp_path / "enc.patch"
    p.write_text(msg("=?UTF-8?q?=5BPATCH=5D_fs=3A_caf=C3=A9?="))
    assert parse_series([p])[0].subject == "fs: café"


def test_file_without_patch_is_an_error(tmp_path):
    p = tmp_path / "cover.mbox"
    p.write_text(msg("[PATCH 0/3] just a cover", "text\n"))
    with pytest.raises(PatchError) as e:
        parse_series([p])
    assert "cover.mbox" in str(e.value) and "no patch" in str(e.value)
    q = tmp_path / "junk.patch"
    q.write_text("this is not a mail\n")
    with pytest.raises(PatchError, match="junk.patch"):
        parse_series([q])


def test_series_key_changes_with_content_and_order(tmp_path):
    a, b = tmp_path / "a.patch", tmp_path / "b.patch"
    a.write_text(msg("[PATCH] a"))
    b.write_text(msg("[PATCH] b"))
    pa, pb = parse_series([a])[0], parse_series([b])[0]
    k = series_key("c" * 40, [pa, pb])
    assert k == series_key("c" * 40, [pa, pb])
    assert k != series_key("c" * 40, [pb, pa])
    assert k != series_key("d" * 40, [pa, pb])
    b.write_text(msg("[PATCH] b", "Body changed.\n\n" + DIFF))
    assert k != series_key("c" * 40, [pa, parse_series([b])[0]])


def test_shipped_patch_parses():
    root = Path(__file__).resolve().parents[2]
    (p,) = parse_series([root / "kernels/patches/0001-dio-unbound-single-threaded-wq.patch"])
    assert "unbound" in p.subject
    assert b'alloc_workqueue("dio-sync"' in p.raw


# Found by tests/unit/test_props_definitions.py: each raised something other than a PatchError.
def test_non_ascii_from_line(tmp_path):
    """mailbox decodes the "From " line as ASCII: UnicodeDecodeError."""
    p = tmp_path / "x.mbox"
    p.write_bytes(msg("[PATCH] fs: add y", frm="From caf\xe9 Mon Sep 17 00:00:00 2001")
                  .encode("latin-1"))
    (s,) = parse_series([p])
    assert s.subject == "fs: add y" and b"diff --git" in s.raw
    assert parse_series([tmp_path / "x.mbox"])[0].raw == s.raw


def test_mail_the_email_package_cannot_write_back_keeps_its_bytes(tmp_path):
    """A multipart mail with 8-bit text: as_bytes() raised UnicodeEncodeError."""
    p = tmp_path / "m.mbox"
    text = msg("[PATCH] fs: add y").replace("Subject:", "Content-Type: multipart/mixed\nSubject:")
    p.write_bytes(text.encode() + b"\x80\n")
    (s,) = parse_series([p])
    assert s.subject == "fs: add y" and b"diff --git" in s.raw and b"\x80" in s.raw


def test_non_ascii_subject_bytes(tmp_path):
    """A raw 8-bit Subject (a Header object in compat32) and an unknown charset are kept."""
    p = tmp_path / "s.patch"
    p.write_bytes(msg("[PATCH] caf\udce9 =?x-unknown?b?////?=").encode("utf-8", "surrogateescape"))
    (s,) = parse_series([p])
    assert s.subject.startswith("caf")


def test_absurd_patch_number_and_unreadable_file(tmp_path):
    p = tmp_path / "n.patch"
    p.write_text(msg("[PATCH " + "9" * 5000 + "/2] big"))  # ValueError from int() before
    (s,) = parse_series([p])
    assert s.number is None
    with pytest.raises(PatchError, match="cannot read"):
        parse_series([tmp_path / "missing.patch"])
