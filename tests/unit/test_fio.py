"""fio workloads: job-file rendering and JSON(+) parsing against real fio 3.33 output."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from harness.errors import HarnessError, WorkloadError
from harness.vocab import ENGINES, PATTERNS
from harness.workloads.fio import FioJob, fio_argv, job_name, parse_fio_json, parse_job_name, render_job

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "fio"
# What scripts/make-fio-fixtures ran: 2 clones x 32 MiB, bs 4k.
FIXTURE_NUMJOBS, FIXTURE_BS_KIB, FIXTURE_SIZE_KIB = 2, 4, 32 * 1024
CASES = [(p, e) for p in PATTERNS for e in ENGINES]


def sections(text: str) -> list[tuple[str, dict[str, str]]]:
    """A fio job file as [(section, {key: value})]; bare keys (stonewall) get ''."""
    out: list[tuple[str, dict[str, str]]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            out.append((line[1:-1], {}))
            continue
        key, _, value = line.partition("=")
        assert out, f"option before any section: {line!r}"
        assert key.strip() not in out[-1][1], f"duplicate option {key!r} in [{out[-1][0]}]"
        out[-1][1][key.strip()] = value.strip()
    return out


def render(pattern: str, engine: str, **kw) -> list[tuple[str, dict[str, str]]]:
    job = FioJob(pattern=pattern, directory="/mnt/test/fio", engine=engine, iodepth=32, numjobs=4,
                 bs="4k", size="1g", runtime=30, ramp_time=5, tag="r3", **kw)
    return sections(render_job(job))


@pytest.mark.parametrize("pattern,engine", CASES)
def test_render_common(pattern, engine):
    secs = render(pattern, engine)
    names = [name for name, _ in secs]
    assert names == ["global", f"prep.{pattern}", f"measure.{pattern}.{engine}"]
    glob, prep, meas = (opts for _, opts in secs)
    assert glob["direct"] == "1"
    assert glob["directory"] == "/mnt/test/fio"
    assert glob["filename_format"] == f"kh-{pattern}-r3.$jobnum.$filenum"
    assert glob["size"] == "1g" and glob["numjobs"] == "4"
    assert glob["group_reporting"] == "1"
    assert glob["create_serialize"] == "0"
    # The measured job: AIO engine, O_DSYNC, after the prep job, files removed at the end.
    assert meas["ioengine"] == engine and meas["iodepth"] == "32" and meas["bs"] == "4k"
    assert meas["sync"] == ("sync" if pattern == "randwrite-osync" else "dsync")  # O_SYNC or O_DSYNC
    assert "stonewall" in meas
    assert meas["runtime"] == "30" and meas["ramp_time"] == "5"
    assert meas["unlink"] == "1"
    assert "sync" not in glob and "sync" not in prep
    assert "direct" not in meas or meas["direct"] == "1"


def test_render_randwrite_overwrite():
    _, prep, meas = (o for _, o in render("randwrite-overwrite", "libaio"))
    assert prep["rw"] == "write" and prep["end_fsync"] == "1" and "size" not in prep
    assert "time_based" not in prep and "runtime" not in prep
    assert meas["rw"] == "randwrite" and meas["time_based"] == "1"
    assert meas["overwrite"] == "1"


def test_render_append_extend():
    _, prep, meas = (o for _, o in render("append-extend", "io_uring"))
    assert prep["ioengine"] == "filedelete"
    assert meas["rw"] == "write" and meas["fallocate"] == "none" and meas["file_append"] == "1"
    assert "time_based" not in meas  # one pass: wrapping around would overwrite


def test_render_unwritten_convert():
    _, prep, meas = (o for _, o in render("unwritten-convert", "libaio"))
    assert prep["ioengine"] == "filedelete"
    assert meas["fallocate"] == "native" and meas["overwrite"] == "0"
    assert meas["rw"] == "randwrite" and meas["norandommap"] == "0"
    assert "time_based" not in meas


@pytest.mark.skipif(shutil.which("fio") is None, reason="fio not installed")
@pytest.mark.parametrize("pattern,engine", CASES)
def test_rendered_jobs_parse_with_fio(tmp_path, pattern, engine):
    jobfile = tmp_path / "job.fio"
    jobfile.write_text(render_job(FioJob(pattern=pattern, directory=str(tmp_path), engine=engine)))
    proc = subprocess.run(["fio", "--parse-only", str(jobfile)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("kw,word", [({"pattern": "seqread"}, "seqread"), ({"engine": "posixaio"}, "posixaio"),
                                     ({"directory": "relative/dir"}, "relative/dir"),
                                     ({"directory": "/mnt/a b"}, "/mnt/a b"), ({"bs": "4x"}, "4x"),
                                     ({"iodepth": 0}, "iodepth"), ({"tag": "a/b"}, "a/b")])
def test_render_rejects_bad_values(kw, word):
    args = {"pattern": "append-extend", "directory": "/mnt/test", **kw}
    with pytest.raises(HarnessError, match=word):
        render_job(FioJob(**args))


def test_fio_argv():
    assert fio_argv("/root/job.fio", "/root/out.json") == [
        "fio", "--output-format=json+", "--output=/root/out.json", "/root/job.fio"]
    assert fio_argv("/root/job.fio") == ["fio", "--output-format=json+", "/root/job.fio"]


def test_job_names():
    assert job_name("append-extend", "io_uring") == "measure.append-extend.io_uring"
    assert parse_job_name("measure.append-extend.io_uring") == ("append-extend", "io_uring")
    assert parse_job_name("prep.append-extend") is None
    assert parse_job_name("measure.") is None


def test_all_fixtures_present():
    assert sorted(p.name for p in FIXTURES.glob("*.json")) == sorted(f"{p}-{e}.json" for p, e in CASES)


@pytest.mark.parametrize("pattern,engine", CASES)
def test_parse_fixture(pattern, engine):
    path = FIXTURES / f"{pattern}-{engine}.json"
    results = parse_fio_json(path.read_text(), str(path))
    assert len(results) == 1  # prep job dropped, clones aggregated by group_reporting
    r = results[0]
    assert (r.job, r.pattern, r.engine) == (f"measure.{pattern}.{engine}", pattern, engine)
    assert r.error == 0
    assert r.iops > 0 and r.bw_kib_s > 0 and r.total_ios > 0 and r.runtime_ms > 0
    assert 0 < r.clat_p50_us <= r.clat_p99_us <= r.clat_p999_us
    assert r.lat_mean_us > 0
    assert r.io_kbytes == r.total_ios * FIXTURE_BS_KIB
    assert r.bw_kib_s == pytest.approx(r.io_kbytes / (r.runtime_ms / 1000), rel=0.02)
    assert r.usr_cpu >= 0 and r.sys_cpu >= 0 and r.usr_cpu + r.sys_cpu > 0
    if pattern not in ("randwrite-overwrite", "randwrite-osync"):  # size-based: one pass at most
        assert r.io_kbytes <= FIXTURE_NUMJOBS * FIXTURE_SIZE_KIB


def test_parse_keeps_unconventional_jobs_and_reads_engine_from_options():
    doc = json.loads((FIXTURES / "append-extend-libaio.json").read_text())
    doc["jobs"][1]["jobname"] = "custom"
    (r,) = parse_fio_json(json.dumps(doc))
    assert (r.job, r.pattern, r.engine) == ("custom", "", "libaio")


def test_parse_noise_prefixed_json():
    text = (FIXTURES / "unwritten-convert-io_uring.json").read_text()
    noisy = ("fio: this platform does not support process shared mutexes, forcing use of threads.\n"
             "note: both iodepth >= 1 and synchronous I/O engine are selected, queue depth will be capped at 1\n"
             "{ half a line of debug output\n" + text + "\nfio: some trailing warning\n")
    assert parse_fio_json(noisy, "noisy") == parse_fio_json(text, "clean")


@pytest.mark.parametrize("text", ["", "fio: engine libaio not loadable\n", '{"jobs": [', "{ not json }",
                                  '{"fio version": "fio-3.33"}'])
def test_parse_malformed(text):
    with pytest.raises(WorkloadError) as info:
        parse_fio_json(text, "guest:/tmp/out.json")
    msg = str(info.value)
    assert "guest:/tmp/out.json" in msg
    assert text.strip()[:20] in msg


def test_parse_only_prep_jobs_is_an_error():
    doc = json.loads((FIXTURES / "randwrite-overwrite-libaio.json").read_text())
    doc["jobs"] = doc["jobs"][:1]
    with pytest.raises(WorkloadError, match="no measured job"):
        parse_fio_json(json.dumps(doc), "x.json")


def test_parse_job_without_write_section_names_the_job():
    doc = json.loads((FIXTURES / "randwrite-overwrite-libaio.json").read_text())
    del doc["jobs"][1]["write"]
    with pytest.raises(WorkloadError, match="measure.randwrite-overwrite.libaio"):
        parse_fio_json(json.dumps(doc), "x.json")


def _measured(doc: dict) -> dict:
    return next(j for j in doc["jobs"] if j["jobname"].startswith("measure."))


@pytest.mark.parametrize("field, value, problem", [
    ("iops", float("nan"), "not a finite"),
    ("iops", -5, "not a finite"),
    ("bw", float("inf"), "not a finite"),
    ("iops", 10**400, "not a usable number"),        # OverflowError in float() before
    ("runtime", float("inf"), "not a finite"),       # OverflowError in int() before
    ("total_ios", -1, "not a finite"),
    ("iops", [1], "want a number"),
    ("iops", True, "want a number"),
    ("iops", "fast", "not a usable number"),
])
def test_parse_rejects_absurd_figures_naming_job_and_field(field, value, problem):
    doc = json.loads((FIXTURES / "append-extend-libaio.json").read_text())
    _measured(doc)["write"][field] = value
    with pytest.raises(WorkloadError, match=problem) as info:
        parse_fio_json(json.dumps(doc), "x.json")
    assert "measure.append-extend.libaio" in str(info.value)
    assert f"write.{field}" in str(info.value) and "x.json" in str(info.value)


@pytest.mark.parametrize("where, value", [
    (("write",), []), (("job options",), [1]), (("write", "clat_ns"), "x"),
    (("write", "clat_ns", "percentile"), 3), (("write", "lat_ns"), None),
])
def test_parse_wrong_json_types_name_the_field(where, value):
    """A list where fio prints an object raised AttributeError before."""
    doc = json.loads((FIXTURES / "append-extend-libaio.json").read_text())
    node = _measured(doc)
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = value
    with pytest.raises(WorkloadError, match="measure.append-extend.libaio") as info:
        parse_fio_json(json.dumps(doc), "x.json")
    assert ".".join(where) in str(info.value)


def test_parse_nan_percentile_is_rejected():
    doc = json.loads((FIXTURES / "append-extend-libaio.json").read_text())
    _measured(doc)["write"]["clat_ns"]["percentile"]["99.000000"] = float("nan")
    with pytest.raises(WorkloadError, match=r"write\.clat_ns\.percentile\.99\.000000"):
        parse_fio_json(json.dumps(doc))


def test_parse_global_options_of_the_wrong_type():
    doc = json.loads((FIXTURES / "append-extend-libaio.json").read_text())
    doc["global options"] = ["libaio"]
    with pytest.raises(WorkloadError, match="global options"):
        parse_fio_json(json.dumps(doc))


def test_parse_deeply_nested_json_is_a_workload_error():
    """RecursionError before."""
    text = '{"jobs": ' + "[" * 100_000 + "]" * 100_000 + "}"
    with pytest.raises(WorkloadError, match="nested too deeply"):
        parse_fio_json(text, "deep.json")


def test_parse_huge_integer_literal_is_skipped_as_noise():
    """An integer of more than 4300 digits makes json raise a plain ValueError."""
    with pytest.raises(WorkloadError, match="no fio JSON"):
        parse_fio_json('{"jobs": [], "x": ' + "9" * 5000 + "}", "big.json")
