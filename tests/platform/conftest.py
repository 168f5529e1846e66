"""Real services for the platform tests (deploy.stack, as fixtures in tests/support/services.py)."""

from tests.support.services import redis_service, redis_url  # noqa: F401
