"""The worker claims its attempt before running, and rides out an app outage (issue 9)."""

from __future__ import annotations

import json
import threading
import time
from http.server import ThreadingHTTPServer

import pytest

from deploy.stack.net import free_port
from gpu_worker.handler import reset_runtime, run_job
from tests.gpu_worker.conftest import sample_bytes
from tests.support.http_server import QuietHandler


class ClaimApp:
    """The app's claim route as the worker sees it: answers ``status`` and records claims."""

    def __init__(self, status: int = 200, port: int | None = None) -> None:
        self.status = status
        self.port = port or free_port()
        self.claims: list[dict] = []
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/callbacks/7/claim?exp=1&sig=SECRET"

    def start(self) -> None:
        app = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                app.claims.append(json.loads(body))
                answer = json.dumps({"claim": "x", "message": f"answered {app.status}"})
                self.send_body(app.status, answer.encode(), {"Content-Type": "application/json"})

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


@pytest.fixture
def claim_app():
    apps: list[ClaimApp] = []

    def make(status: int = 200, start: bool = True) -> ClaimApp:
        app = ClaimApp(status)
        apps.append(app)
        if start:
            app.start()
        return app

    yield make
    for app in apps:
        app.stop()


def _job(files, claim_url: str | None, **output) -> dict:
    files.files["in.bin"] = sample_bytes(5_000)
    payload = {
        "pipeline": "echo",
        "params": {"return_input": "v"},
        "inputs": {"v": files.url("files/in.bin")},
    }
    if output:
        payload["output"] = output
    if claim_url:
        payload["callbacks"] = {"claim": claim_url}
    return {"id": "rp-job-1", "input": payload}


@pytest.mark.parametrize(("status", "verdict"), [(409, "duplicate"), (410, "superseded")])
def test_a_refused_claim_ends_the_job_without_running_it(
    worker_env, files, claim_app, status, verdict
):
    app = claim_app(status)
    result = run_job(_job(files, app.url))
    assert result["error_kind"] == verdict and verdict in result["error"]
    assert app.claims == [{"runpod_id": "rp-job-1"}]
    assert files.gets == []  # nothing downloaded, nothing run


def test_the_claim_comes_first_and_then_the_job_runs(worker_env, files, claim_app):
    app = claim_app(200)
    result = run_job(_job(files, app.url))
    assert "error" not in result and app.claims == [{"runpod_id": "rp-job-1"}]
    assert [name for name, _ in files.gets] == ["in.bin"]


def test_the_claim_waits_out_an_app_restart(worker_env, files, claim_app, monkeypatch):
    monkeypatch.setenv("TRANSFER_DEADLINE_S", "60")
    monkeypatch.setenv("TRANSFER_ATTEMPTS", "2")
    reset_runtime()
    app = claim_app(200, start=False)  # the app is down: connection refused
    starter = threading.Timer(1.5, app.start)
    starter.start()
    try:
        result = run_job(_job(files, app.url))
    finally:
        starter.join()
    assert "error" not in result, result
    assert app.claims == [{"runpod_id": "rp-job-1"}]


def test_an_app_down_past_the_deadline_fails_the_job_unrun(worker_env, files, monkeypatch):
    monkeypatch.setenv("TRANSFER_DEADLINE_S", "1")
    reset_runtime()
    started = time.monotonic()
    result = run_job(_job(files, f"http://127.0.0.1:{free_port()}/callbacks/1/claim?sig=SECRET"))
    assert time.monotonic() - started >= 1  # it kept trying until the deadline
    assert result["error_kind"] == "app_unreachable"
    assert "the app was unreachable" in result["error"] and "not run" in result["error"]
    assert "SECRET" not in result["error"]
    assert files.gets == []


def test_a_result_upload_rides_out_an_outage_longer_than_the_attempts(
    worker_env, files, monkeypatch
):
    monkeypatch.setenv("TRANSFER_DEADLINE_S", "60")
    monkeypatch.setenv("TRANSFER_ATTEMPTS", "2")
    reset_runtime()
    files.put_failures = 5  # five 503s in a row: more than twice the attempts
    put = files.url("upload/result.bin?X-Signature=SECRET")
    result = run_job(_job(files, None, put_url=put, content_type="application/x-test"))
    assert "error" not in result, result
    assert files.uploads["result.bin"] == sample_bytes(5_000)


def test_storage_down_past_the_deadline_is_marked_for_the_app(worker_env, files, monkeypatch):
    monkeypatch.setenv("TRANSFER_DEADLINE_S", "0.5")
    reset_runtime()
    files.put_failures = 10_000
    put = files.url("upload/result.bin?X-Signature=SECRET")
    result = run_job(_job(files, None, put_url=put, content_type="application/x-test"))
    assert result["error_kind"] == "storage_unreachable"
    assert "could not upload" in result["error"] and "SECRET" not in result["error"]


def test_a_refused_upload_fails_at_once(worker_env, files, monkeypatch):
    monkeypatch.setenv("TRANSFER_DEADLINE_S", "60")
    reset_runtime()
    put = files.url("elsewhere/result.bin?X-Signature=SECRET")  # the server answers 403
    result = run_job(_job(files, None, put_url=put, content_type="application/x-test"))
    assert "refused the upload with 403" in result["error"]
    assert "error_kind" not in result  # not an outage: no automatic retry either
