"""Patch series: split mbox files (patchwork, lore, git format-patch) and apply them with git am -3."""

from __future__ import annotations

import email
import email.policy
import hashlib
import mailbox
import re
import tempfile
from dataclasses import dataclass
from email.header import decode_header, make_header
from pathlib import Path

from ..errors import CommandError, PatchError
from ..util import run
from .git import IDENTITY, git, rev_parse

_NUM = re.compile(r"\[[^\]]*?\b(\d+)/(\d+)\s*\]")
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


def _subject(msg: email.message.Message) -> str:
    raw = msg.get("Subject", "") or ""
    try:
        s = str(make_header(decode_header(raw)))
    except Exception:  # undecodable header: keep it raw
        s = raw
    return " ".join(s.split())


def _strip_prefix(subject: str) -> str:
    return re.sub(r"^(\[[^\]]*\]\s*)+", "", subject).strip()


def _message_payload(msg: email.message.Message) -> bytes:
    if msg.is_multipart():
        return b"\n".join(_message_payload(p) for p in msg.get_payload())  # type: ignore[arg-type]
    payload = msg.get_payload(decode=True)
    return payload if isinstance(payload, bytes) else b""


def parse_series(files: list[Path] | tuple[Path, ...]) -> list[Patch]:
    """Split files into patch messages in series order.

    Cover letters ([PATCH 0/N], or any message without a diff) and replies ("Re: ...") are
    skipped. Within one mbox, numbered patches are ordered by their N/M number.
    Raises PatchError for a file that holds no patch at all.
    """
    series: list[Patch] = []
    for f in files:
        data = f.read_bytes()
        if not data.startswith(b"From "):
            # A bare mail or a plain diff: wrap it into a one-message mbox.
            if not data.lstrip().startswith((b"From:", b"Subject:", b"Date:", b"Message-")):
                raise PatchError(f, "", [], "not an mbox or git format-patch file (no mail headers)")
            data = b"From kharness Mon Sep 17 00:00:00 2001\n" + data
        with tempfile.NamedTemporaryFile(suffix=".mbox") as tmp:
            tmp.write(data)
            tmp.flush()
            box = mailbox.mbox(tmp.name, factory=None, create=False)
            found: list[Patch] = []
            for i, msg in enumerate(box):
                subject = _subject(msg)
                if subject.lower().startswith("re:"):
                    continue
                m = _NUM.search(subject)
                number = int(m.group(1)) if m else None
                if number == 0 or not _DIFF.search(_message_payload(msg)):
                    continue  # cover letter or discussion
                raw = msg.as_bytes(policy=email.policy.compat32)
                found.append(Patch(f, _strip_prefix(subject), raw, number))
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
