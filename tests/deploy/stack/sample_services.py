"""The smallest Celery app and WSGI app, to check the service starters without the real app."""

from __future__ import annotations

import os

import redis
from celery import Celery

celery_app = Celery("sample", broker=os.environ.get("REDIS_URL", "redis://127.0.0.1:1/0"))
celery_app.conf.update(broker_connection_retry_on_startup=True, task_ignore_result=True)


@celery_app.task(name="sample.record")
def record(key: str, value: str) -> None:
    """Write ``value`` under ``key`` in Redis, so a test can see that the task ran."""
    redis.Redis.from_url(os.environ["REDIS_URL"]).set(key, f"{value}:{os.getpid()}")


def wsgi_app(environ, start_response):
    body = f"hello from {os.getpid()}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
