"""SQLite persistence for the local endpoint's jobs (and the pids of its workers).

Memory holds the working set; every state change is written through at once, so a
``kill -9`` of the endpoint loses nothing that was acknowledged. Inputs and outputs
(up to 20 MB each) live in a table of their own: SQLite rewrites a whole row on
UPDATE, and a status change must not copy a 19 MiB input again (0.4 s each). WAL with
``synchronous=NORMAL`` keeps a write to tens of microseconds (no fsync per commit);
that survives a process crash, which is what the endpoint promises.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from deploy.local.jobs import RECORD_FIELDS
from deploy.local.life import WorkerLife

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    endpoint TEXT NOT NULL DEFAULT '',
    seq INTEGER NOT NULL,
    status TEXT NOT NULL,
    input TEXT NOT NULL,
    webhook TEXT,
    policy TEXT,
    s3_config TEXT,
    output TEXT,
    error TEXT,
    worker_id TEXT,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    requeues INTEGER NOT NULL DEFAULT 0,
    retried INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS job_payloads (
    id TEXT NOT NULL,
    kind TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (id, kind)
);
CREATE TABLE IF NOT EXISTS worker_lives (
    id TEXT PRIMARY KEY,
    endpoint TEXT NOT NULL,
    started_at REAL NOT NULL,
    life TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS workers (
    id TEXT PRIMARY KEY,
    pid INTEGER NOT NULL,
    started_at REAL NOT NULL
);
"""

_JSON_COLUMNS = ("input", "policy", "s3_config", "output")
# Kept in job_payloads; the jobs row holds JSON null in their place.
_PAYLOADS = ("input", "output")


class Store:
    """Write-through job table. Values of ``input``/``policy``/``output`` are JSON."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600, exist_ok=True)  # signed URLs inside: owner-only, -wal too
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)
        columns = {row[1] for row in self.db.execute("PRAGMA table_info(jobs)")}
        if "s3_config" not in columns:  # a state dir from before s3Config was kept
            self.db.execute("ALTER TABLE jobs ADD COLUMN s3_config TEXT")
        if "endpoint" not in columns:  # from before one process served several endpoints
            self.db.execute("ALTER TABLE jobs ADD COLUMN endpoint TEXT NOT NULL DEFAULT ''")
        cols = ", ".join(RECORD_FIELDS)
        marks = ", ".join("?" for _ in RECORD_FIELDS)
        self._insert_sql = f"INSERT OR REPLACE INTO jobs ({cols}) VALUES ({marks})"  # noqa: S608

    def close(self) -> None:
        self.db.close()

    def load_jobs(
        self, endpoint: str | None = None, *, unnamed: bool = True
    ) -> list[dict[str, Any]]:
        """The jobs of ``endpoint`` (all if None); ``unnamed``: with the rows written
        before jobs named their endpoint."""
        cols = ", ".join(RECORD_FIELDS)
        where, args = "", []
        if endpoint is not None:
            where = "WHERE endpoint = ?" + (" OR endpoint = ''" if unnamed else "")
            args = [endpoint]
        rows = self.db.execute(f"SELECT {cols} FROM jobs {where} ORDER BY seq", args)  # noqa: S608
        payloads: dict[tuple[str, str], str] = {
            (job_id, kind): body
            for job_id, kind, body in self.db.execute("SELECT id, kind, body FROM job_payloads")
        }
        jobs = []
        for row in rows:
            rec = dict(zip(RECORD_FIELDS, row, strict=True))
            for col in _PAYLOADS:  # rows written before job_payloads keep them inline
                rec[col] = payloads.get((rec["id"], col), rec[col])
            for col in _JSON_COLUMNS:
                rec[col] = json.loads(rec[col]) if rec[col] is not None else None
            jobs.append(rec)
        return jobs

    def save_job(self, rec: dict[str, Any]) -> None:
        values = []
        for col in RECORD_FIELDS:
            value = rec.get(col)
            if col in _PAYLOADS:
                value = "null"
            elif col in _JSON_COLUMNS and value is not None:
                value = json.dumps(value)
            values.append(value)
        with self._transaction():
            self.db.execute(self._insert_sql, values)
            for col in _PAYLOADS:
                self._set_payload(rec["id"], col, rec.get(col))

    def update_job(self, job_id: str, **fields: Any) -> None:
        with self._transaction():
            for col in _PAYLOADS:
                if col in fields:
                    self._set_payload(job_id, col, fields.pop(col))
            if not fields:
                return
            sets = ", ".join(f"{name} = ?" for name in fields)
            values = [
                json.dumps(v) if k in _JSON_COLUMNS and v is not None else v
                for k, v in fields.items()
            ]
            self.db.execute(f"UPDATE jobs SET {sets} WHERE id = ?", [*values, job_id])  # noqa: S608

    def delete_jobs(self, ids: list[str]) -> None:
        if ids:
            rows = [(i,) for i in ids]
            with self._transaction():
                self.db.executemany("DELETE FROM jobs WHERE id = ?", rows)
                self.db.executemany("DELETE FROM job_payloads WHERE id = ?", rows)

    def _set_payload(self, job_id: str, kind: str, value: Any) -> None:
        if value is None:
            self.db.execute("DELETE FROM job_payloads WHERE id = ? AND kind = ?", (job_id, kind))
        else:
            self.db.execute(
                "INSERT OR REPLACE INTO job_payloads (id, kind, body) VALUES (?, ?, ?)",
                (job_id, kind, json.dumps(value)),
            )

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """One commit for a job row and its payloads (the connection autocommits)."""
        if self.db.in_transaction:
            yield
            return
        self.db.execute("BEGIN")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def max_seq(self) -> int:
        (value,) = self.db.execute("SELECT COALESCE(MAX(seq), 0) FROM jobs").fetchone()
        return int(value)

    def record_worker(self, worker_id: str, pid: int, started_at: float) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO workers (id, pid, started_at) VALUES (?, ?, ?)",
            (worker_id, pid, started_at),
        )

    def forget_worker(self, worker_id: str) -> None:
        self.db.execute("DELETE FROM workers WHERE id = ?", (worker_id,))

    def recorded_workers(self) -> list[tuple[str, int]]:
        return list(self.db.execute("SELECT id, pid FROM workers"))

    def forget_all_workers(self) -> None:
        self.db.execute("DELETE FROM workers")

    # ---- each worker's billed life (kept LIVES_KEPT_S after it started) ----------------

    def save_life(self, life: WorkerLife) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO worker_lives (id, endpoint, started_at, life) "
            "VALUES (?, ?, ?, ?)",
            (life.worker_id, life.endpoint, life.started_at, life.to_json()),
        )

    def load_lives(self, endpoint: str, since: float = 0.0) -> list[WorkerLife]:
        rows = self.db.execute(
            "SELECT life FROM worker_lives WHERE endpoint = ? AND started_at >= ? "
            "ORDER BY started_at",
            (endpoint, since),
        )
        return [WorkerLife.from_json(text) for (text,) in rows]

    def forget_lives_before(self, when: float) -> None:
        self.db.execute("DELETE FROM worker_lives WHERE started_at < ?", (when,))
