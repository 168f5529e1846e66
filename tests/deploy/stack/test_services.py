"""The service starters in ``deploy.stack`` start real processes and leave none."""

from __future__ import annotations

import time
import uuid

import pytest
import requests

from deploy.stack.processes import descendants, wait_gone
from deploy.stack.services import celery_worker, gunicorn_web, moto_s3_server, redis_server

SAMPLE = "tests.deploy.stack.sample_services"

pytestmark = pytest.mark.timeout(120)


def test_private_redis_serves_and_stops(tmp_path, monkeypatch):
    monkeypatch.delenv("TEST_REDIS_URL", raising=False)
    monkeypatch.delenv("REDIS_URL", raising=False)
    with redis_server(tmp_path) as redis:
        client = redis.client()
        client.set("k", "v")
        assert client.get("k") == b"v"
        assert client.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
        redis.flush()
        assert client.get("k") is None
        client.close()
        pid = redis.process.pid
    assert not wait_gone({pid}, timeout=5)


def test_moto_s3_round_trip(tmp_path):
    with moto_s3_server(tmp_path) as s3:
        bucket = s3.create_bucket("roundtrip")
        client = s3.client()
        client.put_object(Bucket=bucket, Key="a/b.txt", Body=b"payload")
        assert client.get_object(Bucket=bucket, Key="a/b.txt")["Body"].read() == b"payload"
        assert s3.env(bucket)["S3_ENDPOINT_URL"] == s3.endpoint_url
        pid = s3.process.pid
    assert not wait_gone({pid}, timeout=5)


def test_gunicorn_serves_and_leaves_no_worker(tmp_path):
    with gunicorn_web({}, tmp_path, app=f"{SAMPLE}:wsgi_app") as web:
        answer = requests.get(web.url("/"), timeout=10)
        assert answer.status_code == 200 and answer.text.startswith("hello from")
        tree = descendants(web.process.pid) | {web.process.pid}
        assert len(tree) >= 2  # the arbiter and its worker
    assert not wait_gone(tree, timeout=5)


def test_celery_worker_runs_tasks_survives_kill_and_restart(tmp_path):
    with redis_server(tmp_path, external=False) as redis:
        env = {"REDIS_URL": redis.url}
        from tests.deploy.stack.sample_services import celery_app, record

        celery_app.conf.broker_url = redis.url
        client = redis.client()
        with celery_worker(env, tmp_path, app=f"{SAMPLE}:celery_app", concurrency=1) as worker:
            record.delay("first", "ok")
            _wait_for_key(client, "first")

            tree = descendants(worker.process.pid) | {worker.process.pid}
            assert len(tree) >= 2  # the main process and its prefork child
            worker.kill()
            assert not wait_gone(tree, timeout=5), "SIGKILL must reach the pool children"

            worker.restart()
            record.delay("second", "ok")
            _wait_for_key(client, "second")
            tree = descendants(worker.process.pid) | {worker.process.pid}
        assert not wait_gone(tree, timeout=5)
        client.close()
        celery_app.pool.force_close_all()


def _wait_for_key(client, key: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.get(key):
            return
        time.sleep(0.1)
    raise AssertionError(f"task never wrote {key!r} ({uuid.uuid4()})")
