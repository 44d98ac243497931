"""fio workloads: O_DIRECT|O_DSYNC AIO write patterns, job-file rendering and JSON(+) parsing.

Four patterns, each for ioengine libaio and io_uring, all ``direct=1`` and ``sync=dsync`` (O_DSYNC)
but the last (O_SYNC):

* ``randwrite-overwrite``: random overwrites of a fully written file (a ``prep.*`` job writes the
  whole file and fsyncs it, the measured job follows after ``stonewall``; time-based).
* ``append-extend``: sequential writes at EOF (``file_append=1``) of a fresh, unpreallocated
  (``fallocate=none``) file, so each write extends i_size at completion (size-based: one pass,
  ``runtime`` is a cap).
* ``unwritten-convert``: random writes, each block once, into a freshly ``fallocate()``d
  (``fallocate=native``, never written) file, so each write converts an unwritten extent at
  completion (size-based: one pass, ``runtime`` is a cap).
* ``randwrite-osync``: ``randwrite-overwrite`` with O_SYNC (``sync=sync``) instead of O_DSYNC:
  the FUA shortcut is off (``IOCB_SYNC``, fs/iomap/direct-io.c), and each completion's
  ``generic_write_sync()`` waits for a journal commit whenever the mtime changed since the last
  one; the only pattern whose completions commit while overwriting written blocks.

For ``append-extend`` and ``unwritten-convert`` a ``prep.*`` job with ``ioengine=filedelete``
first removes any file left by an earlier run. ``create_serialize=0`` makes each job set its files up \
when it starts (after the
``stonewall``) rather than fio laying out every job's files before the first job runs.

Job-name convention: the measured job is ``measure.<pattern>.<engine>`` and set-up jobs are
``prep.<pattern>``. Only the measured job has hooks (``exec_prerun``/``exec_postrun``, see
:func:`hooks`): the counters script around it and the sysrq sampler's marker.
``group_reporting=1`` is set, so fio reports one entry per job section with its ``numjobs``
clones aggregated (IOPS and bandwidth summed, latency percentiles merged).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

import jinja2

from ..errors import HarnessError, WorkloadError
from ..vocab import FIO_TEMPLATES, check_engine, check_pattern

MEASURE_PREFIX = "measure."
PREP_PREFIX = "prep."
CALIB_PREFIX = "calib."
CALIBRATION_JOB = "calib.tmpfs"

_SIZE = re.compile(r"^[1-9][0-9]*[kmgt]?$", re.IGNORECASE)
# What one job may ask of a host (docs/threat-model.md: a spec from elsewhere names these too):
# integer parameters' (low, high), and the largest bs and per-clone size in bytes.
LIMITS = {"iodepth": (1, 4096), "numjobs": (1, 64), "runtime": (1, 3600), "ramp_time": (0, 3600)}
MAX_BYTES = {"bs": 64 << 20, "size": 64 << 30}
_TAG = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_MARKER = re.compile(r"^/[A-Za-z0-9_./-]{1,200}$")


@dataclass(frozen=True)
class FioJob:
    """One fio job file: a pattern and its parameters.

    ``size`` is the file size per clone (and, for the size-based patterns, the amount written);
    ``bs``/``size`` are fio sizes such as ``"4k"``/``"256m"`` (base 1024) or byte counts.
    ``runtime``/``ramp_time`` are seconds. ``tag`` goes into the file names (``kh-<pattern>-<tag>.N.0``
    in ``directory``); use a fresh directory or a distinct tag per run so no stale file is reused
    (measured jobs unlink their files at the end). ``marker``, if set, is a guest path the measured
    job touches as it starts (fio ``exec_prerun``): a sampler waits for it before capturing.
    ``counters``, if set, is the guest path of a :func:`harness.workloads.counters.guest_script`
    the measured job runs as it starts (``before``) and after its last I/O (``after``).
    ``calibrate``: a calibration job (``calib.tmpfs``, :func:`calibration_iops`) runs just
    before the measured job: the guest's own speed at that moment, from work no storage patch
    changes (docs/statistics.md, "Calibrated boots").
    """

    pattern: str
    directory: str
    engine: str = "libaio"
    iodepth: int = 16
    numjobs: int = 1
    bs: str | int = "4k"
    size: str | int = "256m"
    runtime: int = 30
    ramp_time: int = 0
    tag: str = "0"
    marker: str = ""
    counters: str = ""
    calibrate: bool = False

    @property
    def name(self) -> str:
        """The measured job's name, ``measure.<pattern>.<engine>``."""
        return job_name(self.pattern, self.engine)


@dataclass
class FioResult:
    """Write statistics of one measured fio job (clones aggregated by group_reporting).

    Latencies are microseconds; percentiles are of completion latency (clat) and None when fio
    reported none (e.g. no I/O completed). ``error`` is fio's errno for the job (0 = fine).
    """

    job: str
    pattern: str
    engine: str
    iops: float
    bw_kib_s: float
    clat_p50_us: float | None
    clat_p99_us: float | None
    clat_p999_us: float | None
    lat_mean_us: float
    runtime_ms: int
    total_ios: int
    io_kbytes: int
    error: int
    usr_cpu: float
    sys_cpu: float


def job_name(pattern: str, engine: str) -> str:
    """The measured job's name for a pattern and engine."""
    return f"{MEASURE_PREFIX}{pattern}.{engine}"


def parse_job_name(name: str) -> tuple[str, str] | None:
    """(pattern, engine) from a ``measure.<pattern>.<engine>`` job name, else None."""
    if not name.startswith(MEASURE_PREFIX):
        return None
    pattern, sep, engine = name[len(MEASURE_PREFIX):].rpartition(".")
    return (pattern, engine) if sep and pattern and engine else None


def size_bytes(value: str | int) -> int:
    """Bytes in a fio size (``4k``, ``64m``: base 1024, as fio reads ``bs``/``size``)."""
    text = str(value).lower()
    shift = {"k": 10, "m": 20, "g": 30, "t": 40}.get(text[-1:], 0)
    return int(text[:-1] if shift else text) << shift


def validate_job(job: FioJob) -> None:
    """Raise HarnessError naming the first invalid field of ``job``."""
    check_pattern(job.pattern)
    check_engine(job.engine)
    if not job.directory.startswith("/") or any(c.isspace() or c in ":;#" for c in job.directory):
        raise HarnessError(f"fio directory {job.directory!r}: want an absolute path without "
                           "whitespace, ':', ';' or '#'")
    for key in ("bs", "size"):
        value = getattr(job, key)
        if not _SIZE.match(str(value)) or isinstance(value, bool):
            raise HarnessError(f"fio {key} {value!r}: want a positive size like 4k, 64m, 1g or bytes")
        if size_bytes(value) > MAX_BYTES[key]:
            raise HarnessError(f"fio {key} {value!r}: want at most {MAX_BYTES[key] >> 20}m")
    for key, (low, high) in LIMITS.items():
        value = getattr(job, key)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise HarnessError(f"fio {key} {value!r}: want an integer from {low} to {high}")
    for key in ("marker", "counters"):
        value = getattr(job, key)
        if value and (not _MARKER.match(value) or ".." in value):
            raise HarnessError(f"fio {key} {value!r}: want an absolute path of [A-Za-z0-9_./-]")
    if not _TAG.match(job.tag):
        raise HarnessError(f"fio tag {job.tag!r}: want 1-64 characters of [A-Za-z0-9_-]")


def _environment() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(FIO_TEMPLATES)),
                              undefined=jinja2.StrictUndefined, keep_trailing_newline=True, trim_blocks=True,
                              autoescape=False)


def hooks(job: FioJob) -> tuple[str, str]:
    """The measured job's ``exec_prerun`` and ``exec_postrun`` commands ('' for none): the
    counters script's ``before``/``after`` steps, and the sampler's marker touched as it starts.
    fio runs each with system() and keeps its output in ``<job>.prerun.txt``/``.postrun.txt``."""
    if job.counters:
        return f"sh {job.counters} before {job.marker}".rstrip(), f"sh {job.counters} after"
    return (f"touch {job.marker}" if job.marker else ""), ""


def render_job(job: FioJob) -> str:
    """The fio job file text for ``job``; HarnessError if the pattern, engine or a value is invalid."""
    validate_job(job)
    template = _environment().get_template(f"{job.pattern}.fio.j2")
    prerun, postrun = hooks(job)
    return template.render(name=job.name, pattern=job.pattern, engine=job.engine,
                           directory=job.directory, iodepth=job.iodepth, numjobs=job.numjobs,
                           bs=str(job.bs).lower(), size=str(job.size).lower(), runtime=job.runtime,
                           ramp_time=job.ramp_time, tag=job.tag, prerun=prerun, postrun=postrun,
                           calibrate=job.calibrate, calibration_job=CALIBRATION_JOB)


def fio_argv(jobfile_path_in_guest: str, output_path: str | None = None) -> list[str]:
    """The fio command line writing JSON+ output to ``output_path``, or to stdout if None."""
    out = [f"--output={output_path}"] if output_path else []
    return ["fio", "--output-format=json+", *out, jobfile_path_in_guest]


MAX_FIO_OUTPUT_CHARS = 64 << 20   # fio's JSON+ of a job file is well under a megabyte


def _load_document(text: str, source: str) -> dict[str, Any]:
    """The first JSON object holding ``jobs`` in ``text``, skipping noise before (and after) it."""
    decoder = json.JSONDecoder()
    for match in re.finditer(r"^\s*\{", text, re.MULTILINE):
        try:
            doc, _ = decoder.raw_decode(text, match.end() - 1)
        except ValueError:  # JSONDecodeError, or an integer of more than 4300 digits
            continue
        except RecursionError:
            raise WorkloadError(f"{source or 'fio output'}: JSON nested too deeply",
                                text.strip()[:400]) from None
        if isinstance(doc, dict) and isinstance(doc.get("jobs"), list):
            return doc
    head = text.strip()[:400] or "(empty)"
    raise WorkloadError(f"no fio JSON output in {source or 'fio output'}", head)


class _Job:
    """Typed access to one job of fio's JSON; errors name the source, the job and the field."""

    def __init__(self, source: str, name: str):
        self.where = f"{source or 'fio output'}: job {name!r}"

    def fail(self, field: str, problem: str) -> WorkloadError:
        return WorkloadError(f"{self.where}: {field}: {problem}")

    def mapping(self, value: Any, field: str) -> dict[str, Any]:
        """A JSON object, {} when absent."""
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.fail(field, f"want a JSON object, got {type(value).__name__}")
        return value

    def number(self, value: Any, field: str) -> float:
        """A finite, non-negative figure (fio prints counts, rates and times, never below 0)."""
        if value is None:
            raise self.fail(field, "missing")
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise self.fail(field, f"want a number, got {type(value).__name__}")
        try:
            figure = float(value)
        except (ValueError, OverflowError):
            raise self.fail(field, f"not a usable number: {str(value)[:40]!r}") from None
        if not math.isfinite(figure) or figure < 0:
            raise self.fail(field, f"{figure} is not a finite, non-negative figure")
        return figure

    def integer(self, value: Any, field: str) -> int:
        return int(self.number(value, field))

    def optional(self, value: Any, field: str) -> float | None:
        return None if value is None else self.number(value, field)


def _result(job: dict[str, Any], glob: dict[str, Any], source: str) -> FioResult:
    name = str(job.get("jobname", ""))
    parsed = parse_job_name(name)
    j = _Job(source, name)
    options = j.mapping(job.get("job options"), "job options")
    engine = options.get("ioengine") or glob.get("ioengine") or (parsed[1] if parsed else "")
    if "write" not in job:
        raise j.fail("write", "missing (unexpected JSON)")
    write = j.mapping(job["write"], "write")
    clat = j.mapping(write.get("clat_ns"), "write.clat_ns")
    percentiles = j.mapping(clat.get("percentile"), "write.clat_ns.percentile")
    lat = j.mapping(write.get("lat_ns"), "write.lat_ns")

    def pct(key: str) -> float | None:
        value = j.optional(percentiles.get(key), f"write.clat_ns.percentile.{key}")
        return None if value is None else value / 1000.0

    return FioResult(
        job=name, pattern=parsed[0] if parsed else "", engine=str(engine),
        iops=j.number(write.get("iops"), "write.iops"),
        bw_kib_s=j.number(write.get("bw"), "write.bw"),
        clat_p50_us=pct("50.000000"), clat_p99_us=pct("99.000000"), clat_p999_us=pct("99.900000"),
        lat_mean_us=j.number(lat.get("mean"), "write.lat_ns.mean") / 1000.0,
        runtime_ms=j.integer(write.get("runtime"), "write.runtime"),
        total_ios=j.integer(write.get("total_ios"), "write.total_ios"),
        io_kbytes=j.integer(write.get("io_kbytes"), "write.io_kbytes"),
        error=j.integer(job.get("error", 0), "error"),
        usr_cpu=j.number(job.get("usr_cpu", 0.0), "usr_cpu"),
        sys_cpu=j.number(job.get("sys_cpu", 0.0), "sys_cpu"))


def parse_jobs(text: str, source: str = "") -> list[FioResult]:
    """Write results of every job but the ``prep.*`` ones in fio ``--output-format=json``/``json+``
    output: the measured jobs and the calibration job (:func:`parse_fio_json` and
    :func:`calibration_iops` pick them apart). Errors as :func:`parse_fio_json`."""
    if len(text) > MAX_FIO_OUTPUT_CHARS:
        raise WorkloadError(f"{source or 'fio output'}: {len(text)} characters, more than the "
                            f"{MAX_FIO_OUTPUT_CHARS} kharness parses; refused")
    doc = _load_document(text, source)
    glob = _Job(source, "(global options)").mapping(doc.get("global options"), "global options")
    return [_result(job, glob, source) for job in doc["jobs"]
            if isinstance(job, dict) and not str(job.get("jobname", "")).startswith(PREP_PREFIX)]


def measured_jobs(jobs: list[FioResult], text: str = "", source: str = "") -> list[FioResult]:
    """The measured jobs of :func:`parse_jobs`' results; WorkloadError naming ``source`` (and
    showing the start of ``text``) when there is none."""
    results = [r for r in jobs if not r.job.startswith(CALIB_PREFIX)]
    if not results:
        raise WorkloadError(f"no measured job in fio output {source or ''}".rstrip(), text.strip()[:400])
    return results


def calibration_iops(jobs: list[FioResult]) -> float | None:
    """The calibration job's write IOPS among :func:`parse_jobs`' results (see :class:`FioJob`
    ``calibrate``), None when the job file had none or it did no I/O."""
    for r in jobs:
        if r.job == CALIBRATION_JOB:
            return r.iops if r.iops > 0 and not r.error else None
    return None


def parse_fio_json(text: str, source: str = "") -> list[FioResult]:
    """Write results of every measured job (neither ``prep.*`` nor the calibration job) in fio
    ``--output-format=json``/``json+`` output.

    Text before the JSON document (fio warnings and the like) is skipped. WorkloadError naming
    ``source`` (and showing the start of the text) when there is no usable JSON or no job, and
    naming the job and the field when a figure is missing, of the wrong type, negative or not
    finite (NaN, Infinity, or too large for a float).
    """
    return measured_jobs(parse_jobs(text, source), text, source)
