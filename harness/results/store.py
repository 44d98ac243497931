"""The results store: every run, from every front end and host, in one SQLite file.

A run arrives as the JSON form of a boot record (a plain mapping; this module never imports the
layer that produces it), is checked and turned into table rows by :mod:`.record_rows`, and is
written in one ``BEGIN IMMEDIATE`` transaction. Reads hand back the values of :mod:`.rows`. The
file is in WAL mode with a generous busy timeout, so several processes may record at once. Recording a run again
replaces its row, upserts its measurements and xfstests results on their natural keys and replaces
its events and evidence as a set. The schema version lives in ``PRAGMA user_version``; each entry
of :data:`MIGRATIONS` takes the file one version up, in its own transaction.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from .record_rows import (
    _M_COLS,
    _RUN_COLS,
    _V_COLS,
    _X_COLS,
    _dumps,
    _int,
    _items,
    _loads,
    _measurement_values,
    _num,
    _run_values,
    _str,
    _xfstest_values,
)
from .rows import EventRow, EvidenceRow, MeasurementRow, RunRow, StoreError, VerdictRow, XfstestRow

__all__ = ["SCHEMA_VERSION", "MIGRATIONS", "Store", "StoreError", "default_store_path", "migrate"]

SCHEMA_VERSION = 4
BUSY_TIMEOUT_S = 30.0

MIGRATIONS: list[str] = [
    # 1: runs and their fio measurements.
    """
    CREATE TABLE runs (
        id TEXT PRIMARY KEY, run_dir TEXT NOT NULL, grp TEXT, front_end TEXT, label TEXT,
        role TEXT, status TEXT NOT NULL, started TEXT, finished TEXT, kernel TEXT,
        kernel_key TEXT, kernel_commit TEXT, image_key TEXT, accel TEXT, workload TEXT,
        spec_json TEXT NOT NULL, record_json TEXT NOT NULL);
    CREATE TABLE measurements (
        run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE, cell TEXT NOT NULL,
        fs TEXT, disk TEXT, pattern TEXT, engine TEXT, run_index INTEGER NOT NULL, status TEXT,
        iops REAL, bw_kib_s REAL, clat_p50_us REAL, clat_p99_us REAL, clat_p999_us REAL,
        fio_json TEXT, UNIQUE(run_id, cell, run_index));
    """,
    # 2: xfstests results, console events, evidence files, stored verdicts; boot time, reproduces.
    """
    ALTER TABLE runs ADD COLUMN boot_seconds REAL;
    ALTER TABLE runs ADD COLUMN reproduces TEXT;
    CREATE TABLE xfstests (
        run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE, section TEXT NOT NULL,
        test TEXT NOT NULL, status TEXT NOT NULL, duration_s REAL, message TEXT, artifacts TEXT,
        UNIQUE(run_id, section, test));
    CREATE TABLE events (
        run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE, seq INTEGER NOT NULL,
        kind TEXT NOT NULL, title TEXT, event_json TEXT NOT NULL, UNIQUE(run_id, seq));
    CREATE TABLE evidence (
        run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE, seq INTEGER NOT NULL,
        path TEXT NOT NULL, what TEXT, UNIQUE(run_id, seq));
    CREATE TABLE verdicts (
        grp TEXT NOT NULL, cell TEXT NOT NULL, metric TEXT NOT NULL, base_kernel TEXT NOT NULL,
        new_kernel TEXT NOT NULL, verdict TEXT NOT NULL, base_median REAL, new_median REAL,
        pct_change REAL, p_value REAL, n_base INTEGER, n_new INTEGER, detail_json TEXT,
        UNIQUE(grp, cell, metric, base_kernel, new_kernel));
    UPDATE runs SET boot_seconds = json_extract(record_json, '$.boot_seconds'),
                    reproduces = json_extract(record_json, '$.reproduces')
        WHERE json_valid(record_json);
    CREATE INDEX runs_grp ON runs(grp);
    CREATE INDEX runs_kernel ON runs(kernel);
    CREATE INDEX runs_kernel_key ON runs(kernel_key);
    CREATE INDEX runs_started ON runs(started);
    CREATE INDEX runs_run_dir ON runs(run_dir);
    CREATE INDEX runs_reproduces ON runs(reproduces);
    CREATE INDEX measurements_cell ON measurements(cell);
    CREATE INDEX xfstests_test ON xfstests(test, status);
    """,
    # 3: the counted metrics of each measurement (harness.workloads.counters) and its raw counts.
    """
    ALTER TABLE measurements ADD COLUMN dev_writes_per_kwrite REAL;
    ALTER TABLE measurements ADD COLUMN flushes_per_kwrite REAL;
    ALTER TABLE measurements ADD COLUMN jbd2_commits_per_kwrite REAL;
    ALTER TABLE measurements ADD COLUMN xfs_log_writes_per_kwrite REAL;
    ALTER TABLE measurements ADD COLUMN xfs_log_forces_per_kwrite REAL;
    ALTER TABLE measurements ADD COLUMN ctxsw_per_kwrite REAL;
    ALTER TABLE measurements ADD COLUMN dio_wq_items_per_kwrite REAL;
    ALTER TABLE measurements ADD COLUMN dio_wq_peak_concurrency REAL;
    ALTER TABLE measurements ADD COLUMN dio_wq_mean_us REAL;
    ALTER TABLE measurements ADD COLUMN counters_json TEXT;
    """,
    # 4: the calibration job's IOPS before each measurement (the guest's speed), and how much
    # of the host's CPU other processes left while it ran (what the verdicts calibrate on).
    """
    ALTER TABLE measurements ADD COLUMN calib_iops REAL;
    ALTER TABLE measurements ADD COLUMN host_free REAL;
    """,
]
assert len(MIGRATIONS) == SCHEMA_VERSION


def default_store_path() -> Path:
    """$KHARNESS_STORE, else $XDG_DATA_HOME/kharness/results.sqlite, else ~/.local/share/..."""
    env = os.environ.get("KHARNESS_STORE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_DATA_HOME")
    return (Path(xdg) if xdg else Path.home() / ".local" / "share") / "kharness" / "results.sqlite"


def _statements(script: str) -> Iterator[str]:
    """The statements of a migration script, split where SQLite says a statement is complete."""
    buf = ""
    for piece in script.split(";"):
        buf += piece + ";"
        if sqlite3.complete_statement(buf):
            if buf.strip(" \n\t;"):
                yield buf.strip()
            buf = ""


def migrate(conn: sqlite3.Connection, target: int = SCHEMA_VERSION) -> int:
    """Bring the database up to ``target``, one transaction a step; returns the version reached.

    ``conn`` must be in autocommit mode (``isolation_level=None``). A file newer than this code
    is refused rather than guessed at.
    """
    db = (conn.execute("PRAGMA database_list").fetchone() or ("", "", ""))[2] or ":memory:"
    if not 0 <= target <= SCHEMA_VERSION:
        raise StoreError(f"{db}: no schema version {target} (known: 0..{SCHEMA_VERSION})")
    while True:
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(f"{db}: schema version {version} is newer than this "
                                 f"kharness understands ({SCHEMA_VERSION}); upgrade kharness")
            if version >= target:
                conn.execute("COMMIT")
                return version
            for stmt in _statements(MIGRATIONS[version]):
                conn.execute(stmt)
            conn.execute(f"PRAGMA user_version = {version + 1}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise


def _retry_locked(fn: Any) -> Any:
    """Run fn, retrying while the file is locked (the busy handler does not cover every pragma)."""
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            return fn()
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _upsert(table: str, cols: Sequence[str], key: Sequence[str]) -> str:
    update = ", ".join(f"{c} = excluded.{c}" for c in cols if c not in key)
    return (f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))}) "
            f"ON CONFLICT({', '.join(key)}) DO UPDATE SET {update}")


class Store:
    """The results database; opens (creating and migrating) the file, usable as a context manager."""

    def __init__(self, path: Path | None = None):
        self.path = Path(path) if path is not None else default_store_path()
        self._conn: sqlite3.Connection | None = None
        try:
            with self._errors("cannot open the results store"):
                self.path.parent.mkdir(parents=True, exist_ok=True)
                conn = self._conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
                conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
                _retry_locked(lambda: conn.execute("PRAGMA journal_mode = WAL").fetchone())
                conn.execute("PRAGMA foreign_keys = ON")
                migrate(conn)
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection (idempotent)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    @contextlib.contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        try:
            yield
        except (sqlite3.Error, OSError) as e:
            raise StoreError(f"{self.path}: {doing}: {e}") from None

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"{self.path}: the results store is closed")
        return self._conn

    @contextlib.contextmanager
    def _write(self, doing: str) -> Iterator[sqlite3.Connection]:
        with self._errors(doing):
            conn = self.conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    @property
    def schema_version(self) -> int:
        with self._errors("cannot read the schema version"):
            return self.conn.execute("PRAGMA user_version").fetchone()[0]

    def add_run(self, record: Mapping) -> str:
        """Record a run (replacing an earlier recording of the same run id); returns its id."""
        try:
            values = _run_values(record)
            run_id = values[0]
            meas = [_measurement_values(run_id, i, m) for i, m in enumerate(_items(record, "measurements"))]
            xfs = [_xfstest_values(run_id, i, x) for i, x in enumerate(_items(record, "xfstests"))]
            events = [(run_id, i, _str(e, "kind", f"record key events[{i}].", True),
                       _str(e, "title", f"record key events[{i}]."), _dumps(e, f"record key events[{i}]"))
                      for i, e in enumerate(_items(record, "events"))]
            evidence = [(run_id, i, _str(e, "path", f"record key evidence[{i}].", True),
                         _str(e, "what", f"record key evidence[{i}]."))
                        for i, e in enumerate(_items(record, "evidence"))]
        except StoreError as e:
            raise StoreError(f"{self.path}: cannot record run: {e}") from None
        with self._write(f"cannot record run {run_id}") as conn:
            conn.execute(_upsert("runs", _RUN_COLS.split(", "), ["id"]), values)
            conn.executemany(_upsert("measurements", _M_COLS, ["run_id", "cell", "run_index"]), meas)
            conn.executemany(_upsert("xfstests", _X_COLS, ["run_id", "section", "test"]), xfs)
            conn.execute("DELETE FROM events WHERE run_id = ?", (run_id,))
            conn.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?)", events)
            conn.execute("DELETE FROM evidence WHERE run_id = ?", (run_id,))
            conn.executemany("INSERT INTO evidence VALUES (?, ?, ?, ?)", evidence)
        return run_id

    def add_verdicts(self, group: str, rows: Sequence[Mapping]) -> None:
        """Store verdicts of a group, replacing earlier ones for the same cell, metric and kernels."""
        if not isinstance(group, str) or not group:
            raise StoreError(f"{self.path}: add_verdicts: group must be a non-empty string, got {group!r}")
        values = []
        for i, r in enumerate(rows):
            w = f"{self.path}: cannot record verdicts of {group}: verdicts[{i}]."
            if not isinstance(r, Mapping):
                raise StoreError(f"{w[:-1]}: expected an object, got {r!r:.80}")
            values.append((group, *(_str(r, k, w, True) for k in _V_COLS[:5]),
                           *(_num(r, k, w) for k in _V_COLS[5:9]),
                           *(_int(r, k, w) for k in _V_COLS[9:]), _dumps(r.get("detail") or {}, w + "detail")))
        cols = ["grp", *_V_COLS, "detail_json"]
        with self._write(f"cannot record verdicts of {group}") as conn:
            conn.executemany(_upsert("verdicts", cols, ["grp", *_V_COLS[:4]]), values)

    def _query(self, sql: str, params: Sequence = ()) -> list[sqlite3.Row]:
        with self._errors("query failed"):
            cur = self.conn.execute(sql, params)
            cur.row_factory = sqlite3.Row
            return cur.fetchall()

    def _by_runs(self, sql: str, run_ids: Iterable[str], order: str) -> list[sqlite3.Row]:
        ids = list(dict.fromkeys(run_ids))
        out: list[sqlite3.Row] = []
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            out += self._query(f"{sql} WHERE t.run_id IN ({', '.join('?' * len(chunk))}) ORDER BY {order}", chunk)
        return out

    @staticmethod
    def _run_row(r: sqlite3.Row) -> RunRow:
        # the ignores on the row constructors: mypy cannot count the columns of a starred sqlite3.Row
        return RunRow(r["id"], r["run_dir"], r["grp"], *(r[k] for k in _RUN_COLS.split(", ")[3:17]),  # type: ignore[misc]
                      spec=_loads(r["spec_json"]), record=_loads(r["record_json"]))

    def runs(self, *, group: str | None = None, kernel: str | None = None, front_end: str | None = None,
             limit: int | None = None) -> list[RunRow]:
        """Runs, newest first; ``kernel`` matches the kernel's name or its cache key."""
        conds = [("grp = ?", group), ("(kernel = ? OR kernel_key = ?)", kernel), ("front_end = ?", front_end)]
        where = ["1", *(c for c, v in conds if v is not None)]
        params: list[Any] = [v for c, v in conds if v is not None for _ in range(c.count("?"))]
        sql = f"SELECT * FROM runs WHERE {' AND '.join(where)} ORDER BY started DESC, rowid DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        return [self._run_row(r) for r in self._query(sql, params)]

    def run(self, ref: str) -> RunRow:
        """The run named by ``ref``: a run id, a unique prefix of one, or its run directory."""
        ref = os.fspath(ref)
        rows = self._query("SELECT * FROM runs WHERE id = ?", (ref,))
        if not rows and ref:
            dirs = {os.path.normpath(ref), os.path.abspath(ref), os.path.realpath(ref)}
            rows = self._query(f"SELECT * FROM runs WHERE run_dir IN ({', '.join('?' * len(dirs))})",
                               sorted(dirs))
        if not rows and ref:
            rows = self._query("SELECT * FROM runs WHERE substr(id, 1, ?) = ? ORDER BY id LIMIT 11",
                               (len(ref), ref))
        if not rows:
            raise StoreError(f"{self.path}: no run matches {ref!r}")
        if len(rows) > 1:
            names = ", ".join(r["id"] for r in rows[:10]) + (", ..." if len(rows) > 10 else "")
            raise StoreError(f"{self.path}: {ref!r} is ambiguous: {names}")
        return self._run_row(rows[0])

    def measurements(self, run_ids: Iterable[str]) -> list[MeasurementRow]:
        """The fio measurements of these runs, by run, cell and run index."""
        sql = (f"SELECT {', '.join('t.' + c for c in _M_COLS)}, r.kernel, r.role "
               "FROM measurements t JOIN runs r ON r.id = t.run_id")
        return [MeasurementRow(*r[:23], _loads(r[23]), *r[24:])  # type: ignore[call-arg]
                for r in self._by_runs(sql, run_ids, "t.run_id, t.cell, t.run_index")]

    def xfstests(self, run_ids: Iterable[str]) -> list[XfstestRow]:
        """The xfstests results of these runs, by run, section and test."""
        sql = f"SELECT {', '.join(_X_COLS)} FROM xfstests t"
        return [XfstestRow(*r) for r in self._by_runs(sql, run_ids, "t.run_id, t.section, t.test")]

    def events(self, run_ids: Iterable[str]) -> list[EventRow]:
        """The console events of these runs, in recorded order."""
        sql = "SELECT run_id, seq, kind, title, event_json FROM events t"
        return [EventRow(r[0], r[1], r[2], r[3], data=_loads(r[4]))
                for r in self._by_runs(sql, run_ids, "t.run_id, t.seq")]

    def evidence(self, run_ids: Iterable[str]) -> list[EvidenceRow]:
        """The evidence files of these runs, in recorded order."""
        sql = "SELECT run_id, seq, path, what FROM evidence t"
        return [EvidenceRow(*r) for r in self._by_runs(sql, run_ids, "t.run_id, t.seq")]

    def verdicts(self, group: str) -> list[VerdictRow]:
        """The stored verdicts of a group, by cell and metric."""
        rows = self._query(f"SELECT grp, {', '.join(_V_COLS)}, detail_json FROM verdicts WHERE grp = ? "
                           "ORDER BY cell, metric, base_kernel, new_kernel", (group,))
        return [VerdictRow(*r[:12], detail=_loads(r[12])) for r in rows]  # type: ignore[misc]

    def groups(self) -> list[str]:
        """Every group with runs or verdicts, the most recently started first."""
        rows = self._query("SELECT grp FROM (SELECT grp, max(started) AS s FROM runs GROUP BY grp "
                           "UNION ALL SELECT DISTINCT grp, NULL FROM verdicts) WHERE grp IS NOT NULL "
                           "GROUP BY grp ORDER BY max(s) DESC, grp")
        return [r[0] for r in rows]
