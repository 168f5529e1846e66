"""Throwaway PostgreSQL schemas for the tests and the benchmarks."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote

from sqlalchemy import create_engine, text

from deploy.stack.services import create_tables


@contextmanager
def postgres_schema(base: str) -> Iterator[str]:
    """A fresh schema in the database at ``base``, migrated (by the app's own migrate
    command, in a child process); yields a URL whose search_path is it, dropped on exit."""
    schema = f"test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in base else "?"
    url = f"{base}{separator}options={quote(f'-csearch_path={schema}')}"
    try:
        create_tables({"DATABASE_URL": url})
        yield url
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
