"""Property tests: fio JSON, xunit, check.log and check.time parsers give a result or a
HarnessError for any input, never another exception; what they return is sane."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from harness.errors import HarnessError, WorkloadError
from harness.workloads.fio import parse_fio_json
from harness.workloads.xfstests_results import (
    STATUSES,
    parse_check_log,
    parse_check_time,
    parse_xunit,
    parse_xunit_properties,
    watchdog_seconds,
)
from tests.helpers.mutations import FIO_FIELDS, examples, json_with_odd_values, mutated, texts

FIO = texts("fio/*.json")
XUNIT = texts("xfstests/*.xml")
CHECK_LOG = texts("xfstests/*check.log")
CHECK_TIME = texts("xfstests/*check.time")
SETTINGS = settings(max_examples=examples(250), deadline=None)


@SETTINGS
@given(st.one_of(mutated(FIO), json_with_odd_values(FIO, FIO_FIELDS),
                 st.integers(1, 3000).map(lambda n: '{"jobs": ' + "[" * n + "]" * n + "}")))
def test_fio_json_gives_results_or_workload_error(text):
    try:
        results = parse_fio_json(text, "prop.json")
    except WorkloadError as e:
        assert str(e)
        return
    assert results
    for r in results:
        for figure in (r.iops, r.bw_kib_s, r.lat_mean_us, r.usr_cpu, r.sys_cpu, r.runtime_ms,
                       r.total_ios, r.io_kbytes, r.error):
            assert math.isfinite(figure) and figure >= 0, r
        for p in (r.clat_p50_us, r.clat_p99_us, r.clat_p999_us):
            assert p is None or (math.isfinite(p) and p >= 0), r
        assert not r.job.startswith("prep.")


@SETTINGS
@given(mutated(XUNIT))
def test_xunit_gives_results_or_harness_error(text):
    try:
        results = parse_xunit(text)
        props = parse_xunit_properties(text)
    except HarnessError as e:
        assert str(e)
        return
    assert isinstance(props, dict)
    for r in results:
        assert r.name and r.status in STATUSES
        assert r.duration_s is None or (math.isfinite(r.duration_s) and r.duration_s >= 0)


@SETTINGS
@given(mutated(CHECK_LOG))
def test_check_log_gives_runs(text):
    for run in parse_check_log(text):
        assert run.total is None or run.total >= 0
        assert run.failed_count is None or run.failed_count >= 0
        assert all(isinstance(t, str) and t for t in run.ran + run.not_run + run.failures)


@SETTINGS
@given(mutated(CHECK_TIME), st.text(max_size=20))
def test_check_time_always_gives_finite_watchdogs(text, test):
    times = parse_check_time(text)
    assert all(math.isfinite(v) and v >= 0 for v in times.values())
    for name in list(times) + [test]:
        seconds = watchdog_seconds(name, times)
        assert math.isfinite(seconds) and seconds >= 120
