"""Hypothesis strategies for the parser property tests (test_props_*.py): near-valid inputs made
by mutating the real captures and definitions of the repository, and random ones.

A mutation truncates, splices in a piece of another input, replaces a number with a huge, NaN,
negative or otherwise absurd one, inserts control characters, or deletes/duplicates/swaps lines.
tests/unit/test_props_mutations.py checks that the strategies do make near-valid inputs.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parent.parent.parent
FIXTURES = ROOT / "tests" / "fixtures"

# Numbers a parser may meet where it expects a count or a time.
ABSURD_NUMBERS = ["NaN", "nan", "Infinity", "-Infinity", "inf", "-inf", "-1", "-0", "-0.5",
                  "1e999", "1e308", "-1e308", "9" * 5000, "9" * 30, "0x1f", "1_000", "", "٣",
                  "²", "1.", ".5", "+3", "0" * 40 + "1", "1e-400"]
CONTROLS = ["\x00", "\r", "\r\n", "\n", "\x1b[2J", "\x1b]0;t\x07", "\x1b", "\x7f", "\x85",
            "\u2028", "\ufeff", "\x0b", "\x0c", "\t", "\x08", "\x1a", "\udcff"]
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:e[+-]?\d+)?")


def examples(n: int) -> int:
    """``n``, or $KHARNESS_PROPERTY_EXAMPLES for a longer hunt (the suite is sized for ~60 s)."""
    return int(os.environ.get("KHARNESS_PROPERTY_EXAMPLES", n))


def read(path: Path) -> str:
    with open(path, newline="", encoding="utf-8") as fh:
        return fh.read()


def texts(*patterns: str) -> list[str]:
    """The text of the files under tests/fixtures (or the repository) matching the globs."""
    out = []
    for pattern in patterns:
        base = ROOT if pattern.startswith("/") else FIXTURES
        out += [read(p) for p in sorted(base.glob(pattern.lstrip("/"))) if p.is_file()]
    assert out, patterns
    return out


# More digits than int() converts (sys.get_int_max_str_digits(), 4300), in ASCII and other scripts.
TOO_MANY_DIGITS = ["9" * 5000, "1" * 4301, "٣" * 4400, "0" * 4299 + "12"]


def absurd_number() -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(ABSURD_NUMBERS), st.sampled_from(TOO_MANY_DIGITS),
                     st.integers().map(str), st.floats(allow_nan=True, allow_infinity=True).map(repr))


def _line_bounds(text: str, draw) -> tuple[int, int]:
    starts = [0] + [m.end() for m in re.finditer("\n", text)]
    i = draw(st.integers(0, len(starts) - 1))
    end = starts[i + 1] if i + 1 < len(starts) else len(text)
    return starts[i], end


@st.composite
def mutate(draw, text: str, pool: list[str] | None = None, surrogates: bool = True,
           max_steps: int = 4, focus: re.Pattern[str] | None = None) -> str:
    """``text`` after 1..max_steps mutations; ``pool`` supplies pieces to splice in; most number
    replacements are in lines matching ``focus`` (those a parser turns into numbers)."""
    controls = CONTROLS if surrogates else [c for c in CONTROLS if c != "\udcff"]
    alphabet = st.characters(blacklist_categories=() if surrogates else ("Cs",))
    for _ in range(draw(st.integers(1, max_steps))):
        op = draw(st.sampled_from(["number", "truncate", "splice", "number", "control", "delete",
                                   "number", "duplicate", "swap", "insert"]))
        pos = draw(st.integers(0, len(text)))
        if op == "truncate":
            text = text[:pos]
        elif op == "splice" and pool:
            other = draw(st.sampled_from(pool))
            a = draw(st.integers(0, len(other)))
            b = draw(st.integers(a, min(len(other), a + 4000)))
            text = text[:pos] + other[a:b] + text[pos:]
        elif op == "number":
            numbers = list(_NUMBER.finditer(text))
            if focus is not None and draw(st.integers(0, 3)):
                lines = [m.span() for m in re.finditer(r"[^\n]*", text) if focus.search(m[0])]
                numbers = [n for n in numbers if any(a <= n.start() < b for a, b in lines)
                           and text[n.end():n.end() + 1] != "]"]  # not the printk time
            if numbers:
                m = numbers[draw(st.integers(0, len(numbers) - 1))]
                text = text[:m.start()] + draw(absurd_number()) + text[m.end():]
        elif op == "control":
            text = text[:pos] + draw(st.sampled_from(controls)) + text[pos:]
        elif op in ("delete", "duplicate", "swap") and text:
            a, b = _line_bounds(text, draw)
            line = text[a:b]
            if op == "delete":
                text = text[:a] + text[b:]
            elif op == "duplicate":
                text = text[:a] + line * draw(st.integers(2, 5)) + text[b:]
            else:
                c, d = _line_bounds(text, draw)
                if b <= c:
                    text = text[:a] + text[c:d] + text[b:c] + line + text[d:]
        elif op == "insert":
            text = text[:pos] + draw(st.text(alphabet, max_size=40)) + text[pos:]
    return text


@st.composite
def window(draw, sources: list[str], max_lines: int = 250) -> str:
    """A run of up to ``max_lines`` consecutive lines of one of ``sources`` (keeps big console
    captures quick to parse while still covering all of them)."""
    text = draw(st.sampled_from(sources))
    lines = text.splitlines(keepends=True)
    start = draw(st.integers(0, max(0, len(lines) - 1)))
    return "".join(lines[start:start + draw(st.integers(1, max_lines))])


@st.composite
def mutated(draw, sources: list[str], *, windowed: bool = False, surrogates: bool = True,
            random_share: int = 8, focus: re.Pattern[str] | None = None) -> str:
    """Mostly a mutated source (or a window of one), sometimes random text."""
    if draw(st.integers(0, random_share)) == 0:
        alphabet = st.characters(blacklist_categories=() if surrogates else ("Cs",))
        return draw(st.text(alphabet, max_size=300))
    base = draw(window(sources)) if windowed else draw(st.sampled_from(sources))
    return draw(mutate(base, sources, surrogates=surrogates, focus=focus))


# JSON values that stand in for any value of a document.
ODD_JSON = st.one_of(
    st.none(), st.booleans(), st.sampled_from([float("nan"), float("inf"), float("-inf"), -1, -0.5,
                                               10**400, -(10**30), "", "12", "NaN", [], {}, [1],
                                               {"x": 1}]),
    st.integers(), st.floats(), st.text(max_size=10),
    st.recursive(st.integers() | st.text(max_size=5),
                 lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
                     st.text(max_size=5), inner, max_size=3), max_leaves=8))


def _paths(node, prefix=()) -> list[tuple]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, prefix + (i,))
    return out


@st.composite
def json_with_odd_values(draw, sources: list[str], focus: frozenset[str] = frozenset()) -> str:
    """A JSON source with 1..3 of its values (anywhere in the tree; half the time one under a
    key in ``focus``) replaced by odd ones or deleted; dumped with NaN/Infinity allowed, as
    Python's json writes them."""
    doc = json.loads(draw(st.sampled_from(sources)))
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(doc) if p]
        focused = [p for p in paths if p[-1] in focus]
        if focused and draw(st.booleans()):
            paths = focused
        path = paths[draw(st.integers(0, len(paths) - 1))]
        node = doc
        for key in path[:-1]:
            node = node[key]
        if draw(st.booleans()) and isinstance(node, dict):
            del node[path[-1]]
        else:
            node[path[-1]] = draw(ODD_JSON)
        if not isinstance(doc, dict):
            break
    return json.dumps(doc, indent=draw(st.sampled_from([None, 1, 2])))


# The keys parse_fio_json reads.
FIO_FIELDS = frozenset({"jobs", "jobname", "job options", "global options", "ioengine", "write",
                        "iops", "bw", "runtime", "total_ios", "io_kbytes", "clat_ns", "lat_ns",
                        "percentile", "mean", "50.000000", "99.000000", "99.900000", "error",
                        "usr_cpu", "sys_cpu"})
