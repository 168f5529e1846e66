"""A failing request in the web app (gunicorn) and a failing Celery task started by beat
reach Sentry (a local sink) tagged with their component, with secrets scrubbed."""

from __future__ import annotations

import json

import pytest
import requests

from deploy.stack.services import app_env, celery_beat, celery_worker, gunicorn_web
from tests.support.sentry_sink import SentrySink

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

SECRETS = {
    "SECRET_KEY": "flask-secret-key-5e6f7a8b9c0d",
    "RUNPOD_API_KEY": "rpa_LIVEKEY_abcdef0123456789",
    "ADMIN_PASSWORD": "admin-pass-3141592653",
    "API_TOKENS": "api-token-aaaa11112222,api-token-bbbb33334444",
    "AWS_SECRET_ACCESS_KEY": "aws-secret-zyxwvut98765",
}


@pytest.fixture
def broken_env(tmp_path, redis_url):
    """A stack whose database has no tables: every page and task touching it fails."""

    def make(dsn: str) -> dict[str, str]:
        return app_env(
            tmp_path,
            redis_url=redis_url,
            extra={**SECRETS, "SENTRY_DSN": dsn, "DATABASE_URL": f"sqlite:///{tmp_path}/empty.db"},
        )

    return make


def _assert_scrubbed(raw: bytes) -> None:
    text = raw.decode(errors="replace")
    for value in SECRETS.values():
        for part in value.split(","):
            assert part not in text, f"secret {part[:8]}... reached Sentry"


JOB_ID = "00000000-0000-4000-8000-000000000000"


def test_web_error_reaches_sentry_scrubbed(broken_env, tmp_path):
    with SentrySink() as sink:
        env = broken_env(sink.dsn)
        with gunicorn_web(env, tmp_path) as web:
            answer = requests.get(
                # A secret in the query string too (the job list refuses unknown filters).
                web.url(f"/api/jobs/{JOB_ID}?token=api-token-aaaa11112222"),
                headers={"Authorization": "Bearer api-token-bbbb33334444"},
                cookies={"session": "a-session-cookie-value"},
                timeout=30,
            )
            assert answer.status_code == 500
            for secret in SECRETS.values():
                assert secret.split(",")[0] not in answer.text, "a secret leaked into the page"
            # The readiness probe's GET / fails on the same missing tables: take this
            # request's event.
            events = sink.wait_for(
                lambda evs: [
                    e
                    for e in evs
                    if e.get("tags", {}).get("component") == "web"
                    and e.get("request", {}).get("url", "").endswith(f"/api/jobs/{JOB_ID}")
                ],
                "from the web app",
            )
        event = events[0]
        assert event["exception"]["values"][-1]["type"] == "OperationalError"
        assert "a-session-cookie-value" not in json.dumps(event)
        _assert_scrubbed(sink.raw())
        assert web.process.log_text().count("OperationalError") >= 1, "the error is logged too"
        _assert_scrubbed(web.process.log_text().encode())


def test_task_started_by_beat_reports_error_and_check_ins(broken_env, tmp_path):
    with SentrySink() as sink:
        env = broken_env(sink.dsn)
        # Sentry Crons takes whole minutes only; beat's first sweep comes one interval in.
        env["RECONCILE_INTERVAL_S"] = "60"
        with celery_worker(env, tmp_path, concurrency=1) as worker, celery_beat(env, tmp_path):
            # Reconcile fails in the worker: no endpoint configured, no tables.
            events = sink.wait_for(
                lambda evs: [
                    e
                    for e in evs
                    if e.get("tags", {}).get("component") == "worker"
                    and e.get("exception")
                    and e.get("extra", {}).get("celery-job", {}).get("task_name")
                    == "tasks.reconcile"
                ],
                "from the reconcile task",
                timeout=100,
            )
            # Beat is monitored: its sweeps report cron check-ins (Sentry Crons).
            check_ins = sink.wait_for_check_ins("reconcile", timeout=30)
        assert events[0]["tags"]["task"] == "tasks.reconcile"
        assert {c["status"] for c in check_ins} & {"in_progress", "error", "ok"}
        _assert_scrubbed(sink.raw())
        _assert_scrubbed(worker.process.log_text().encode())
