"""The Ray executor with real VMs on a local three-node Ray cluster (a head and two worker nodes,
each worker with ``vm: 1`` and a kharness cache of its own that starts empty).

- a small baseline-vs-patched matrix (``MatrixRun(executor=RayExecutor)``) runs on the workers; \
the workers fetch the kernels and the image from the
  driver by content and hold them afterwards with the driver's sha256; the records in the store
  are those of a local run in shape (same spec JSON, record keys, measurement fields, run files);
- a worker node killed in the middle of a unit: Ray reruns the unit on the other node, and the
  store holds it once, with its measurement once.

Every Ray process and every QEMU is gone when the module ends (checked in the finalizer).
"""

import dataclasses
import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'kharness[ray]' "
                                        "(or .venv/bin/pip install -e '.[ray]')")

from ray.cluster_utils import Cluster

from harness.drivers.matrix import MatrixRun, Profile
from harness.executors import artifacts
from harness.executors.base import RunContext
from harness.executors.choose import executor_for
from harness.executors.local import LocalExecutor
from harness.results.metrics import gates
from harness.results.store import Store
from harness.run.plan import fio_cell, fio_spec
from harness.util import sha256_file
from tests.helpers import proc

pytestmark = pytest.mark.vm
CELL = {"fs": "ext4", "disk": "nvme", "pattern": "unwritten-convert", "engine": "libaio", "size": "16m", "runtime": 3}


def qemus_under(path: Path) -> list[int]:
    """PIDs of QEMU processes whose command line names something under ``path``."""
    return [pid for pid, _ in proc.qemus_under(path)]


def wait_gone(path: Path, timeout: float) -> list[int]:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        left = qemus_under(path)
        if not left:
            return []
        time.sleep(0.5)
    return qemus_under(path)


@pytest.fixture(scope="module")
def cluster(testbed, tmp_path_factory):
    """Head (no VM slot: the driver and the tracker live there) and two worker nodes with
    ``vm: 1``, 2 CPUs (one TCG guest of 2 vCPUs each) and per-node KHARNESS_CACHE."""
    base = tmp_path_factory.mktemp("ray-nodes")
    t0 = time.monotonic()
    c = Cluster(initialize_head=True, connect=False, head_node_args={
        "num_cpus": 0, "object_store_memory": 1 << 30, "env_vars": {"KHARNESS_CACHE": str(base / "head")},
        "_system_config": {"health_check_period_ms": 1000, "health_check_failure_threshold": 4,
                           "health_check_initial_delay_ms": 0}})
    nodes = {}
    try:
        for name in ("node-a", "node-b"):
            cache = base / name
            cache.mkdir()
            nodes[name] = (c.add_node(num_cpus=2, resources={"vm": 1}, object_store_memory=512 << 20,
                                      env_vars={"KHARNESS_CACHE": str(cache)}), cache)
        ray.init(address=c.address, namespace="kharness-test")
        print(f"ray cluster up in {time.monotonic() - t0:.1f}s: {ray.cluster_resources()}")
        yield c, nodes, base
    finally:
        ray.shutdown()
        c.shutdown()
        left = wait_gone(base, 30)
        for pid in left:           # ours (their argv names our node caches): never leave one behind
            os.kill(pid, signal.SIGKILL)
        assert not left, f"QEMU outlived the Ray cluster: {left}"


def node_of(nodes, node_id):
    return next(name for name, (n, _) in nodes.items() if n.node_id == node_id)


def shape(rec_json):
    """What must match between a local and a Ray record: keys, and which fields are set."""
    return {k: (v is not None) for k, v in rec_json.items() if k not in ("run_id", "run_dir", "started", "finished")}


def run_files(run_dir: Path) -> set[str]:
    return {str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if p.is_file()}


def test_matrix_on_ray_fetches_artifacts_and_matches_a_local_run(cluster, testbed, tmp_path, monkeypatch):
    c, nodes, _ = cluster
    for _, cache in nodes.values():
        assert not (cache / "kernels").exists() or not any((cache / "kernels").iterdir()), "worker caches start empty"
    t0 = time.monotonic()
    ex = executor_for(c.address, poll_s=1.0)
    assert ex.name == "ray"
    profile = Profile("ray-tiny", ("ext4",), ("nvme",), ("unwritten-convert",), ("libaio",), runs=1,
                      runtime=3, size="16m")
    with Store(tmp_path / "ray.sqlite") as store:
        m = MatrixRun("patched", "baseline", profile, tmp_path / "ray-runs", sink=store, executor=ex).run()
        recs = m.records
        assert [r.spec.role for r in recs] == ["base", "new"] and all(r.status == "done" for r in recs), \
            [r.failures for r in recs]
        rows = store.runs(group=m.group)
        assert sorted(r.run_id for r in rows) == sorted(r.run_id for r in recs)
        ms = store.measurements([r.run_id for r in recs])
        assert len(ms) == 2 and all(x.iops and x.iops > 0 for x in ms)
        # the gating metrics (IOPS, p99) for the one cell, the counted ones beside them (gates: false)
        gating = [v.metric for v in store.verdicts(m.group) if gates(v.metric)]
        assert sorted(gating) == ["IOPS", "p99 latency us"]
        ray_rows = {r.run_id: r for r in rows}
        ray_ms = {x.run_id: x for x in ms}
    print(f"ray matrix (2 units, artifacts fetched): {time.monotonic() - t0:.1f}s; units: "
          + "; ".join(f"{u['run_id']} on {node_of(nodes, u['node_id'])} kernel {u['artifacts']['kernel']} "
                      f"image {u['artifacts']['image']} fetch {u['fetch_seconds']:.1f}s" for u in ex.units))

    # each worker that ran a unit fetched that unit's kernel and the image, verified, into ITS cache
    for u, r in zip(sorted(ex.units, key=lambda u: u["run_id"]), sorted(recs, key=lambda r: r.run_id), strict=True):
        assert u["run_id"] == r.run_id and u["artifacts"]["kernel"] == "fetched"
        cache = nodes[node_of(nodes, u["node_id"])][1]
        mine, theirs = testbed.kernel(r.spec.kernel.name).dir, cache / "kernels" / r.spec.kernel.key
        for f in artifacts.KERNEL_FILES:
            assert sha256_file(theirs / f) == sha256_file(mine / f), f
        img = cache / "images" / f"{r.spec.image.recipe}-{r.spec.image.key}"
        assert sha256_file(img / "base.qcow2") == sha256_file(testbed.image.qcow2)
        assert (img / "id_ed25519").stat().st_mode & 0o777 == 0o600
        assert not (cache / "build").exists() and not (cache / "src").exists()    # nothing was built there
        meta = json.loads((Path(r.run_dir) / "metadata.json").read_text())
        assert meta["executor"]["host"] and meta["executor"]["attempt"] == 1

    # the same baseline unit, locally: the same record, in shape
    local_spec = recs[0].spec
    with Store(tmp_path / "local.sqlite") as store:
        (loc,) = LocalExecutor().execute([local_spec], RunContext(tmp_path / "local-runs", sink=store,
                                                                  group=m.group, front_end="pytest"))
        (lrow,) = store.runs()
        (lm,) = store.measurements([loc.run_id])
    rr = recs[0]
    assert loc.status == rr.status == "done"
    assert json.dumps(rr.spec.to_json(), sort_keys=True) == json.dumps(loc.spec.to_json(), sort_keys=True)
    assert shape(rr.to_json()) == shape(loc.to_json())
    assert [shape(dataclasses.asdict(x)) for x in rr.measurements] == [
        shape(dataclasses.asdict(x)) for x in loc.measurements]
    assert shape(dataclasses.asdict(ray_rows[rr.run_id])) == shape(dataclasses.asdict(lrow))
    assert shape(dataclasses.asdict(ray_ms[rr.run_id])) == shape(dataclasses.asdict(lm))
    assert Path(rr.run_dir).parent == tmp_path / "ray-runs" and Path(rr.run_dir).name == rr.run_id
    assert run_files(Path(rr.run_dir)) == run_files(Path(loc.run_dir))
    assert json.loads((Path(rr.run_dir) / "record.json").read_text()) == rr.to_json()


def test_a_checks_repeats_run_at_once_on_both_nodes(cluster, testbed, tmp_path):
    """`kharness bisect/check --repeat 2 --ray`: a step's repeats are parallel units, one per node."""
    from harness.drivers.checks import Checker, parse_check
    c, nodes, _ = cluster
    with Store(tmp_path / "check.sqlite") as store, executor_for(c.address, poll_s=1.0) as ex:
        assert ex.slots() == 2
        checker = Checker(testbed, parse_check("boot"), tmp_path / "runs", sink=store, group="check",
                          executor=ex)
        t0 = time.monotonic()
        verdict = checker.repeated("baseline", 2)
        took = time.monotonic() - t0
        assert verdict.outcome == "good" and verdict.reason.endswith("(2x)"), verdict
        assert len(verdict.records) == 2 and len(store.runs(group="check")) == 2
        where = {json.loads((Path(r.run_dir) / "metadata.json").read_text())["executor"]["node_id"]
                 for r in verdict.records}
        assert len(where) == 2, "the repeats ran on one node, one after the other"
        starts = sorted(r.started for r in verdict.records)
        print(f"2 repeats of a boot check on 2 nodes: {took:.1f}s; started {starts}")


def test_node_killed_mid_unit_reruns_elsewhere_once(cluster, testbed, tmp_path):
    c, nodes, base = cluster
    spec = fio_spec(testbed, "patched", [fio_cell(**CELL)], disk_size="2G", label="ray-kill", role="new")
    out: dict = {}
    lines: list[str] = []

    def drive():
        try:
            with Store(tmp_path / "kill.sqlite") as store:
                ctx = RunContext(tmp_path / "runs", sink=store, say=lines.append, group="kill")
                out["recs"] = executor_for(c.address, poll_s=1.0).execute([spec], ctx)
        except BaseException as e:   # noqa: BLE001 - reported by the main thread
            out["error"] = e

    t0 = time.monotonic()
    th = threading.Thread(target=drive, daemon=True)
    th.start()
    victim = None
    while victim is None and time.monotonic() - t0 < 300:
        for name, (_, cache) in nodes.items():
            if any((cache / "ray-runs").glob("*ray-kill*/console.log")):
                victim = name
        time.sleep(0.5)
    assert victim, f"the unit never started booting: {lines}"
    time.sleep(4)                                 # mid-boot: QEMU is running, nothing measured yet
    killed_at = time.monotonic()
    node, vcache = nodes[victim]
    c.remove_node(node, allow_graceful=False)     # SIGKILL: raylet, its workers, their QEMU
    th.join(timeout=600)
    assert not th.is_alive() and "error" not in out, (out, lines)
    print(f"node {victim} killed {killed_at - t0:.1f}s in; unit done {time.monotonic() - killed_at:.1f}s later")
    print("\n".join(lines))

    (rec,) = out["recs"]
    assert rec.status == "done" and len(rec.measurements) == 1 and rec.measurements[0].status == "ok"
    meta = json.loads((Path(rec.run_dir) / "metadata.json").read_text())["executor"]
    assert meta["attempt"] == 2 and node_of(nodes, meta["node_id"]) != victim
    assert any("was lost" in line for line in lines)
    with Store(tmp_path / "kill.sqlite") as store:
        (row,) = store.runs(group="kill")                     # recorded once
        assert row.run_id == rec.run_id and row.status == "done"
        assert len(store.measurements([rec.run_id])) == 1     # measured once
    # the lost attempt left its partial run directory on the dead node only, never recorded
    assert (vcache / "ray-runs" / rec.run_id / "console.log").exists()
    assert wait_gone(vcache, 60) == [], "the killed node's QEMU outlived it"
    assert not qemus_under(base)
