"""Property tests: console-event and sysrq-dump parsers give a result for any console text
(mutated real captures and random text), never an exception, and the streaming entry points
(a file read a line at a time, EventWatcher fed in chunks) agree with the text ones."""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from harness.errors import HarnessError
from harness.evidence.console import clean_console_line
from harness.evidence.events import KINDS, EventWatcher, scan_console, scan_console_file
from harness.evidence.summary import summarize, to_json
from harness.evidence.sysrq import parse_dumps, parse_dumps_file

from .test_props_mutations import examples, mutated, texts

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
        summary = summarize(d)
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
