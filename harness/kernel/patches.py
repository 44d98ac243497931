"""Patch series: split mbox files (patchwork, lore, git format-patch) and apply them with git am -3."""

from __future__ import annotations

import email
import email.errors
import email.policy
import hashlib
import mailbox
import re
import shutil
import tempfile
from dataclasses import dataclass
from email.header import decode_header, make_header
from pathlib import Path

from ..errors import CommandError, PatchError
from ..util import InputTooLarge, read_bytes_capped, run
from .git import IDENTITY, git, rev_parse

MAX_MBOX_BYTES = 64 << 20   # a patch series file; far above any real series
# The "N/M" that ends a bracket group ("[PATCH v2 3/7]"): ASCII, bounded numbers (int() refuses
# more than 4300 digits), the N not glued to a word character. Searched within one group at a
# time (see patch_number), so the work is linear in the subject.
_NUM_TAIL = re.compile(r"\b([0-9]{1,9})/([0-9]{1,9})\s*\Z")
_DIFF = re.compile(rb"^(diff --git |--- \S|Index: )", re.M)


@dataclass(frozen=True)
class Patch:
    """One patch message of a series."""

    source: Path      # the file it came from
    subject: str      # as in the mail, without the [PATCH ...] prefix
    raw: bytes        # the whole message, as git am wants it
    number: int | None = None

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.raw).hexdigest()


# What the email package raises on malformed mail (bad encodings, charsets, structure).
_MAIL_ERRORS = (ValueError, LookupError, TypeError, AttributeError, IndexError, AssertionError,
                email.errors.MessageError)


def _subject(msg: email.message.Message) -> str:
    raw = msg.get("Subject", "") or ""  # a Header object when the bytes were not ASCII
    try:
        s = str(make_header(decode_header(raw)))
    except _MAIL_ERRORS:  # undecodable header: keep it raw
        s = str(raw)
    return " ".join(s.split())


def patch_number(subject: str) -> int | None:
    """N of the first bracket group ending in "N/M" ("[PATCH v2 3/7]" gives 3), else None.

    A group runs from a '[' to the next ']' (it may hold other '['). Each stretch between two
    ']' is looked at once, from its first '[', so a subject of 100k '[' costs linear work.
    """
    start = 0
    while True:
        close = subject.find("]", start)
        if close < 0:
            return None
        opening = subject.find("[", start, close)
        if opening >= 0:
            m = _NUM_TAIL.search(subject, opening + 1, close)
            if m:
                return int(m.group(1))
        start = close + 1


def _strip_prefix(subject: str) -> str:
    """The subject without its leading bracket groups ("[PATCH v2 1/3] [RFC] x" gives "x")."""
    s = subject.lstrip()
    while s.startswith("["):
        close = s.find("]")
        if close < 0:
            break
        s = s[close + 1:].lstrip()
    return s.strip()


def _message_payload(msg: email.message.Message) -> bytes:
    if msg.is_multipart():
        return b"\n".join(_message_payload(p) for p in msg.get_payload())  # type: ignore[arg-type]
    payload = msg.get_payload(decode=True)
    return payload if isinstance(payload, bytes) else b""


def _raw(msg: email.message.Message, stored: bytes) -> bytes:
    """The message as git am wants it: re-serialized as before (so series keys stay stable), or
    as stored in the mbox when the email package cannot write it back (malformed mail)."""
    try:
        return msg.as_bytes(policy=email.policy.compat32)
    except _MAIL_ERRORS:
        return stored


def _patches_in(f: Path, box: mailbox.mbox) -> list[Patch]:
    found: list[Patch] = []
    for key in box.iterkeys():
        # get_bytes + message_from_bytes is what box[key] does, minus decoding the "From " line
        # as ASCII (mailbox.mbox.get_message raises UnicodeDecodeError on other bytes there).
        stored = box.get_bytes(key)
        msg = email.message_from_bytes(stored)
        subject = _subject(msg)
        if subject.lower().startswith("re:"):
            continue
        number = patch_number(subject)
        if number == 0 or not _DIFF.search(_message_payload(msg)):
            continue  # cover letter or discussion
        found.append(Patch(f, _strip_prefix(subject), _raw(msg, stored), number))
    return found


def parse_series(files: list[Path] | tuple[Path, ...]) -> list[Patch]:
    """Split files into patch messages in series order.

    Cover letters ([PATCH 0/N], or any message without a diff) and replies ("Re: ...") are
    skipped. Within one mbox, numbered patches are ordered by their N/M number.
    Raises PatchError for a file that cannot be read, that holds no patch at all, or that the
    email package cannot make sense of.
    """
    series: list[Patch] = []
    for f in files:
        try:
            data = read_bytes_capped(f, MAX_MBOX_BYTES, "patch file")
        except OSError as e:
            raise PatchError(f, "", [], f"cannot read: {e.strerror or e}") from None
        except InputTooLarge as e:
            raise PatchError(f, "", [], f"{e.size} bytes: larger than the {e.limit} a patch file may be") from None
        if not data.startswith(b"From "):
            # A bare mail or a plain diff: wrap it into a one-message mbox.
            if not data.lstrip().startswith((b"From:", b"Subject:", b"Date:", b"Message-")):
                raise PatchError(f, "", [], "not an mbox or git format-patch file (no mail headers)")
            data = b"From kharness Mon Sep 17 00:00:00 2001\n" + data
        with tempfile.NamedTemporaryFile(suffix=".mbox") as tmp:
            tmp.write(data)
            tmp.flush()
            box = mailbox.mbox(tmp.name, factory=None, create=False)
            try:
                found = _patches_in(f, box)
            except _MAIL_ERRORS as e:
                raise PatchError(f, "", [], f"malformed mail: {e!r}"[:300]) from None
            finally:
                box.close()
        if not found:
            raise PatchError(f, "", [], "no patch found in this file (only a cover letter or no diff)")
        if all(p.number is not None for p in found):
            found.sort(key=lambda p: p.number)  # type: ignore[arg-type,return-value]
        series.extend(found)
    return series


def series_key(base_commit: str, patches: list[Patch]) -> str:
    """Identity of (base, patches): the ref name patched commits are cached under."""
    h = hashlib.sha256(base_commit.encode())
    for p in patches:
        h.update(p.sha256.encode())
    return h.hexdigest()


def _failure_details(repo: Path, patch_file: Path, am_output: str) -> list[str]:
    """File and hunk lines explaining why a patch failed, from git am and git apply --check -v."""
    lines = [l.strip() for l in am_output.splitlines()
             if l.startswith(("error:", "CONFLICT", "fatal:")) or "corrupt patch" in l]
    probe = run(["git", "-C", str(repo), "apply", "--check", "--verbose", str(patch_file)],
                check=False, timeout=120)
    out = probe.stdout.splitlines()
    for i, l in enumerate(out):
        if l.startswith("error: while searching for:"):
            context = next((c for c in out[i + 1:] if c.strip()), "").strip()
            lines.append(f"hunk context not found: {context!r}")
        elif l.startswith("error: patch failed:"):
            lines.append(l.replace("error: patch failed:", "hunk failed at").strip())
    seen: list[str] = []
    for l in lines:
        if l not in seen:
            seen.append(l)
    return seen


def clear_stale_am(repo: Path) -> None:
    """End an am session a killed kharness left behind (``.git/rebase-apply``): git would refuse
    the next ``git am`` ("previous rebase directory ... still exists") and the patch would look
    broken. The caller holds the repository lock, so no live am owns the session."""
    am_dir = Path(git(repo, "rev-parse", "--git-path", "rebase-apply"))
    am_dir = am_dir if am_dir.is_absolute() else repo / am_dir
    if not am_dir.exists():
        return
    git(repo, "am", "--quit", check=False)      # drops the session, leaves HEAD and the tree
    if am_dir.exists():
        shutil.rmtree(am_dir)


def apply_series(repo: Path, base_commit: str, patches: list[Patch]) -> str:
    """Apply patches on base_commit with ``git am -3``; return the resulting commit.

    The result is kept under refs/kharness/series/<key>, so a series is applied once. The
    caller holds the repository lock. On failure the am is aborted, the work tree is reset
    to the base commit, and PatchError names the patch, the file and the failing hunk.
    """
    if not patches:
        return base_commit
    key = series_key(base_commit, patches)
    ref = f"refs/kharness/series/{key}"
    done = rev_parse(repo, ref)
    if done:
        return done
    clear_stale_am(repo)
    git(repo, "checkout", "-q", "-f", "--detach", base_commit)
    with tempfile.TemporaryDirectory(prefix="kharness-series-") as td:
        for idx, p in enumerate(patches, 1):
            pf = Path(td) / f"{idx:04d}.patch"
            pf.write_bytes(p.raw)
            try:
                run(["git", "-C", str(repo), "-c", "gc.auto=0", "am", "-3", "--keep-cr", "-q",
                     "--committer-date-is-author-date", str(pf)],
                    env=IDENTITY, timeout=600)
            except CommandError as e:
                details = _failure_details(repo, pf, e.output)
                git(repo, "am", "--abort", check=False)
                git(repo, "checkout", "-q", "-f", "--detach", base_commit)
                git(repo, "clean", "-q", "-f", "-d", "-x", check=False)
                raise PatchError(p.source, p.subject, details, e.output) from None
    commit = git(repo, "rev-parse", "HEAD")
    git(repo, "update-ref", ref, commit)
    return commit
