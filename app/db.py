"""Engine and sessions (plain SQLAlchemy 2), shared by the web app, the CLI and the tasks.

``init_app`` keeps one ``Database`` in ``app.extensions["db"]`` and closes the request's
session at teardown. Tasks and commands use ``session_scope()``.
"""

from __future__ import annotations

import getpass
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from flask import Flask, current_app, g
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from app import storable


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL and a busy timeout so web, worker and beat
    processes can share one file."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)
    if parsed.database and parsed.database != ":memory:":
        path = Path(parsed.database)
        path.parent.mkdir(parents=True, exist_ok=True)
        # It holds webhook tokens and admin sessions: owner-only, like its -wal and -shm
        # files, which SQLite creates with the database file's mode.
        path.touch(mode=0o600, exist_ok=True)
        if path.stat().st_mode & 0o077 and path.owner() == getpass.getuser():
            path.chmod(0o600)
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_conn, _record) -> None:
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    return engine


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.sessionmaker = sessionmaker(self.engine, expire_on_commit=False)
        storable.install(self.sessionmaker)  # no NUL or lone surrogate reaches a row

    def dispose(self) -> None:
        """Drop pooled connections (after a fork: the child must not share the parent's)."""
        self.engine.dispose(close=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        session = self.sessionmaker()
        try:
            yield session
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()


def init_app(app: Flask, url: str) -> Database:
    database = Database(url)
    app.extensions["db"] = database
    app.teardown_appcontext(_close_request_session)
    return database


def get_db() -> Database:
    return current_app.extensions["db"]


def get_session() -> Session:
    """The current request's (or app context's) session, opened on first use."""
    if "db_session" not in g:
        g.db_session = get_db().sessionmaker()
    return g.db_session


@contextmanager
def session_scope() -> Iterator[Session]:
    """A fresh session for tasks and commands; rolled back on error, always closed."""
    with get_db().session() as session:
        yield session


def _close_request_session(_exc: BaseException | None) -> None:
    session = g.pop("db_session", None)
    if session is not None:
        session.close()
