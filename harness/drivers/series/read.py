"""Read a series as a developer has it: an mbox or maildir (as ``b4 am`` or lore give it), a
``git format-patch`` directory, or a commit range of a definition's source (``NAME:A..B``).

Mail threads go through ``b4 am`` (offline, on the local file: it picks the newest version of a
series in the thread, adds the trailers replies gave, sets the cover letter apart) when b4 is
installed and the mails carry Message-IDs, which b4 threads by; everything else, and b4's output,
is split by ``harness.kernel.patches.parse_series``. docs/try.md says why and what it costs.
"""

from __future__ import annotations

import email
import mailbox
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ...errors import CommandError, HarnessError
from ...kernel.patches import Patch, parse_series
from ...util import run
from ...vocab import NAME_MAX, valid_name
from .diff import Touched, touched_text

# What `git format-patch --base` and `b4` add after a patch: metadata about the series, not part
# of the change. Kept in the definition's description, dropped from the kept patches (so a series
# with and without them is the same kernel).
_TRAILER_LINE = re.compile(rb"^(base-commit|prerequisite-patch-id|change-id): *[0-9A-Za-z._-]+ *\n", re.M)
_BASE = re.compile(rb"^base-commit: *([0-9a-f]{7,40}) *$", re.M)
_REV = r"([A-Za-z0-9_][A-Za-z0-9_/+~^-]*(?:\.[A-Za-z0-9_/+~^-]+)*)"
_RANGE = re.compile(r"\A(?:([A-Za-z0-9][A-Za-z0-9._-]*):)?" + _REV + r"\.\." + _REV + r"\Z")
_SUFFIXES = (".patch", ".diff", ".eml", ".mbox", ".mbx")


class SeriesError(HarnessError):
    """A series that cannot be read; the message names the file or range."""


@dataclass(frozen=True)
class Series:
    """A series ready to keep and test."""

    source: str                        # what the user gave
    kind: str                          # mbox | maildir | format-patch | range
    subject: str                       # the cover letter's, else the first patch's (no [PATCH] prefix)
    patches: tuple[Patch, ...]         # raw messages without the series metadata lines
    base_commit: str | None            # from a base-commit: line, or a range's start
    touched: Touched
    reader: str                        # "b4 am X.Y" or "kharness"
    range_of: str | None = None        # the definition a commit range was read from

    @property
    def slug(self) -> str:
        """A definition name made of the subject ("fs: direct-io: x y" -> "fs-direct-io-x-y")."""
        return slug(self.subject)


def slug(subject: str, limit: int = 60) -> str:
    """A plain definition name from a subject; "series" when nothing is left."""
    s = re.sub(r"[^A-Za-z0-9]+", "-", subject.lower()).strip("-")
    if len(s) > limit:   # cut at a word boundary
        s = s[:limit + 1].rsplit("-", 1)[0] if "-" in s[:limit + 1] else s[:limit]
    s = s or "series"
    return s if valid_name(s) and len(s) <= NAME_MAX else "series"


def is_range(text: str) -> bool:
    """Whether ``text`` reads as ``[NAME:]A..B`` and is not an existing path."""
    return bool(_RANGE.match(text)) and not Path(text).exists()


def range_definition(text: str) -> str | None:
    """NAME of ``NAME:A..B`` (None without one, or when ``text`` is no range)."""
    m = _RANGE.match(text)
    return m.group(1) if m else None


def strip_metadata(raw: bytes) -> bytes:
    """A message without its base-commit/prerequisite-patch-id/change-id lines."""
    return _TRAILER_LINE.sub(b"", raw)


def base_commits(blobs: list[bytes]) -> list[str]:
    """Every base-commit: value in ``blobs``, first-seen order, no repeats."""
    return list(dict.fromkeys(m.group(1).decode() for b in blobs for m in _BASE.finditer(b)))


def b4_path() -> str | None:
    """The b4 next to this Python (the venv's), else on PATH."""
    here = Path(sys.executable).parent / "b4"
    return str(here) if here.exists() else shutil.which("b4")


def b4_version(b4: str) -> str:
    try:
        return run([b4, "--version"], timeout=60, check=False).stdout.strip() or "?"
    except (OSError, CommandError):
        return "?"


def _has_message_ids(path: Path) -> bool:
    if path.is_dir():
        box: mailbox.Mailbox = mailbox.Maildir(str(path), factory=None, create=False)
    else:
        box = mailbox.mbox(str(path), factory=None, create=False)
    try:
        keys = list(box.iterkeys())
        return bool(keys) and all(email.message_from_bytes(box.get_bytes(k)).get("Message-ID") for k in keys)
    finally:
        box.close()


def _b4_am(b4: str, path: Path, work: Path) -> tuple[Path, str] | None:
    """``b4 --offline-mode am -m PATH``: (the am-ready mbox, the cover letter's subject or "")."""
    env = {"XDG_CACHE_HOME": str(work / "cache"), "XDG_CONFIG_HOME": str(work / "config"),
           "HOME": str(work), "GIT_CONFIG_NOSYSTEM": "1"}
    proc = run([b4, "--offline-mode", "--no-stdin", "am", "-C", "-m", str(path.resolve()), "-o", str(work / "out"),
                "-n", "series"], cwd=work, env=env, timeout=300, check=False)
    mbx = work / "out" / "series.mbx"
    if proc.returncode != 0 or not mbx.exists():
        return None
    cover = ""
    cv = work / "out" / "series.cover"
    if cv.exists():
        cover = str(email.message_from_bytes(cv.read_bytes()).get("Subject", ""))
        cover = re.sub(r"^\s*(\[[^\]]*\]\s*)+", "", " ".join(cover.split()))
    return mbx, cover


def _maildir_as_mbox(path: Path, out: Path) -> Path:
    box = mailbox.Maildir(str(path), factory=None, create=False)
    try:
        with out.open("wb") as f:
            for k in sorted(box.iterkeys()):
                f.write(b"From kharness Mon Sep 17 00:00:00 2001\n" + box.get_bytes(k).rstrip(b"\n") + b"\n\n")
    finally:
        box.close()
    return out


def _from_files(source: str, kind: str, files: list[Path], reader: str, cover: str = "",
                range_of: str | None = None, base: str | None = None) -> Series:
    blobs = [f.read_bytes() for f in files]
    found = base_commits(blobs)
    if base is None and len(found) > 1:
        raise SeriesError(f"{source}: several base-commit: lines ({', '.join(found)}); keep one series per file")
    patches = parse_series(files)
    kept = tuple(Patch(p.source, p.subject, strip_metadata(p.raw), p.number) for p in patches)
    text = "\n".join(p.raw.decode("utf-8", "replace") for p in kept)
    return Series(source, kind, cover or kept[0].subject, kept, base or (found[0] if found else None),
                  touched_text(text), reader, range_of)


def read_series(text: str, *, range_repo: tuple[str, Path] | None = None, use_b4: bool = True) -> Series:
    """The series ``text`` names: a file or directory, or ``[NAME:]A..B`` (``range_repo`` gives
    the definition and repository to read a range from). SeriesError names what is wrong."""
    p = Path(text)
    if not p.exists() and _RANGE.match(text):
        if range_repo is None:
            raise SeriesError(f"{text}: a commit range needs a definition: NAME:A..B or --base NAME")
        return _read_range(text, *range_repo)
    if not p.exists():
        raise SeriesError(f"{text}: no such file or directory (nor a commit range NAME:A..B)")
    with tempfile.TemporaryDirectory(prefix="kharness-try-") as td:
        work = Path(td)
        maildir = p.is_dir() and all((p / d).is_dir() for d in ("cur", "new"))
        if p.is_dir() and not maildir:
            files = sorted(q for q in p.iterdir() if q.is_file() and q.suffix in _SUFFIXES)
            if not files:
                raise SeriesError(f"{p}: a directory with no .patch/.mbox files and not a maildir (cur/, new/)")
            return _from_files(text, "format-patch", files, "kharness")
        kind = "maildir" if maildir else "mbox"
        b4 = b4_path() if use_b4 else None
        try:
            threaded = _has_message_ids(p)
        except (OSError, ValueError, email.errors.MessageError):
            threaded = False
        if b4 and threaded:
            got = _b4_am(b4, p, work)
            if got is not None:
                mbx, cover = got
                # b4 keeps base-commit: where it was (the cover letter it set apart may hold it)
                cv = work / "out" / "series.cover"
                extra = [cv.read_bytes()] if cv.exists() else []
                s = _from_files(text, kind, [mbx], f"b4 am {b4_version(b4)}", cover)
                if s.base_commit is None and extra:
                    found = base_commits(extra)
                    s = Series(s.source, s.kind, s.subject, s.patches, found[0] if found else None, s.touched, s.reader)
                return s
        files = [_maildir_as_mbox(p, work / "maildir.mbox")] if maildir else [p]
        return _from_files(text, kind, files, "kharness")


def _read_range(text: str, name: str, repo: Path) -> Series:
    m = _RANGE.match(text)
    assert m
    a, b = m.group(2), m.group(3)
    with tempfile.TemporaryDirectory(prefix="kharness-range-") as td:
        try:
            start = run(["git", "-C", str(repo), "rev-parse", "--verify", "--quiet", "--end-of-options",
                         f"{a}^{{commit}}"], timeout=60).stdout.strip()
            run(["git", "-C", str(repo), "format-patch", "-q", "--no-signature", "-o", td, "--end-of-options",
                 f"{a}..{b}"], timeout=600)
        except CommandError as e:
            raise SeriesError(f"{text}: not a commit range of {name}'s source {repo}: {e}") from None
        files = sorted(Path(td).glob("*.patch"))
        if not files:
            raise SeriesError(f"{text}: the range holds no commits in {name}'s source {repo}")
        return _from_files(text, "range", files, "git format-patch", range_of=name, base=start)
