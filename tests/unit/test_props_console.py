"""Property tests: console-event and sysrq-dump parsers give a result for any console text
(mutated real captures and random text), never an exception, and the streaming entry points
(a file read a line at a time, EventWatcher fed in chunks) agree with the text ones."""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.errors import HarnessError
from harness.evidence.console import clean_console_line
from harness.evidence.events import KINDS, EventWatcher, scan_console, scan_console_file
from harness.evidence.summary import summarize_dump, to_json
from harness.evidence.sysrq import parse_dumps, parse_dumps_file
from tests.helpers.mutations import examples, mutated, texts

CONSOLES = texts("console/*.txt", "sysrq/*.txt")
# Lines whose numbers the dump parser converts (task headers, pwq/pool lines, work lists).
NUMBERED = re.compile(r"task:|pwq |pool |in-flight:|pending:|inactive:|idle:|hung=")
SETTINGS = settings(max_examples=examples(300), deadline=None)


def check_events(text: str) -> list:
    try:
        events = scan_console(text)
    except HarnessError:
        return []
    offsets = [e.offset for e in events]
    assert offsets == sorted(offsets) and all(0 <= o <= len(text) for o in offsets)
    for e in events:
        assert e.kind in KINDS and e.title
        assert clean_console_line(text[e.offset:].split("\n", 1)[0])[0].strip() == e.line
    return events


def check_dumps(text: str) -> list:
    try:
        dumps = parse_dumps(text)
    except HarnessError:
        return []
    end = 0
    for d in dumps:
        assert d.kind in ("w", "t", "wq")
        assert end <= d.start_offset < d.end_offset <= len(text)
        end = d.end_offset
        assert all(t.pid >= 0 and t.comm for t in d.tasks)
        assert all(t.offset >= d.start_offset for t in d.tasks)
        assert d.truncated == (d.cut_in is not None)
        summary = summarize_dump(d)
        assert all(isinstance(line, str) and line for line in summary)
        cut_lines = [line for line in summary if line.startswith("dump cut short")]
        assert cut_lines == (summary[:1] if d.truncated else [])
        json.dumps(to_json(d))
    return dumps


@SETTINGS
@given(mutated(CONSOLES, windowed=True, focus=NUMBERED))
def test_console_text_gives_events_and_dumps(text):
    check_events(text)
    check_dumps(text)


@SETTINGS
@given(mutated(CONSOLES, windowed=True), st.lists(st.integers(1, 400), min_size=1, max_size=8))
def test_event_watcher_in_chunks_equals_scan(text, sizes):
    watcher = EventWatcher()
    pos, i = 0, 0
    while pos < len(text):
        size = sizes[i % len(sizes)]
        watcher.feed(text[pos:pos + size])
        pos, i = pos + size, i + 1
    watcher.flush()
    assert watcher.events == scan_console(text)


@SETTINGS
@given(mutated(CONSOLES, windowed=True, surrogates=False))
def test_file_parse_equals_text_parse(text):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "console.log"
        path.write_text(text, encoding="utf-8", newline="")
        assert parse_dumps_file(path) == parse_dumps(text)
        assert scan_console_file(path) == scan_console(text)


@settings(max_examples=examples(100), deadline=None)
@given(st.sampled_from([t for t in texts("sysrq/*.txt") if "<TASK>" in t]), st.data())
def test_a_dump_cut_inside_a_stack_says_it_was_cut(text, data):
    """Cut a capture anywhere between a task's <TASK> and </TASK>: the dump it is in says so."""
    starts = [i for i in range(len(text)) if text.startswith("<TASK>", i)]
    start = data.draw(st.sampled_from(starts))
    stop = text.index("</TASK>", start)
    cut = data.draw(st.integers(text.index("\n", start) + 1, text.rindex("\n", 0, stop)))
    cut = text.index("\n", cut - 1) + 1  # at a line end, so the last line read is whole
    dumps = [d for d in parse_dumps(text[:cut]) if d.start_offset < cut]
    if dumps and dumps[-1].end_offset == cut and dumps[-1].tasks:
        assert dumps[-1].truncated and dumps[-1].cut_in.startswith("in the stack of")
        assert dumps[-1].cut_by is None


# -- what reaches a terminal ------------------------------------------------------------------------------
_UNSAFE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")   # C0 but tab and newline, DEL, C1


@pytest.mark.parametrize("raw,want", [
    ("\x1bcreset", "reset"), ("a\x1b]0;owned\x07b", "ab"), ("a\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\", "alink"),
    ("\x9b31mred\x9b0m", "red"), ("\x9d0;title\x9cok", "ok"), ("\x1b(Bx\x1b7y\x1b8", "xy"), ("x\x1b", "x"),
    ("[    1.000000] a\x1b[31mb\x1b[0m\x00c\x85d\x7f", "abcd"), ("tab\there", "tab\there"),
    ("\x1bP1$r\x1b\\ok", "ok"), ("\x1b[?2004hroot@x:~#", "root@x:~#"),
])
def test_console_lines_lose_every_terminal_control(raw, want):
    assert clean_console_line(raw)[0] == want


@SETTINGS
@given(st.text(alphabet=st.sampled_from(list("\x1b\x9b\x9d\x07\x9c[]0;?Pc(\\ab\t\r\x00\x85\x7f\u00e9")), max_size=80))
def test_no_terminal_control_survives_cleaning(raw):
    from harness.evidence.console import strip_controls
    line = clean_console_line(raw)[0]
    assert not _UNSAFE.search(line), repr(line)
    assert not _UNSAFE.search(strip_controls(raw + "\n" + raw).replace("\n", ""))


def test_cli_consoles_print_recorded_text_literally():
    from rich.markup import escape

    from harness.cli import common
    for con in (common.out, common.console):
        with con.capture() as cap:
            con.print(escape("fio :x: failed \x1bc\x1b]0;t\x07 [red]x[/red] \x9b2J"))
        text = cap.get()
        assert ":x:" in text and "\u274c" not in text and "[red]x[/red]" in text
        assert not _UNSAFE.search(text.replace("\n", "")), repr(text)
    from rich.table import Table
    table = Table("test", "message")
    table.add_row("generic/001", escape("guest said :x: \x1bc\x9d0;t\x9c"))
    with common.out.capture() as cap:
        common.out.print(table)
    assert ":x:" in cap.get() and not _UNSAFE.search(cap.get().replace("\n", ""))


def test_an_unterminated_title_string_ends_at_its_line():
    from harness.evidence.console import strip_controls
    assert strip_controls("a\x1b]0;title\nnext line\n") == "a\nnext line\n"
