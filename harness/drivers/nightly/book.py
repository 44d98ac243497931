"""The nightly book: which nights ran, with which commits and verdicts, and xfstests attempts per
night for flaky rates. A SQLite file of its own beside the results store (``nightly.sqlite``), so
the store's schema stays owned by :mod:`.store`; the measurements themselves live in the store,
under each night's group.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ...results.history import FlakyRate
from ...results.rows import StoreError

SCHEMA = """
CREATE TABLE IF NOT EXISTS nights (
    night TEXT PRIMARY KEY, plan TEXT NOT NULL, plan_sha256 TEXT, started TEXT NOT NULL, finished TEXT,
    status TEXT NOT NULL, verdict TEXT, exit_code INTEGER, commits_json TEXT NOT NULL,
    report TEXT, accepted INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS nights_plan ON nights(plan, started);
CREATE TABLE IF NOT EXISTS xfstests_attempts (
    night TEXT NOT NULL, kernel TEXT NOT NULL, section TEXT NOT NULL, test TEXT NOT NULL,
    attempts INTEGER NOT NULL, failures INTEGER NOT NULL, outcome TEXT NOT NULL,
    UNIQUE(night, kernel, section, test));
CREATE TABLE IF NOT EXISTS units (
    night TEXT NOT NULL, label TEXT NOT NULL, info_json TEXT NOT NULL, UNIQUE(night, label));
"""


@dataclass(frozen=True)
class NightRow:
    night: str
    plan: str
    plan_sha256: str | None
    started: str
    finished: str | None
    status: str                 # running | done | failed
    verdict: str | None         # good | regression | error
    exit_code: int | None
    commits: dict
    report: str | None
    accepted: bool

    @property
    def good(self) -> bool:
        """A finished night with nothing regressed, or one a person accepted as the new normal."""
        return self.accepted or (self.status == "done" and self.verdict == "good")


def default_path(store_path: Path) -> Path:
    return Path(store_path).with_name("nightly.sqlite")


class NightlyDB:
    """Open (creating) the nightly book; a context manager."""

    def __init__(self, path: Path):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            self.conn.execute("PRAGMA journal_mode = WAL")
            self.conn.executescript(SCHEMA)
        except (sqlite3.Error, OSError) as e:
            raise StoreError(f"{self.path}: cannot open the nightly book: {e}") from None

    def __enter__(self) -> NightlyDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.conn.close()

    def _rows(self, sql: str, params: Sequence = ()) -> list[NightRow]:
        cur = self.conn.execute(sql, params)
        return [NightRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], json.loads(r[8] or "{}"), r[9], bool(r[10]))
                for r in cur.fetchall()]

    _COLS = "night, plan, plan_sha256, started, finished, status, verdict, exit_code, commits_json, report, accepted"

    def start(self, night: str, plan: str, plan_sha256: str, commits: dict) -> NightRow:
        """Record a night as running (idempotent: a resumed night keeps its start and commits)."""
        self.conn.execute(f"INSERT INTO nights ({self._COLS}) "
                          "VALUES (?, ?, ?, ?, NULL, 'running', NULL, NULL, ?, NULL, 0) "
                          "ON CONFLICT(night) DO UPDATE SET status = 'running', finished = NULL",
                          (night, plan, plan_sha256, time.strftime("%Y-%m-%dT%H:%M:%S%z"), json.dumps(commits)))
        return self.night(night)  # type: ignore[return-value]

    def finish(self, night: str, status: str, verdict: str, exit_code: int, report: str) -> None:
        self.conn.execute("UPDATE nights SET finished = ?, status = ?, verdict = ?, exit_code = ?, report = ? "
                          "WHERE night = ?", (time.strftime("%Y-%m-%dT%H:%M:%S%z"), status, verdict, exit_code,
                                              report, night))

    def accept(self, night: str) -> None:
        """Mark a night as good: later nights compare against it."""
        if self.night(night) is None:
            raise StoreError(f"{self.path}: no night {night!r}")
        self.conn.execute("UPDATE nights SET accepted = 1 WHERE night = ?", (night,))

    def night(self, night: str) -> NightRow | None:
        rows = self._rows(f"SELECT {self._COLS} FROM nights WHERE night = ?", (night,))
        return rows[0] if rows else None

    def nights(self, plan: str | None = None) -> list[NightRow]:
        """Nights, oldest first."""
        if plan is None:
            return self._rows(f"SELECT {self._COLS} FROM nights ORDER BY started, night")
        return self._rows(f"SELECT {self._COLS} FROM nights WHERE plan = ? ORDER BY started, night", (plan,))

    def before(self, plan: str, night: str) -> list[NightRow]:
        """The plan's nights that started before ``night``, oldest first."""
        all_ = self.nights(plan)
        ids = [n.night for n in all_]
        return all_[:ids.index(night)] if night in ids else all_

    def record_units(self, night: str, units: dict[str, dict]) -> None:
        """What each run label of the night was (kind, role, kernel reference, attempt)."""
        self.conn.executemany("INSERT INTO units VALUES (?, ?, ?) ON CONFLICT(night, label) DO UPDATE SET "
                              "info_json = excluded.info_json",
                              [(night, label, json.dumps(info, sort_keys=True)) for label, info in units.items()])

    def units(self, night: str) -> dict[str, dict]:
        cur = self.conn.execute("SELECT label, info_json FROM units WHERE night = ?", (night,))
        return {label: json.loads(info) for label, info in cur.fetchall()}

    def record_attempts(self, night: str, kernel: str, rows: Iterable[tuple[str, str, int, int, str]]) -> None:
        """(section, test, attempts, failures, outcome) of one kernel reference tonight."""
        self.conn.executemany(
            "INSERT INTO xfstests_attempts VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(night, kernel, section, test) "
            "DO UPDATE SET attempts = excluded.attempts, failures = excluded.failures, outcome = excluded.outcome",
            [(night, kernel, *r) for r in rows])

    def outcomes(self, night: str, kernel: str) -> dict[tuple[str, str], str]:
        cur = self.conn.execute("SELECT section, test, outcome FROM xfstests_attempts WHERE night = ? AND kernel = ?",
                                (night, kernel))
        return {(s, t): o for s, t, o in cur.fetchall()}

    def flaky_rates(self, plan: str, last: int = 30) -> list[FlakyRate]:
        """Per test, over the plan's last ``last`` nights and every kernel: attempts, failures and
        nights whose attempts disagreed."""
        nights = [n.night for n in self.nights(plan)][-last:]
        if not nights:
            return []
        q = ",".join("?" * len(nights))
        cur = self.conn.execute(f"SELECT section, test, kernel, attempts, failures, outcome FROM xfstests_attempts "
                                f"WHERE night IN ({q})", nights)
        rates: dict[tuple[str, str], FlakyRate] = {}
        for section, test, kernel, attempts, failures, outcome in cur.fetchall():
            r = rates.setdefault((section, test), FlakyRate(section, test))
            r.attempts += attempts
            r.failures += failures
            r.nights += 1
            r.flaky_nights += outcome == "flaky"
            r.kernels.add(kernel)
        return sorted(rates.values(), key=lambda r: (-r.rate, r.section, r.test))
