"""The executor seam: LocalExecutor is today's execute(); RayExecutor runs the same specs as Ray
tasks and gives back the same records, written to the sink by the driver as they arrive.

The Ray tests here boot no VM: a private single-node Ray runs a stand-in for run_boot (passed as
``boot=``) in worker processes whose cache (``KHARNESS_CACHE``) is not the driver's, so the
artifact transfer, the run directory round trip, follow-up boots after a hang, the deadline
(cancel, worker killed, failure recorded) and the refusal of an impossible unit are all real.
tests/vm/test_10_ray.py does the same with real VMs on a three-node cluster."""

import dataclasses
import io
import json
import os
import sys
import tarfile
import time

import pytest

from harness.errors import HarnessError
from harness.executors import local as executors
from harness.executors.base import Executor, RunContext
from harness.executors.choose import executor_for
from harness.executors.local import LocalExecutor
from harness.executors.ray_unit import pack_run_dir, record_from_json, resources_for, unit_deadline, unpack_run_dir
from harness.results.store import Store
from harness.run.spec import CommandWorkload
from tests.helpers.artifacts import make_kernel_entry
from tests.helpers.records import record
from tests.helpers.specs import fio_spec, xfs_spec


def test_no_address_is_the_local_executor():
    ex = executor_for(None)
    assert isinstance(ex, LocalExecutor) and isinstance(ex, Executor) and ex.name == "local" and ex.slots() == 1
    assert isinstance(executor_for(""), LocalExecutor)


def test_local_executor_is_execute(monkeypatch, tmp_path):
    seen = {}
    monkeypatch.setattr(executors, "execute", lambda specs, ctx: seen.update(specs=specs, ctx=ctx) or ["r"])
    sink = object()
    ctx = RunContext(tmp_path, sink=sink, group="g", front_end="pytest", max_boots_per_spec=1)  # type: ignore[arg-type]
    with LocalExecutor() as ex:
        assert ex.execute(["s"], ctx) == ["r"]
    assert seen["specs"] == ["s"] and seen["ctx"] is ctx and seen["ctx"].sink is sink
    assert ctx.but(max_boots_per_spec=3).max_boots_per_spec == 3 and ctx.max_boots_per_spec == 1


def test_ray_missing_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)          # import ray -> ImportError
    with pytest.raises(HarnessError, match=r"pip install 'kharness\[ray\]'"):
        executor_for("auto")


def test_record_json_round_trip():
    rec = record(fio_spec(), iops=(1000.0, 1100.0), status="hang")
    rec = dataclasses.replace(rec, remaining=("xfs/nvme/append-extend/io_uring",), command_status=None)
    again = record_from_json(json.loads(json.dumps(rec.to_json())))
    assert again == rec and again.to_json() == rec.to_json()
    with pytest.raises(HarnessError, match="unknown key"):
        record_from_json({**rec.to_json(), "from_the_future": 1})


def test_run_dir_round_trip_skips_disks_and_refuses_escapes(tmp_path):
    src = tmp_path / "w" / "run1"
    (src / "fio").mkdir(parents=True)
    (src / "console.log").write_text("boot\n")
    (src / "fio" / "r0.json").write_text("{}")
    (src / "scratch0-nvme.raw").write_bytes(b"\0" * 100)
    (src / "root-overlay.qcow2").write_bytes(b"q")
    dest = tmp_path / "d" / "run1"
    unpack_run_dir(pack_run_dir(src), dest)
    assert sorted(str(p.relative_to(dest)) for p in dest.rglob("*")) == ["console.log", "fio", "fio/r0.json"]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("../escape")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(HarnessError, match="refusing member"):
        unpack_run_dir(buf.getvalue(), tmp_path / "d2")
    assert not (tmp_path / "escape").exists()


def test_units_ask_for_a_vm_slot_and_have_a_deadline():
    spec = fio_spec()
    assert resources_for(spec) == {"vm": 1.0}
    assert resources_for(dataclasses.replace(spec, accel="kvm")) == {"vm": 1.0, "kvm": 1.0}
    # past run_boot's own deadlines: boot (240 s on TCG) + the fio hang deadline of each run
    assert unit_deadline(spec) > 240 + 3 * 60
    cmd = dataclasses.replace(spec, workload=CommandWorkload(("true",), timeout_s=600))
    assert 600 < unit_deadline(cmd) < 3600
    assert unit_deadline(xfs_spec()) > 2 * 1800


# -- with a private Ray -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def local_ray(tmp_path_factory):
    """One node, two VM slots; its workers' KHARNESS_CACHE is a cache of their own."""
    ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'kharness[ray]'")
    worker_cache = tmp_path_factory.mktemp("worker-cache")
    old = os.environ.get("KHARNESS_CACHE")
    os.environ["KHARNESS_CACHE"] = str(worker_cache)      # the raylet and its workers inherit this
    try:
        ray.init(num_cpus=4, resources={"vm": 2}, include_dashboard=False, log_to_driver=False,
                 object_store_memory=200 << 20, namespace="kharness-unit")
    finally:
        if old is None:
            os.environ.pop("KHARNESS_CACHE", None)
        else:
            os.environ["KHARNESS_CACHE"] = old
    yield worker_cache
    ray.shutdown()


@pytest.fixture
def driver_cache(tmp_path, monkeypatch):
    cache = tmp_path / "driver-cache"
    monkeypatch.setenv("KHARNESS_CACHE", str(cache))
    make_kernel_entry(cache, "f" * 24)
    img = cache / "images" / ("debian-bookworm-" + "e" * 20)
    img.mkdir(parents=True)
    (img / "base.qcow2").write_bytes(os.urandom(100_000))
    (img / "id_ed25519").write_text("KEY\n")
    (img / "metadata.json").write_text("{}\n")
    return cache


def fake_boots():
    """Stand-ins for run_boot, defined here so that Ray pickles them by value."""
    from harness.image.build import find_image
    from harness.kernel.build import find_kernel
    from harness.results.rundir import RunDir
    from harness.run.records import BootRecord, MeasurementRecord

    def measure(spec, run_dir, *, say, group, front_end, reproduces, tests_source):
        RunDir(run_dir, run_id=run_dir.name, label=spec.label, kernel=spec.kernel.name)
        spec.write(run_dir)
        (run_dir / "console.log").write_text(f"cache={os.environ['KHARNESS_CACHE']} pid={os.getpid()}\n")
        assert find_kernel(spec.kernel.key) is not None and find_image(spec.image.recipe, spec.image.key) is not None
        first, rest = spec.workload.cells[0], [c.id for c in spec.workload.cells[1:]]
        fs, disk, pattern, engine = first.id.split("/")
        m = MeasurementRecord(first.id, fs, disk, pattern, engine, spec.run_index, "ok", iops=1234.0)
        return BootRecord(run_id=run_dir.name, run_dir=str(run_dir), spec=spec, status="hang" if rest else "done",
                          started="t0", finished="t1", boot_seconds=7.0, measurements=(m,), remaining=tuple(rest),
                          group=group, front_end=front_end)

    def stuck(spec, run_dir, **kw):
        (run_dir / "pid").write_text(str(os.getpid()))
        time.sleep(600)

    return measure, stuck


class ListSink:
    def __init__(self):
        self.added = []

    def add_run(self, rec):
        self.added.append((time.monotonic(), rec))
        return rec["run_id"]


def test_ray_records_match_and_follow_ups_run(local_ray, driver_cache, tmp_path):
    from harness.executors.ray import RayExecutor
    measure, _ = fake_boots()
    two_cells = fio_spec(label="two")                         # the first "hangs": the rest is a fresh unit
    one_cell = dataclasses.replace(fio_spec(label="one"), workload=dataclasses.replace(
        fio_spec().workload, cells=fio_spec().workload.cells[:1]))
    sink, root = ListSink(), tmp_path / "runs"
    ex = RayExecutor("auto", boot=measure, poll_s=0.5)
    assert ex.name == "ray" and isinstance(ex, Executor) and ex.slots() == 2
    recs = ex.execute([two_cells, one_cell], RunContext(root, sink=sink, group="g", front_end="pytest"))
    assert [r.spec.label for r in recs] == ["two", "two", "one"]
    assert [len(r.spec.workload.cells) for r in recs] == [2, 1, 1]
    assert recs[1].spec.workload.cells[0].id == "xfs/nvme/append-extend/io_uring"
    # the driver wrote each record, as returned, once, as it arrived
    assert len(sink.added) == 3 and {rec["run_id"]: rec for _, rec in sink.added} == {
        r.run_id: r.to_json() for r in recs}
    for r in recs:
        d = root / r.run_id
        assert r.run_dir == str(d) and json.loads((d / "record.json").read_text()) == r.to_json()
        assert (d / "spec.json").exists() and f"cache={local_ray}" in (d / "console.log").read_text()
        meta = json.loads((d / "metadata.json").read_text())
        assert meta["executor"]["kind"] == "ray" and meta["executor"]["attempt"] == 1
        if os.geteuid() == 0:   # Ray nices workers to 15; the guest must not inherit that
            assert meta["executor"]["niceness"] == 0
        assert r.group == "g" and r.front_end == "pytest" and r.measurements[0].iops == 1234.0
    # the worker's cache got the entries by content; the driver's cache is untouched
    assert (local_ray / "kernels" / ("f" * 24) / "bzImage").read_bytes() == \
        (driver_cache / "kernels" / ("f" * 24) / "bzImage").read_bytes()
    assert sorted(u["artifacts"]["kernel"] for u in ex.units).count("fetched") == 1   # fetched once, then cached
    # into a real store: three runs, three measurements, nothing twice
    with Store(tmp_path / "s.sqlite") as store:
        for _, rec in sink.added:
            store.add_run(rec)
        assert len(store.runs(group="g")) == 3
        assert len(store.measurements([r.run_id for r in recs])) == 3


def test_ray_deadline_cancels_kills_and_records(local_ray, driver_cache, tmp_path):
    from harness.executors.ray import RayExecutor
    _, stuck = fake_boots()
    sink, root = ListSink(), tmp_path / "runs"
    ex = RayExecutor("auto", boot=stuck, deadline_s=4.0, poll_s=0.5)
    t0 = time.monotonic()
    (rec,) = ex.execute([fio_spec(label="stuck")], RunContext(root, sink=sink))
    assert time.monotonic() - t0 < 60
    assert rec.status == "error" and "past its deadline of 4s; cancelled" in rec.failures[0]
    assert set(rec.remaining) == {c.id for c in fio_spec().workload.cells}
    assert [r["run_id"] for _, r in sink.added] == [rec.run_id]
    d = root / rec.run_id
    assert json.loads((d / "record.json").read_text()) == rec.to_json() and (d / "spec.json").exists()
    assert json.loads((d / "metadata.json").read_text())["status"] == "error"
    pid = int((local_ray / "ray-runs" / rec.run_id / "pid").read_text())
    for _ in range(100):           # ray.cancel(force=True) killed the worker process
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        pytest.fail(f"worker {pid} survived the cancel")


def test_ray_refuses_a_unit_no_node_can_take(local_ray, driver_cache, tmp_path):
    from harness.executors.ray import RayExecutor
    ex = RayExecutor("auto")
    with pytest.raises(HarnessError, match=r"offers \{'vm': 1.0, 'kvm': 1.0, 'CPU': 2\}.*--resources"):
        ex.execute([dataclasses.replace(fio_spec(), accel="kvm")], RunContext(tmp_path))
    with pytest.raises(HarnessError, match="not in the driver's cache"):
        ex.execute([dataclasses.replace(fio_spec(), image=dataclasses.replace(fio_spec().image, key="j" * 20))],
                   RunContext(tmp_path))
