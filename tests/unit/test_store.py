"""The SQLite results store: round trip, idempotence, concurrent writers, migrations, lookups."""

from __future__ import annotations

import copy
import multiprocessing
import sqlite3
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.results.store import MIGRATIONS, SCHEMA_VERSION, Store, StoreError, default_store_path, migrate
from tests.helpers.records import make_record


def test_default_store_path(monkeypatch, tmp_path):
    monkeypatch.setenv("KHARNESS_STORE", str(tmp_path / "s.sqlite"))
    assert default_store_path() == tmp_path / "s.sqlite"
    monkeypatch.delenv("KHARNESS_STORE")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_store_path() == tmp_path / "xdg" / "kharness" / "results.sqlite"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_store_path() == tmp_path / "home" / ".local/share/kharness/results.sqlite"


def test_round_trip(tmp_path):
    rec = make_record(root=tmp_path)
    with Store(tmp_path / "db" / "results.sqlite") as store:
        assert store.schema_version == SCHEMA_VERSION
        assert store.add_run(rec) == rec["run_id"]
        [run] = store.runs()
        assert (run.run_id, run.run_dir, run.group, run.front_end, run.role, run.status) == (
            rec["run_id"], rec["run_dir"], rec["group"], "pytest", "new", "done")
        assert (run.kernel, run.kernel_key, run.kernel_commit) == ("v6.8-patched", "v6.8-patched-k3y", "0123abcd" * 5)
        assert (run.image_key, run.accel, run.workload, run.boot_seconds) == ("debian12-img1", "kvm", "fio", 7.3)
        assert run.spec == rec["spec"] and run.record == rec
        ms = store.measurements([run.run_id])
        assert [(m.run_index, m.iops, m.bw_kib_s, m.fio_json) for m in ms] == [
            (0, 8979.0, 8979.0 * 4, "fio/run0.json"), (1, 9010.5, 9010.5 * 4, "fio/run1.json")]
        assert {(m.cell, m.fs, m.disk, m.pattern, m.engine, m.kernel, m.role) for m in ms} == {
            ("ext4/nvme/unwritten-convert/libaio", "ext4", "nvme", "unwritten-convert", "libaio", "v6.8-patched",
             "new")}
        xs = store.xfstests([run.run_id])
        assert [(x.test, x.status, x.duration_s, x.artifacts) for x in xs] == [
            ("generic/001", "pass", 3.0, None), ("generic/475", "fail", 41.5, "tests/generic-475")]
        [ev] = store.events([run.run_id])
        assert (ev.kind, ev.title, ev.data["line"], ev.data["stack"]) == (
            "hung_task", "INFO: task hung in jbd2_log_wait_commit", 1234, ["jbd2_log_wait_commit", "ext4_sync_file"])
        assert [(e.path, e.what) for e in store.evidence([run.run_id])] == [
            ("sysrq/hang-x-wt-181512.txt", "sysrq"), ("console.log", "console")]
        assert store.groups() == ["suite-20261129-181400-patched"]
    with Store(tmp_path / "db" / "results.sqlite") as again:  # persisted
        assert again.run(rec["run_id"]).record == rec


def test_re_adding_a_run_replaces_it_without_duplicates(tmp_path):
    rec = make_record()
    with Store(tmp_path / "r.sqlite") as store:
        store.add_run(rec)
        store.add_run(rec)
        changed = copy.deepcopy(rec)
        changed["status"] = "hang"
        changed["measurements"][0]["iops"] = 1.0
        changed["xfstests"][1]["status"] = "pass"
        changed["events"] = []
        changed["evidence"] = changed["evidence"][:1]
        store.add_run(changed)
        assert [r.status for r in store.runs()] == ["hang"]
        assert [m.iops for m in store.measurements([rec["run_id"]])] == [1.0, 9010.5]
        assert [x.status for x in store.xfstests([rec["run_id"]])] == ["pass", "pass"]
        assert store.events([rec["run_id"]]) == []
        assert len(store.evidence([rec["run_id"]])) == 1
        counts = [store.conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                  for t in ("runs", "measurements", "xfstests")]
        assert counts == [1, 2, 2]


def test_runs_filters_and_order(tmp_path):
    with Store(tmp_path / "r.sqlite") as store:
        store.add_run(make_record("a-1", kernel="base", role="base", started="2026-11-29T18:00:00+0000"))
        store.add_run(make_record("a-2", kernel="new", started="2026-11-29T18:05:00+0000"))
        store.add_run(make_record("b-1", group="other", kernel="new", started="2026-11-30T09:00:00+0000"))
        store.add_run(make_record("c-1", group=None, kernel="new", started="2026-11-28T09:00:00+0000"))
        assert [r.run_id for r in store.runs()] == ["b-1", "a-2", "a-1", "c-1"]
        assert [r.run_id for r in store.runs(group="suite-20261129-181400-patched")] == ["a-2", "a-1"]
        assert [r.run_id for r in store.runs(kernel="new", limit=2)] == ["b-1", "a-2"]
        assert [r.run_id for r in store.runs(kernel="base-k3y")] == ["a-1"]
        assert store.runs(front_end="cli") == []
        assert store.groups() == ["other", "suite-20261129-181400-patched"]


def test_verdicts(tmp_path):
    row = {"cell": "ext4/nvme/unwritten-convert/libaio", "metric": "iops", "base_kernel": "base",
           "new_kernel": "new", "verdict": "regression", "base_median": 8979.0, "new_median": 498.0,
           "pct_change": -94.5, "p_value": 0.0079, "n_base": 5, "n_new": 5, "detail": {"ranges_overlap": False}}
    with Store(tmp_path / "r.sqlite") as store:
        store.add_verdicts("g1", [row])
        store.add_verdicts("g1", [{**row, "verdict": "inconclusive", "detail": None}])
        [v] = store.verdicts("g1")
        assert (v.group, v.metric, v.verdict, v.pct_change, v.n_new, v.detail) == (
            "g1", "iops", "inconclusive", -94.5, 5, {})
        assert store.verdicts("nope") == [] and store.groups() == ["g1"]
        with pytest.raises(StoreError, match=r"verdicts\[0\]\.metric"):
            store.add_verdicts("g1", [{**row, "metric": None}])


def _writer(path: str, prefix: str, n: int, barrier) -> None:
    """Child process: wait for the other writer, then record n runs one transaction each."""
    barrier.wait()
    with Store(Path(path)) as store:
        for i in range(n):
            store.add_run(make_record(f"{prefix}-{i:03d}", started=f"2026-11-29T18:{i % 60:02d}:00+0000"))


def test_two_processes_write_at_once(tmp_path):
    path = tmp_path / "shared.sqlite"  # created by the racing writers themselves
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_writer, args=(str(path), p, 50, barrier)) for p in ("left", "right")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    with Store(path) as store:
        runs = store.runs()
        assert len(runs) == 100 and len({r.run_id for r in runs}) == 100
        assert len(store.measurements([r.run_id for r in runs])) == 200
        assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_migration_from_version_1(tmp_path):
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript(MIGRATIONS[0])
    conn.execute("PRAGMA user_version = 1")
    old = make_record("old-run-1")
    conn.execute("INSERT INTO runs (id, run_dir, grp, front_end, label, role, status, started, finished, kernel, "
                 "kernel_key, kernel_commit, image_key, accel, workload, spec_json, record_json) "
                 "VALUES ('old-run-1', '/r/old-run-1', 'g-old', 'cli', 'x', 'base', 'done', "
                 "'2026-01-01T00:00:00+0000', NULL, 'v6.1', 'v6.1-k', 'abc', 'img', 'tcg', 'fio', ?, ?)",
                 ('{"kernel": {"name": "v6.1"}}', '{"run_id": "old-run-1", "boot_seconds": 4.5}'))
    conn.execute("INSERT INTO measurements (run_id, cell, fs, disk, pattern, engine, run_index, status, iops) "
                 "VALUES ('old-run-1', 'xfs/virtio/seq/psync', 'xfs', 'virtio', 'seq', 'psync', 0, 'ok', 123.5)")
    conn.commit()
    conn.close()
    with Store(path) as store:
        assert store.schema_version == SCHEMA_VERSION
        run = store.run("old-run-1")
        assert (run.kernel, run.accel, run.spec, run.boot_seconds, run.reproduces) == (
            "v6.1", "tcg", {"kernel": {"name": "v6.1"}}, 4.5, None)
        [m] = store.measurements(["old-run-1"])
        assert (m.cell, m.iops, m.clat_p99_us, m.kernel, m.role) == (
            "xfs/virtio/seq/psync", 123.5, None, "v6.1", "base")
        assert store.xfstests(["old-run-1"]) == []
        store.add_run({**old, "reproduces": "old-run-1", "run_id": "new-run"})
        assert store.run("new-run").reproduces == "old-run-1"
        assert len(store.xfstests(["new-run"])) == 2 and len(store.events(["new-run"])) == 1
        store.add_verdicts("g-old", [{"cell": "c", "metric": "iops", "base_kernel": "a", "new_kernel": "b",
                                      "verdict": "no change"}])
        assert [v.verdict for v in store.verdicts("g-old")] == ["no change"]


def test_migrate_step_by_step_and_newer_refused(tmp_path):
    conn = sqlite3.connect(tmp_path / "m.sqlite", isolation_level=None)
    assert migrate(conn, target=1) == 1
    assert {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")} == {
        "runs", "measurements"}
    assert migrate(conn, target=2) == 2 and migrate(conn) == SCHEMA_VERSION and migrate(conn) == SCHEMA_VERSION
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match=rf"m\.sqlite.*version {SCHEMA_VERSION + 1}.*newer.*\({SCHEMA_VERSION}\)"):
        Store(tmp_path / "m.sqlite")


def test_garbage_file_is_a_store_error(tmp_path):
    bad = tmp_path / "results.sqlite"
    bad.write_bytes(b"this is not an sqlite database\n" * 64)
    with pytest.raises(StoreError, match="results.sqlite") as exc:
        Store(bad)
    assert isinstance(exc.value, HarnessError) and not isinstance(exc.value, sqlite3.Error)
    with pytest.raises(StoreError, match="cannot open"):
        Store(tmp_path)  # a directory


def test_run_lookup(tmp_path):
    with Store(tmp_path / "r.sqlite") as store:
        for rid in ("20261129-181500-fio-a-3fa2", "20261129-181500-fio-b-77aa", "20261130-090000-xfs-c-0001"):
            store.add_run(make_record(rid, root=tmp_path / "runs"))
        assert store.run("20261129-181500-fio-a-3fa2").run_id == "20261129-181500-fio-a-3fa2"
        assert store.run("20261130").run_id == "20261130-090000-xfs-c-0001"
        assert store.run(str(tmp_path / "runs" / "20261129-181500-fio-b-77aa") + "/").run_id.endswith("b-77aa")
        with pytest.raises(StoreError, match=r"'20261129-1815' is ambiguous: 20261129-181500-fio-a-3fa2, "):
            store.run("20261129-1815")
        with pytest.raises(StoreError, match=r"r\.sqlite: no run matches 'zzz'"):
            store.run("zzz")
        with pytest.raises(StoreError, match="no run matches"):
            store.run("2026%")  # no LIKE wildcards


@pytest.mark.parametrize("mutate, key", [
    (lambda r: r.pop("run_id"), "run_id"),
    (lambda r: r.update(run_id=""), "run_id"),
    (lambda r: r.pop("run_dir"), "run_dir"),
    (lambda r: r.update(status=3), "status"),
    (lambda r: r.pop("spec"), "spec"),
    (lambda r: r.update(spec="kernel"), "spec"),
    (lambda r: r.update(boot_seconds="fast"), "boot_seconds"),
    (lambda r: r.update(measurements={"cell": "x"}), "measurements"),
    (lambda r: r["measurements"][1].pop("run_index"), r"measurements\[1\]\.run_index"),
    (lambda r: r["measurements"][0].update(iops="many"), r"measurements\[0\]\.iops"),
    (lambda r: r["xfstests"][0].pop("test"), r"xfstests\[0\]\.test"),
    (lambda r: r["events"][0].pop("kind"), r"events\[0\]\.kind"),
    (lambda r: r["evidence"][1].update(path=None), r"evidence\[1\]\.path"),
])
def test_bad_records_name_the_key(tmp_path, mutate, key):
    rec = make_record()
    mutate(rec)
    with Store(tmp_path / "r.sqlite") as store:
        with pytest.raises(StoreError, match=rf"r\.sqlite: .*\b{key}:"):
            store.add_run(rec)
        assert store.runs() == []


def test_closed_store(tmp_path):
    store = Store(tmp_path / "r.sqlite")
    store.close()
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.runs()
