"""Test databases: a throwaway SQLite file per test, and PostgreSQL too when
``TEST_DATABASE_URL`` is set (one fresh schema per test session, tables emptied per test)."""

from __future__ import annotations

import os
from contextlib import AbstractContextManager
from pathlib import Path

from sqlalchemy import create_engine

from app.migrate import upgrade
from app.models import Base
from deploy.stack.database import postgres_schema as schema_in

BACKENDS = ["sqlite", "postgresql"] if os.environ.get("TEST_DATABASE_URL") else ["sqlite"]


def postgres_schema() -> AbstractContextManager[str]:
    """A fresh schema in TEST_DATABASE_URL, migrated; yields a URL whose search_path is it."""
    return schema_in(os.environ["TEST_DATABASE_URL"])


def empty_tables(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(table.delete())
    engine.dispose()


def sqlite_url(folder: Path) -> str:
    url = f"sqlite:///{folder / 'app.db'}"
    upgrade(url)
    return url
