"""``python -m app.migrate``: create or upgrade the database tables (Alembic, programmatic).

Also available as ``flask --app app db-upgrade``. Safe to run on every start.
"""

from __future__ import annotations

import sys
from pathlib import Path

from alembic import command
from alembic.config import Config

from app.settings import Settings, SettingsError

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    # ConfigParser interpolation: a literal % in a password must be doubled.
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Apply every migration up to ``revision`` to ``database_url``."""
    command.upgrade(alembic_config(database_url), revision)


def main() -> int:
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    upgrade(settings.database_url)
    print("database is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
