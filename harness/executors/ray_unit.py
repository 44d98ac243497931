"""What runs on a Ray worker for one unit, and the pure helpers both sides share.

:func:`run_unit` is the Ray task body (the driver is :mod:`harness.executors.ray`): it reports
to the driver's :class:`Tracker`, fetches and verifies the spec's artifacts into the worker's
cache, runs :func:`harness.run.boot.run_boot`, and returns the record's JSON and the run directory
packed as a tar.gz (:func:`pack_run_dir`; the driver unpacks it with :func:`unpack_run_dir`).
:func:`resources_for` and :func:`unit_deadline` say what a unit asks of a node and how long it
may take.
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import json
import os
import shutil
import socket
import tarfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import HarnessError
from ..evidence.events import Event
from ..paths import cache_root
from ..run.boot import boot_timeout, run_boot
from ..run.records import BootRecord, EvidenceRef, MeasurementRecord, XfstestRecord
from ..run.spec import RunSpec, harness_spec
from ..run.spec_read import spec_from_json
from ..util import write_json
from . import artifacts

INSTALL_HINT = "pip install 'kharness[ray]'"
MAX_RUN_DIR_BYTES = 1 << 30
MAX_RUN_DIR_MEMBERS = 100_000
_SKIP_FILES = ("root-overlay.qcow2",)     # throwaway disks, if a killed VM left them behind


def import_ray() -> Any:
    """The ray module, or HarnessError saying how to install it."""
    try:
        import ray  # optional dependency: ray (the kharness[ray] extra)
    except ImportError as e:
        raise HarnessError(f"the Ray executor needs Ray, which is not installed here ({e}); install the "
                           f"extra: {INSTALL_HINT} (in a checkout: .venv/bin/pip install -e '.[ray]')") from None
    return ray


# -- what a unit needs and how long it may take ---------------------------------------------------
def resources_for(spec: RunSpec) -> dict[str, float]:
    """The custom resources a unit asks for: one VM slot, and a KVM host for a KVM spec."""
    return {"vm": 1.0, **({"kvm": 1.0} if spec.accel == "kvm" else {})}


def unit_deadline(spec: RunSpec, transfer_s: float = 300.0) -> float:
    """Seconds a unit may run before the driver cancels it: well past run_boot's own deadlines
    (boot timeout, fio hang deadline, xfstests watchdogs), so those handle a hang with evidence
    first, plus time to fetch artifacts. It catches what they cannot: a stuck worker."""
    return (boot_timeout(spec.accel) + 180.0 + transfer_s + spec.workload.busy_seconds()) * 1.5


# -- records and run directories across hosts ----------------------------------------------------
def record_from_json(data: dict[str, Any]) -> BootRecord:
    """The BootRecord whose :meth:`BootRecord.to_json` is ``data`` (strict: unknown keys refused)."""
    data = dict(data)
    data.pop("label", None), data.pop("role", None)          # derived from the spec
    names = {f.name for f in dataclasses.fields(BootRecord)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise HarnessError(f"record {data.get('run_id')}: unknown key(s) {', '.join(unknown)} "
                           "(a worker running another kharness version?)")
    data["spec"] = spec_from_json(data["spec"], f"record {data.get('run_id')}")
    for key, cls in (("measurements", MeasurementRecord), ("xfstests", XfstestRecord), ("events", Event),
                     ("evidence", EvidenceRef)):
        data[key] = tuple(cls(**x) for x in data.get(key, ()))
    for key in ("failures", "remaining", "sysrq_summary"):
        data[key] = tuple(data.get(key, ()))
    return BootRecord(**data)


def pack_run_dir(run_dir: Path, limit: int = MAX_RUN_DIR_BYTES) -> bytes:
    """The run directory as tar.gz bytes (regular files and directories; scratch disks skipped)."""
    buf = io.BytesIO()
    total = 0
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=6) as tar:
        for p in sorted(run_dir.rglob("*")):
            rel = p.relative_to(run_dir)
            if p.is_symlink() or p.name in _SKIP_FILES or p.suffix == ".raw":
                continue
            if p.is_dir():
                tar.add(p, arcname=str(rel), recursive=False)
            elif p.is_file():
                total += p.stat().st_size
                if total > limit:
                    raise HarnessError(f"{run_dir}: run directory larger than {limit >> 20} MiB")
                tar.add(p, arcname=str(rel), recursive=False)
    return buf.getvalue()


def unpack_run_dir(blob: bytes, dest: Path, *, max_bytes: int = MAX_RUN_DIR_BYTES,
                   max_members: int = MAX_RUN_DIR_MEMBERS) -> None:
    """Unpack :func:`pack_run_dir` bytes into ``dest``: plain files and directories inside it
    only (no links, devices, absolute or '..' names), at most ``max_bytes`` of content in
    ``max_members`` members (the worker's own limit); modes masked to 0o755. Anything else,
    or a tarball that does not read, raises HarnessError; members are checked as they stream,
    so a huge or endless archive is refused without being read to its end."""
    dest.mkdir(parents=True, exist_ok=True)
    real = dest.resolve()
    total = count = 0
    try:
        with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
            for m in tar:
                count += 1
                total += m.size if m.isfile() else 0
                if count > max_members:
                    raise HarnessError(f"run directory from a worker: more than {max_members} members")
                if total > max_bytes:
                    raise HarnessError(f"run directory from a worker: larger than {max_bytes} bytes")
                target = (dest / m.name).resolve()
                if m.name.startswith("/") or ".." in Path(m.name).parts or not target.is_relative_to(real) \
                        or target == real or not (m.isfile() or m.isdir()):
                    raise HarnessError(f"run directory from a worker: refusing member {m.name!r}")
                if m.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                src = tar.extractfile(m)
                assert src is not None
                with open(target, "wb") as out:
                    shutil.copyfileobj(src, out)
                os.chmod(target, m.mode & 0o755)
                os.utime(target, (m.mtime, m.mtime))
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise HarnessError(f"run directory from a worker: unreadable tarball ({e})") from None


# -- the Ray side: tracker actor and the task -------------------------------------------------------
class Tracker:
    """Lives next to the driver (a Ray actor): when each unit's current attempt started, where."""

    def __init__(self) -> None:
        self.starts: dict[str, dict[str, Any]] = {}

    def started(self, unit: str, node: str, host: str, pid: int) -> int:
        prev = self.starts.get(unit)
        attempt = (prev["attempt"] if prev else 0) + 1
        self.starts[unit] = {"t0": time.monotonic(), "node": node, "host": host, "pid": pid, "attempt": attempt}
        return attempt

    def ages(self) -> dict[str, dict[str, Any]]:
        now = time.monotonic()
        return {u: {**s, "age": now - s["t0"]} for u, s in self.starts.items()}

    def forget(self, unit: str) -> None:
        self.starts.pop(unit, None)


def _unnice() -> int:
    """Undo Ray's worker niceness (15 by default) for the guest: QEMU inherits it, and a niced guest
    loses the CPU to anything else on the host, which shows up as slower boots and lower IOPS.
    Lowering niceness needs root or RLIMIT_NICE; otherwise start the node with
    ``RAY_worker_niceness=0 ray start ...``. Returns the niceness the boot runs at."""
    try:
        if os.getpriority(os.PRIO_PROCESS, 0) > 0:
            os.setpriority(os.PRIO_PROCESS, 0, 0)
    except OSError:
        pass
    return os.getpriority(os.PRIO_PROCESS, 0)


def run_unit(payload: dict[str, Any], refs: dict[str, Any], tracker: Any,
             boot: Callable[..., BootRecord] | None = None) -> dict[str, Any]:
    """The Ray task: one boot's work on whichever host Ray chose. Returns plain data."""
    import ray  # optional dependency: ray (this runs on a Ray worker, where it is installed)
    run_id = payload["run_id"]
    node, host = ray.get_runtime_context().get_node_id(), socket.gethostname()
    try:
        attempt = ray.get(tracker.started.remote(run_id, node, host, os.getpid()), timeout=60)
    except Exception as e:   # noqa: BLE001 - the boot matters more than the driver's clock
        attempt = None
        print(f"[{run_id} @{host}] cannot reach the driver's tracker ({type(e).__name__}): the driver "
              "counts this unit's deadline from when it last saw it", flush=True)
    say = (lambda m: print(f"[{run_id} @{host}] {m}", flush=True)) if payload.get("verbose", True) else (lambda m: None)
    spec = spec_from_json(payload["spec"], f"ray unit {run_id}")
    niceness = _unnice()
    t0 = time.monotonic()
    got: dict[str, str] = {}
    for kind in ("kernel", "image"):
        manifest, chunk_refs = refs[kind]
        _, fetched = artifacts.install(manifest, chunk_refs, ray.get, say=say)
        got[kind] = "fetched" if fetched else "cached"
    fetch_s = time.monotonic() - t0
    root = Path(payload["worker_root"]) if payload.get("worker_root") else cache_root() / "ray-runs"
    run_dir = root / run_id
    if run_dir.exists():   # an earlier attempt on this host died: keep its files, never reuse them
        run_dir.rename(run_dir.with_name(f"{run_id}.lost-{int(time.time())}"))
    run_dir.mkdir(parents=True)
    ts = payload.get("tests_source")
    rec = (boot or run_boot)(spec, run_dir, say=say, group=payload.get("group"),
                             front_end=payload.get("front_end", "cli"), reproduces=payload.get("reproduces"),
                             tests_source=Path(ts) if ts else None)
    info = {"kind": "ray", "node_id": node, "host": host, "pid": os.getpid(), "attempt": attempt,
            "artifacts": got, "fetch_seconds": round(fetch_s, 3), "worker_run_dir": str(run_dir), "niceness": niceness,
            "worker_kharness": {"version": __version__, "commit": harness_spec().commit}}
    meta_path = run_dir / "metadata.json"
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        meta["executor"] = info
        write_json(meta_path, meta)
    blob = pack_run_dir(run_dir)
    if not payload.get("keep_worker_runs"):
        shutil.rmtree(run_dir, ignore_errors=True)
    return {"record": rec.to_json(), "run_dir_tgz": blob, **info}
