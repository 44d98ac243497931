"""What a series touches: files, functions and the words of its changed lines, read from its
diffs (pure).

A unified diff names each file in ``diff --git a/X b/Y`` (or ``--- a/X`` / ``+++ b/Y``) and each
hunk in ``@@ -a,b +c,d @@ CONTEXT``: git puts the enclosing function's first line in CONTEXT
(its "funcname" heuristic), which is how the functions a patch changes are known without the tree.
The identifiers on the added and removed lines (code and comments: ``IOMAP_DIO_WRITE_FUA``,
``datasync``) say what a change is about where the function's name does not.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

_DIFF_GIT = re.compile(r"^diff --git a/(\S+) b/(\S+)\s*$")
_PLUS = re.compile(r"^\+\+\+ (?:b/)?(\S+)")
_HUNK = re.compile(r"^@@ -\d+(?:,\d+)? \+\d+(?:,\d+)? @@ ?(.*)$")
# The function a hunk header's context names: the identifier before the first '(' (C), else None.
_FUNC = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*\(")
# A C function definition's first line inside a hunk (column 0, not a declaration ending in ';').
_DEF = re.compile(r"^(?:[A-Za-z_][A-Za-z0-9_]*[\s*]+)+\**([A-Za-z_][A-Za-z0-9_]*)\s*\((?!.*;\s*$)")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_MAX_PATH = 4096
MAX_WORDS = 512     # words kept per file: a series is the user's, but a huge one stays bounded
_FILE_LINES = ("--- a/", "--- /dev/null", "+++ b/", "+++ /dev/null")


@dataclass(frozen=True)
class Touched:
    """Files a series changes, in first-seen order, with the functions its changed lines are in
    (a definition inside the hunk, else the hunk header's function)."""

    files: tuple[str, ...]
    functions: tuple[tuple[str, tuple[str, ...]], ...]   # (file, functions) for files with any
    words: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (file, lowercased identifiers of changed lines)

    def functions_of(self, path: str) -> tuple[str, ...]:
        """The functions hunks of ``path`` are in (empty when none is known)."""
        return dict(self.functions).get(path, ())

    def words_of(self, path: str) -> tuple[str, ...]:
        """The identifiers on ``path``'s added and removed lines, lowercased, first-seen order."""
        return dict(self.words).get(path, ())

    @property
    def all_functions(self) -> tuple[str, ...]:
        """Every function named by any hunk, first-seen order, no repeats."""
        return tuple(dict.fromkeys(f for _, fs in self.functions for f in fs))


def safe_path(path: str) -> str | None:
    """A diff path kept only when it is relative, inside its tree (no '..' part) and sane."""
    if not path or len(path) > _MAX_PATH or path.startswith("/") or "\0" in path:
        return None
    parts = path.split("/")
    if any(p in ("", ".", "..") for p in parts):
        return None
    return path


_KEYWORDS = frozenset({"if", "for", "while", "switch", "return", "sizeof", "else", "do"})


def function_of(context: str) -> str | None:
    """The function a hunk header's context line names (``static int foo(struct x *y)`` gives
    ``foo``), or None (a struct, a label, nothing)."""
    m = _FUNC.search(context)
    return m.group(1) if m and m.group(1) not in _KEYWORDS else None


def touched(lines: Iterable[str]) -> Touched:
    """Files, functions and changed lines' words of the diffs in ``lines`` (several patches may
    follow one another)."""
    files: dict[str, None] = {}
    funcs: dict[str, dict[str, None]] = {}
    words: dict[str, dict[str, None]] = {}
    current: str | None = None
    in_func: str | None = None     # the function the hunk is in at this line
    prev = ""
    for line in lines:
        after_minus, prev = prev.startswith("--- "), line
        m = _DIFF_GIT.match(line)
        if m:
            in_func = None
            current = safe_path(m.group(2))
            if current is not None:
                files.setdefault(current)
            continue
        m2 = _PLUS.match(line)
        if m2 and after_minus:
            path = m2.group(1)
            if path != "/dev/null":
                current = safe_path(path)
                if current is not None:
                    files.setdefault(current)
            continue
        h = _HUNK.match(line)
        if h:
            in_func = function_of(h.group(1)) if current is not None else None
            continue
        if current is None or not line or line[0] not in " +-" or line.startswith(_FILE_LINES):
            continue
        d = _DEF.match(line[1:])
        if d and d.group(1) not in _KEYWORDS:
            in_func = d.group(1)
        if line[0] in "+-" and in_func:
            funcs.setdefault(current, {}).setdefault(in_func)
        if line[0] in "+-":
            seen = words.setdefault(current, {})
            for w in _WORD.findall(line, 1):
                if len(seen) >= MAX_WORDS:
                    break
                if w not in _KEYWORDS:
                    seen.setdefault(w.lower())
    return Touched(tuple(files), tuple((p, tuple(fs)) for p, fs in funcs.items()),
                   tuple((p, tuple(ws)) for p, ws in words.items() if ws))


def touched_text(text: str) -> Touched:
    """:func:`touched` of a whole text (a patch, an mbox)."""
    return touched(text.splitlines())
