"""Fixtures for the web app: ``settings``, ``app``, ``client``, ``runner``, ``enqueued``.

The app runs on a real, migrated database (SQLite; PostgreSQL too when TEST_DATABASE_URL is
set) and real local storage in a temp folder. Celery's broker is kombu's in-memory
transport here, and ``enqueued`` records what the app asked the tasks to do; the tasks
themselves are tested against real Redis and a real worker in ``tests/tasks``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from app import create_app
from app.services import services_of
from app.settings import Settings
from tests.app.database import BACKENDS, empty_tables, postgres_schema, sqlite_url
from tests.support.services import redis_service, redis_url  # noqa: F401 - fixtures

API_TOKEN = "test-api-token-0123456789"
ADMIN_PASSWORD = "test-admin-password"
# What every test app's settings share (the gunicorn-served one in test_bad_input too).
TEST_ENV = {
    "APP_ENV": "test",
    "SECRET_KEY": "test-secret-key-not-for-production",
    "ADMIN_PASSWORD": ADMIN_PASSWORD,
    "API_TOKENS": f"{API_TOKEN},second-token-abcdefgh",
    "RUNPOD_API_KEY": "rp-test-key",
    "RUNPOD_ENDPOINT_ID": "local",
    "RUNPOD_ENDPOINT_BASE_URL": "http://127.0.0.1:9/v2",
    "MAX_UPLOAD_BYTES": str(256 * 1024),
}


@pytest.fixture(scope="session")
def _postgres_url():
    if "postgresql" not in BACKENDS:
        yield None
        return
    with postgres_schema() as url:
        yield url


@pytest.fixture(params=BACKENDS)
def database_url(request, tmp_path: Path, _postgres_url) -> str:
    if request.param == "sqlite":
        return sqlite_url(tmp_path)
    empty_tables(_postgres_url)
    return _postgres_url


@pytest.fixture
def settings(tmp_path: Path, database_url: str, redis_url: str) -> Settings:  # noqa: F811
    return Settings.from_env(
        {
            **TEST_ENV,
            "REDIS_URL": redis_url,  # rate limits: a private Redis, flushed per test
            "DATABASE_URL": database_url,
            "STORAGE_DIR": str(tmp_path / "storage"),
            "PUBLIC_BASE_URL": "http://127.0.0.1:5999",
        }
    )


@pytest.fixture
def enqueued() -> list[tuple]:
    return []


@pytest.fixture
def app(settings: Settings, enqueued: list[tuple]):
    app = create_app(settings, celery_overrides={"broker_url": "memory://"})

    def record(name, *args, countdown=None):
        enqueued.append((name, *args))

    services_of(app).enqueue = record
    yield app
    app.extensions["db"].engine.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


def csrf_token(client, path: str = "/") -> str:
    page = client.get(path).get_data(as_text=True)
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, f"no CSRF token on {path}"
    return match.group(1)


def storage_files(settings: Settings) -> list[Path]:
    """Every stored file, staging included: what "nothing stored" is checked against."""
    root = Path(settings.storage_dir)
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".crashed"))


def login_admin(client) -> None:
    token = csrf_token(client, "/admin/login")
    response = client.post(
        "/admin/login", data={"password": ADMIN_PASSWORD, "csrf_token": token, "next": "/admin/"}
    )
    assert response.status_code == 303, response.get_data(as_text=True)
