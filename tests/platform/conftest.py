"""Real services for the platform tests (see tests/support/services.py)."""

from tests.support.services import redis_service, redis_url  # noqa: F401
