"""Bad requests get a clear 4xx and change nothing; webhooks, retention, ttl, disabled mode."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
import requests

from deploy.runpod.jobapi import EndpointNotFound, JobNotFound
from deploy.stack.local_endpoint import local_endpoint
from tests.deploy.local.conftest import sdk_worker_command

pytestmark = pytest.mark.timeout(120)

BIG = "x" * (10 * 1024 * 1024 + 10)


@pytest.fixture(scope="module")
def idle_endpoint(tmp_path_factory):
    """An endpoint whose worker never starts: every job it accepts would stay queued."""
    with local_endpoint(
        tmp_path_factory.mktemp("bad-requests"),
        worker_command="sleep 600",
        crash_loop_threshold=100,
        stop_grace=0.5,
        min_ttl=1,
    ) as ep:
        yield ep


CASES = [
    # (method, route, kwargs, status, text in the message)
    ("POST", "run", {"data": b"{not json"}, 400, "not valid JSON"),
    ("POST", "run", {"json": [1, 2]}, 400, "JSON object"),
    ("POST", "run", {"json": {}}, 400, "missing 'input'"),
    ("POST", "run", {"json": {"input": "text"}}, 400, "'input' must be a JSON object"),
    ("POST", "run", {"json": {"input": {}, "webhook": "ftp://x"}}, 400, "http(s) URL"),
    ("POST", "run", {"json": {"input": {}, "policy": {"ttl": "soon"}}}, 400, "policy.ttl"),
    ("POST", "run", {"json": {"input": {}, "policy": {"executionTimeout": 4999}}}, 400, "5000 ms"),
    ("POST", "run", {"json": {"input": {"blob": BIG}}}, 413, "over 10 MB"),
    ("POST", "runsync?wait=soon", {"json": {"input": {}}}, 400, "milliseconds"),
    ("GET", "run", {}, 405, "use POST"),
    ("DELETE", "status/abc", {}, 405, "use GET"),
    ("GET", "status/nope", {}, 404, "request does not exist"),
    ("GET", "status/a%20b", {}, 400, "ids are"),
    ("GET", "status/..%2F..%2Fetc", {}, 400, "ids are"),
    ("GET", "status/" + "a" * 200, {}, 400, "ids are"),
    ("POST", "cancel/nope", {}, 404, "request does not exist"),
    ("POST", "retry/nope", {}, 404, "request does not exist"),
    ("GET", "stream/nope", {}, 404, "request does not exist"),
    ("GET", "workers/nope/logs", {}, 404, "no worker"),
    ("GET", "workers/nope/logs?lines=x", {}, 400, "whole number"),
]


def _snapshot(ep):
    return ep.api().health()["jobs"], ep.get("stats").json()["jobs"]


@pytest.mark.parametrize(("method", "route", "kwargs", "status", "text"), CASES)
def test_bad_request_gets_clear_4xx_and_changes_nothing(
    idle_endpoint, method, route, kwargs, status, text
):
    before = _snapshot(idle_endpoint)
    resp = requests.request(
        method, idle_endpoint.url(route), headers=idle_endpoint.headers, timeout=30, **kwargs
    )
    assert resp.status_code == status, resp.text
    assert text in resp.json()["error"]
    assert _snapshot(idle_endpoint) == before


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Bearer "}, {"X-Key": "k"}],
)
def test_missing_or_wrong_key_is_401(idle_endpoint, headers):
    before = _snapshot(idle_endpoint)
    resp = requests.post(idle_endpoint.url("run"), json={"input": {}}, headers=headers, timeout=5)
    assert resp.status_code == 401
    assert "API key" in resp.json()["error"]
    assert _snapshot(idle_endpoint) == before


def test_bare_key_is_accepted_like_runpods_curl_examples(idle_endpoint):
    resp = requests.get(
        idle_endpoint.url("health"), headers={"Authorization": idle_endpoint.api_key}, timeout=5
    )
    assert resp.status_code == 200


def test_unknown_endpoint_id_is_runpods_not_found(idle_endpoint):
    resp = requests.get(
        f"{idle_endpoint.base_url}/other/health", headers=idle_endpoint.headers, timeout=5
    )
    assert resp.status_code == 404 and resp.json() == {"message": "Not Found"}
    with pytest.raises(EndpointNotFound):
        type(idle_endpoint.api())("other", idle_endpoint.api_key, idle_endpoint.base_url).health()


def test_worker_routes_refuse_the_client_key_and_other_workers_keys(idle_endpoint):
    for headers in ({}, {"Authorization": idle_endpoint.api_key}, {"Authorization": "x"}):
        resp = requests.get(
            idle_endpoint.url("job-take/wsomeone?gpu=cpu"), headers=headers, timeout=5
        )
        assert resp.status_code == 401


def test_oversized_runsync_is_413(idle_endpoint):
    body = json.dumps({"input": {"blob": "y" * (20 * 1024 * 1024 + 1)}})
    resp = idle_endpoint.post("runsync", data=body)
    assert resp.status_code == 413 and "over 20 MB" in resp.json()["error"]


def test_disabled_endpoint_answers_not_found_to_everything(tmp_path):
    with local_endpoint(tmp_path, disabled=True) as ep:
        for method, route in (("GET", "health"), ("POST", "run"), ("GET", "status/x")):
            resp = requests.request(method, ep.url(route), headers=ep.headers, timeout=5)
            assert resp.status_code == 404 and resp.json() == {"message": "Not Found"}
        with pytest.raises(EndpointNotFound):
            ep.api().run({"pipeline": "echo"})


class _Hook(BaseHTTPRequestHandler):
    received: list = []
    fail_first = 1

    def do_POST(self):  # noqa: N802 - http.server's naming
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).received.append(body)
        ok = len(type(self).received) > type(self).fail_first
        self.send_response(200 if ok else 500)
        self.end_headers()

    def log_message(self, *args):
        return None


def test_webhook_gets_the_status_payload_and_is_retried(tmp_path):
    _Hook.received = []
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with local_endpoint(
            tmp_path, worker_command=sdk_worker_command(), webhook_retry_delay=0.2, retention=2
        ) as ep:
            hook = f"http://127.0.0.1:{server.server_port}/hook?token=abc"
            job = ep.api().run({"mode": "echo", "n": 7}, webhook=hook)
            ep.wait_for(lambda: len(_Hook.received) >= 2, timeout=20, what="2 webhook posts")
            first, second = _Hook.received[:2]
            assert first == second
            assert second["id"] == job["id"] and second["status"] == "COMPLETED"
            assert second["output"]["echo"]["n"] == 7
            assert {"delayTime", "executionTime", "workerId"} <= set(second)
            assert "abc" not in ep.log_tail(200)
            # Results are kept for --retention seconds, then the job is gone.
            ep.wait_for(
                lambda: ep.get(f"status/{job['id']}").status_code == 404,
                timeout=10,
                what="retention to expire",
            )
            with pytest.raises(JobNotFound):
                ep.api().status(job["id"])
            time.sleep(0.5)
            assert len(_Hook.received) == 2
    finally:
        server.shutdown()
        server.server_close()


def test_ttl_expires_a_queued_job(idle_endpoint):
    job = idle_endpoint.api().run({"pipeline": "echo"}, policy={"ttl": 1000})
    assert idle_endpoint.get(f"status/{job['id']}").json()["status"] == "IN_QUEUE"
    idle_endpoint.wait_for(
        lambda: idle_endpoint.get(f"status/{job['id']}").status_code == 404,
        timeout=10,
        what="ttl to expire",
    )
