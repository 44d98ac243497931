"""RayExecutor: a plan's boots as Ray tasks on many hosts; records land in the driver's store.

The unit of work is one boot's RunSpec. The driver (the process that planned the work and built
the kernels with its Testbed) submits one Ray task per unit; each task asks for the custom
resource ``vm: 1`` (plus ``kvm: 1`` for a KVM spec) and ``num_cpus`` = the guest's CPUs, so a
host runs as many VMs at once as its ``vm`` resource says. On the worker the task

1. tells the driver's tracker actor it started (the driver's deadline clock starts there, and
   restarts when Ray retries the unit on another node);
2. makes the spec's kernel and image present in ITS cache (``$KHARNESS_CACHE`` of the worker
   node): missing entries arrive by content from the driver's ``ray.put`` chunks and are
   verified by sha256 before they are renamed into place (:mod:`harness.executors.artifacts`); a
   worker never builds;
3. runs :func:`harness.run.boot.run_boot` in a run directory named by the run id the driver
   reserved (its own deadlines: boot timeout, fio/xfstests hang handling, still apply);
4. returns the record's JSON form and the run directory as a tar.gz.

The driver unpacks each run directory into ``root/<run id>`` (exactly where the local executor
would have put it), rebuilds the BootRecord from its JSON, and writes it to the sink as it
arrives; workers never touch the store. Failures:

- a node lost mid-unit (host down, raylet killed): Ray reruns the task elsewhere, up to
  ``max_retries`` times; only a returned record is recorded, and a retry reuses the reserved run
  id, so nothing is recorded twice (the store's upserts would not duplicate either);
- a unit past its deadline (counted from the start of its current attempt; :func:`unit_deadline`
  or ``deadline_s``) is cancelled with ``ray.cancel(force=True)``, which kills the worker
  process and its QEMU (started with PR_SET_PDEATHSIG), and recorded as an ``error`` run with
  the reason; so is a unit whose retries ran out or whose task raised;
- a boot cut short by a hang comes back with ``remaining`` work: the driver submits a fresh unit
  for it, as the local executor does.

What runs on the worker, and the helpers both sides share, are in :mod:`harness.executors.ray_unit`.
Ray is imported lazily: without it, constructing a RayExecutor raises HarnessError saying
``pip install 'kharness[ray]'``. See docs/ray.md for clusters, caches and ``ray job submit``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import HarnessError
from ..results.rundir import RunDir, new_run_dir
from ..run.records import BootRecord
from ..run.spec import RunSpec
from ..util import write_json
from ..vocab import Say
from . import artifacts
from .base import RunContext
from .local import lost_to_host, progressed
from .ray_unit import Tracker, import_ray, record_from_json, resources_for, run_unit, unit_deadline, unpack_run_dir


def _where(info: dict[str, Any]) -> str:
    """host and short node id, e.g. ``vm/5322961f`` (several nodes may share a host name)."""
    node = info.get("node") or info.get("node_id") or ""
    return f"{info.get('host') or '?'}/{node[:8]}" if node else f"{info.get('host') or '?'}"


# -- the driver ------------------------------------------------------------------------------------
@dataclass
class _Unit:
    index: int                    # which planned spec this boot belongs to
    spec: RunSpec
    run_dir: Path                 # reserved on the driver; its name is the run id
    boots: int                    # boots of this planned spec so far, this one included
    deadline: float
    ref: Any = None
    submitted: float = field(default_factory=time.monotonic)
    started: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    seen: dict[str, Any] = field(default_factory=dict)   # the tracker's view of its current attempt
    attempt_t0: float | None = None   # when the current attempt started, on the driver's clock

    @property
    def run_id(self) -> str:
        return self.run_dir.name


class RayExecutor:
    """Runs specs as Ray tasks (see the module docstring). ``address``: ``auto`` (the cluster this
    host belongs to, or the one a ``ray job submit`` job runs in), ``HOST:6379``, ``ray://HOST:10001``,
    or ``local`` (start a private single-node Ray here). An already connected Ray session is used as
    it is. ``deadline_s`` overrides :func:`unit_deadline` (a number, or a function of the spec)."""

    name = "ray"

    def __init__(self, address: str = "auto", *, max_retries: int = 3,
                 deadline_s: float | Callable[[RunSpec], float] | None = None, poll_s: float = 2.0,
                 worker_root: str | None = None, keep_worker_runs: bool = False,
                 chunk_size: int = artifacts.CHUNK, unschedulable_grace_s: float = 600.0,
                 verbose_workers: bool = True, boot: Callable[..., BootRecord] | None = None):
        self.ray = ray = import_ray()
        self.address, self.max_retries, self.deadline_s, self.poll_s = address, max_retries, deadline_s, poll_s
        self.worker_root, self.keep_worker_runs, self.chunk_size = worker_root, keep_worker_runs, chunk_size
        self.unschedulable_grace_s, self.verbose_workers, self._boot = unschedulable_grace_s, verbose_workers, boot
        self._owns_ray = False
        if not ray.is_initialized():
            try:
                ray.init(address=None if address == "local" else address, namespace="kharness",
                         log_to_driver=verbose_workers)
            except (ConnectionError, RuntimeError, ValueError) as e:
                raise HarnessError(f"cannot connect to the Ray cluster at {address!r}: {e}") from None
            self._owns_ray = True
        self._remote = ray.remote(run_unit)
        self._published: dict[tuple[str, str, str], tuple[artifacts.Manifest, dict[str, list[Any]]]] = {}
        self.units: list[dict[str, Any]] = []     # one line per finished unit: where, how long, how

    def slots(self) -> int:
        """VM slots of the live nodes (the cluster's ``vm`` resource)."""
        return int(sum(n.get("Resources", {}).get("vm", 0.0) for n in self.ray.nodes() if n.get("Alive")))

    def close(self) -> None:
        """Drop the published artifacts; disconnect if this executor connected."""
        self._published.clear()
        if self._owns_ray and self.ray.is_initialized():
            self.ray.shutdown()
        self._owns_ray = False

    def __enter__(self) -> RayExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- cluster checks and artifacts
    def _nodes_for(self, spec: RunSpec, nodes: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
        need = {**resources_for(spec), "CPU": float(spec.vm.cpus)}
        return [n for n in (self.ray.nodes() if nodes is None else nodes) if n.get("Alive")
                and all(n.get("Resources", {}).get(k, 0.0) >= v for k, v in need.items())]

    def check_schedulable(self, spec: RunSpec) -> None:
        """HarnessError unless some live node can run ``spec``'s unit."""
        if not self._nodes_for(spec):
            need = {**resources_for(spec), "CPU": spec.vm.cpus}
            raise HarnessError(
                f"no live node of the Ray cluster at {self.address!r} offers {need} for {spec.label}; "
                "start each worker host with e.g. `ray start --address=HEAD:6379 --num-cpus=N "
                "--resources='{\"vm\": 1" + (', "kvm": 1' if spec.accel == "kvm" else "") + "}'` (see docs/ray.md)")

    def _artifact(self, kind: str, name: str, key: str) -> tuple[artifacts.Manifest, dict[str, list[Any]]]:
        k = (kind, name, key)
        if k not in self._published:
            if not (artifacts.entry_dir(kind, name, key) / "metadata.json").exists():
                raise HarnessError(f"{kind} {name or key} (key {key}) is not in the driver's cache; prepare the "
                                   "testbed on the driver first (the driver builds, workers only fetch)")
            m = artifacts.describe(kind, name, key)
            self._published[k] = (m, artifacts.publish(m, self.ray.put, chunk_size=self.chunk_size))
        return self._published[k]

    # -- the loop
    def execute(self, specs: Iterable[RunSpec], ctx: RunContext) -> list[BootRecord]:
        """Run every spec on the cluster; records (plan order) to ``ctx.sink`` as they arrive."""
        ray = self.ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy  # optional dependency: ray
        root, sink, say, group, front_end = ctx.root, ctx.sink, ctx.say, ctx.group, ctx.front_end
        reproduces, tests_source, max_boots_per_spec = ctx.reproduces, ctx.tests_source, ctx.max_boots_per_spec
        specs = list(specs)
        for s in specs:
            self.check_schedulable(s)
        common = {"group": group, "front_end": front_end, "reproduces": reproduces,
                  "tests_source": str(tests_source) if tests_source else None, "worker_root": self.worker_root,
                  "keep_worker_runs": self.keep_worker_runs, "verbose": self.verbose_workers}
        tracker = self._tracker(NodeAffinitySchedulingStrategy)
        results: dict[int, list[BootRecord]] = {i: [] for i in range(len(specs))}
        pending: dict[Any, _Unit] = {}
        unschedulable_since: float | None = None
        last_check = 0.0

        def submit(index: int, spec: RunSpec, boots: int) -> None:
            run_dir = new_run_dir(root, spec.label)
            dl = self.deadline_s(spec) if callable(self.deadline_s) else (self.deadline_s or unit_deadline(spec))
            unit = _Unit(index, spec, run_dir, boots, dl)
            refs = {"kernel": self._artifact("kernel", "", spec.kernel.key),
                    "image": self._artifact("image", spec.image.recipe, spec.image.key)}
            opts = dict(num_cpus=spec.vm.cpus, resources=resources_for(spec), max_retries=self.max_retries,
                        retry_exceptions=False, name=f"kharness-{run_dir.name}")
            args: list[Any] = [{**common, "run_id": run_dir.name, "spec": spec.to_json()}, refs, tracker]
            if self._boot is not None:
                args.append(self._boot)
            unit.ref = self._remote.options(**opts).remote(*args)
            pending[unit.ref] = unit
            say(f"boot {run_dir.name}: {spec.kernel.name}, {', '.join(d.kind for d in spec.disks)} "
                f"(ray task, deadline {dl:.0f}s)")

        replaced: dict[int, int] = {}

        def record(unit: _Unit, rec: BootRecord) -> None:
            if replaced.get(unit.index, 0) < ctx.max_replacements:
                rec = lost_to_host(rec)
            results[unit.index].append(rec)
            if sink is not None:
                sink.add_run(rec.to_json())
            if rec.lost:
                replaced[unit.index] = replaced.get(unit.index, 0) + 1
                say(f"boot {rec.run_id} lost to the host ({rec.lost}): a fresh boot replaces it")
                submit(unit.index, unit.spec, unit.boots)
            elif rec.remaining and progressed(rec, unit.spec) and unit.boots < max_boots_per_spec:
                submit(unit.index, unit.spec.narrowed(rec.remaining), unit.boots + 1)

        try:
            for i, s in enumerate(specs):
                submit(i, s, 1)
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=self.poll_s)
                for ref in ready:
                    unit = pending.pop(ref)
                    record(unit, self._collect(unit, say, common))
                    tracker.forget.remote(unit.run_id)
                now = time.monotonic()
                if pending and (not ready or now - last_check > self.poll_s):
                    last_check = now
                    unschedulable_since = self._watch(pending, tracker, say, common, record, unschedulable_since)
        except BaseException:
            for ref in list(pending):
                ray.cancel(ref, force=True)
            raise
        finally:
            try:
                ray.kill(tracker)
            except Exception:
                pass
        return [r for i in sorted(results) for r in results[i]]

    def _tracker(self, affinity: Any) -> Any:
        """The tracker actor, pinned to the driver's node (it must not die with a worker node; Ray's
        soft affinity was seen placing it on worker nodes), anywhere if that cannot be done."""
        ray = self.ray
        cls = ray.remote(Tracker)
        try:
            t = cls.options(num_cpus=0, scheduling_strategy=affinity(ray.get_runtime_context().get_node_id(),
                                                                     soft=False)).remote()
            ray.get(t.ages.remote(), timeout=60)
            return t
        except Exception:   # noqa: BLE001 - e.g. a Ray Client driver has no node of its own
            return cls.options(num_cpus=0).remote()

    def _watch(self, pending: dict[Any, _Unit], tracker: Any, say: Say, common: dict[str, Any],
               record: Callable[[_Unit, BootRecord], None], unschedulable_since: float | None) -> float | None:
        """Deadlines (cancel and record) and units no live node can take any more. Each attempt's
        start is kept on the driver's clock, so a tracker that stops answering loses no deadline."""
        ray = self.ray
        now = time.monotonic()
        try:
            ages: dict[str, dict[str, Any]] | None = ray.get(tracker.ages.remote(), timeout=30)
        except Exception as e:   # noqa: BLE001 - keep going on the driver's own clock
            say(f"ray: tracker unavailable ({type(e).__name__}); deadlines count from the last attempt seen "
                "(from submission for units not seen yet)")
            ages = None
        for ref, unit in list(pending.items()):
            seen = (ages or {}).get(unit.run_id)
            if seen is not None and (seen.get("node"), seen.get("pid"), seen.get("attempt")) != \
                    (unit.seen.get("node"), unit.seen.get("pid"), unit.seen.get("attempt")):
                if unit.seen:
                    say(f"ray: {unit.run_id}: attempt {seen['attempt']} on {_where(seen)} "
                        f"(attempt {unit.seen['attempt']} on {_where(unit.seen)} was lost)")
                unit.seen, unit.attempt_t0 = dict(seen), now - seen["age"]
            if unit.attempt_t0 is None and ages is None:
                unit.attempt_t0 = unit.submitted
            if unit.attempt_t0 is None:
                continue
            age = now - unit.attempt_t0
            if age > unit.deadline:
                if ray.wait([ref], timeout=0)[0]:
                    continue      # it finished just now: the main loop collects its record
                ray.cancel(ref, force=True)
                pending.pop(ref)
                reason = (f"deadline: the ray task ran {age:.0f}s on {_where(unit.seen)} (attempt "
                          f"{unit.seen.get('attempt', '?')}), past its deadline of {unit.deadline:.0f}s; cancelled")
                say(f"ray: {unit.run_id}: {reason}")
                record(unit, self._failed(unit, reason, common, unit.seen))
        if ages is None:
            return unschedulable_since
        if any(u.run_id not in ages for u in pending.values()):   # some wait for a node
            waiting = [u for u in pending.values() if u.run_id not in ages]
            nodes = ray.nodes()
            if all(self._nodes_for(u.spec, nodes) for u in waiting):
                return None
            unschedulable_since = unschedulable_since or time.monotonic()
            if time.monotonic() - unschedulable_since > self.unschedulable_grace_s:
                for ref, unit in list(pending.items()):
                    if unit.run_id in ages or self._nodes_for(unit.spec, nodes):
                        continue
                    ray.cancel(ref, force=True)
                    pending.pop(ref)
                    reason = (f"unschedulable: for {self.unschedulable_grace_s:.0f}s no live node offered "
                              f"{resources_for(unit.spec)} and {unit.spec.vm.cpus} CPUs")
                    record(unit, self._failed(unit, reason, common, {}))
                return None
            return unschedulable_since
        return None

    def _collect(self, unit: _Unit, say: Say, common: dict[str, Any]) -> BootRecord:
        """The record of a finished task: unpacked here, or a failed record with the reason."""
        ray = self.ray
        t_collect = time.monotonic()
        try:
            out = ray.get(unit.ref)
        except ray.exceptions.RayTaskError as e:
            cause = e.cause if getattr(e, "cause", None) is not None else e
            reason = (f"worker error: {type(cause).__name__}: "
                      f"{str(cause).strip().splitlines()[-1] if str(cause).strip() else ''}")
            if isinstance(cause, HarnessError):
                reason = f"worker error: {cause}"
            say(f"ray: {unit.run_id}: {reason}")
            return self._failed(unit, reason, common, unit.seen)
        except ray.exceptions.RayError as e:
            reason = (f"lost: {type(e).__name__} after {self.max_retries} retries: "
                      f"{str(e).strip().splitlines()[0] if str(e).strip() else ''}")
            say(f"ray: {unit.run_id}: {reason}")
            return self._failed(unit, reason, common, unit.seen)
        try:   # one worker's bad tarball or record fails its unit, not the whole run
            unpack_run_dir(out["run_dir_tgz"], unit.run_dir)
            rec = dataclasses.replace(record_from_json(out["record"]), run_dir=str(unit.run_dir))
        except (HarnessError, KeyError, TypeError, ValueError) as e:
            reason = f"unusable result from the worker: {type(e).__name__}: {e}"
            say(f"ray: {unit.run_id}: {reason}")
            return self._failed(unit, reason, common, unit.seen)
        write_json(unit.run_dir / "record.json", rec.to_json(), indent=1, sort_keys=False)
        wall = time.monotonic() - unit.submitted
        info = {k: v for k, v in out.items() if k not in ("record", "run_dir_tgz")}
        self.units.append({"run_id": unit.run_id, "status": rec.status, "wall_s": wall,
                           "collect_s": time.monotonic() - t_collect, **info})
        if info.get("worker_kharness", {}).get("commit") not in (None, unit.spec.harness.commit):
            say(f"ray: {unit.run_id}: worker {info['host']} runs kharness {info['worker_kharness']}, "
                f"the driver {unit.spec.harness}")
        say(f"ray: {unit.run_id}: {rec.status} on {_where(info)} (attempt {info.get('attempt')}, kernel "
            f"{info.get('artifacts', {}).get('kernel')}, image {info.get('artifacts', {}).get('image')}, "
            f"{wall:.0f}s since submission)")
        return rec

    def _failed(self, unit: _Unit, reason: str, common: dict[str, Any], seen: dict[str, Any]) -> BootRecord:
        """An ``error`` run for a unit that returned no record: spec, metadata and record on disk."""
        spec = unit.spec
        info = {"kind": "ray", "host": seen.get("host"), "node_id": seen.get("node"),
                "attempt": seen.get("attempt"), "reason": reason}
        rd = RunDir(unit.run_dir, run_id=unit.run_id, label=spec.label, kernel=spec.kernel.name,
                    kernel_key=spec.kernel.key, image=spec.image.key, accel=spec.accel,
                    workload=spec.workload.kind, role=spec.role, group=common.get("group"), executor=info)
        spec.write(unit.run_dir)
        rec = BootRecord(run_id=unit.run_id, run_dir=str(unit.run_dir), spec=spec, status="error",
                         started=unit.started, finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                         failures=(reason,), remaining=spec.workload.work(), group=common.get("group"),
                         front_end=common.get("front_end", "cli"), reproduces=common.get("reproduces"))
        write_json(unit.run_dir / "record.json", rec.to_json(), indent=1, sort_keys=False)
        rd.finish("error", failures=[reason], remaining=list(rec.remaining))
        self.units.append({"run_id": unit.run_id, "status": "error", "reason": reason,
                           "wall_s": time.monotonic() - unit.submitted, **{k: v for k, v in seen.items() if k != "t0"}})
        return rec
