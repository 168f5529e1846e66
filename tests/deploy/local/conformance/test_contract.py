"""RunPod's documented contract around the job: rate limits (429), result retention,
policy bounds, the worker's environment, ``s3Config`` and the webhook body."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
import requests

from tests.deploy.local.conformance.conftest import endpoint

pytestmark = pytest.mark.timeout(120)

S3 = {
    "accessId": "AKIAEXAMPLE",
    "accessSecret": "s3-secret-value",
    "bucketName": "outputs",
    "endpointUrl": "https://s3.example.com",
}


@pytest.fixture(scope="module")
def ep(tmp_path_factory):
    with endpoint(
        tmp_path_factory.mktemp("contract"),
        "async",
        workers_min=1,
        idle_timeout=30,
        runsync_retention=2,
        webhook_retry_delay=0.2,
    ) as ep:
        yield ep


def test_purge_queue_is_limited_to_2_per_10_seconds(ep):
    answers = [ep.post("purge-queue") for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert "2 requests per 10 s" in answers[2].json()["error"]
    assert int(answers[2].headers["Retry-After"]) >= 1


def test_cancel_is_limited_to_100_per_10_seconds(ep):
    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda _: ep.post("cancel/nope").status_code, range(110)))
    assert codes.count(404) == 100 and codes.count(429) == 10


def test_no_rate_limits_flag_turns_429_off(tmp_path):
    with endpoint(tmp_path, "async", rate_limits=False) as ep:
        assert {ep.post("purge-queue").status_code for _ in range(5)} == {200}


@pytest.mark.parametrize(
    ("policy", "text"),
    [
        ({"executionTimeout": 4999}, "policy.executionTimeout must be between 5000 ms"),
        ({"ttl": 9999}, "policy.ttl must be between 10000 ms"),
        ({"ttl": 7 * 24 * 3600 * 1000 + 1}, "(7 days)"),
        ({"lowPriority": "yes"}, "policy.lowPriority must be true or false"),
    ],
)
def test_policy_outside_runpods_bounds_is_refused(ep, policy, text):
    resp = ep.post("run", json={"input": {"mode": "echo"}, "policy": policy})
    assert resp.status_code == 400 and text in resp.json()["error"]


def test_policy_at_runpods_minimums_is_accepted(ep):
    policy = {"executionTimeout": 5000, "ttl": 10000}
    job = ep.post("run", json={"input": {"mode": "echo"}, "policy": policy}).json()
    assert ep.wait_status(job["id"])["status"] == "COMPLETED"


def test_runsync_results_are_kept_shorter_than_run_results(ep):
    sync = ep.post("runsync", json={"input": {"mode": "echo"}}).json()
    assert sync["status"] == "COMPLETED" and sync["id"].startswith("sync-")
    run = ep.wait_status(ep.api().run({"mode": "echo"})["id"])
    ep.wait_for(lambda: ep.get(f"status/{sync['id']}").status_code == 404, 30, what="expiry")
    assert ep.get(f"status/{run['id']}").json()["status"] == "COMPLETED"


def test_worker_gets_runpods_environment_and_the_jobs_s3_config(ep):
    job = ep.post("run", json={"input": {"mode": "echo"}, "s3Config": S3}).json()
    final = ep.wait_status(job["id"])
    env = final["output"]["env"]
    assert env["RUNPOD_ENDPOINT_ID"] == ep.endpoint_id
    assert env["RUNPOD_POD_ID"] == final["workerId"]
    for name in ("RUNPOD_POD_HOSTNAME", "RUNPOD_WEBHOOK_GET_JOB", "RUNPOD_WEBHOOK_PING"):
        assert name in env
    assert final["output"]["s3Config"] == S3
    # The platform does nothing else with it: it is not in the status payload or the log.
    assert "s3Config" not in json.dumps({k: v for k, v in final.items() if k != "output"})
    assert S3["accessSecret"] not in ep.log_tail(500)


def test_bad_s3_config_is_refused(ep):
    resp = ep.post("run", json={"input": {}, "s3Config": {"accessId": 1}})
    assert resp.status_code == 400 and "'s3Config' must be an object" in resp.json()["error"]


class _Hook(BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):  # noqa: N802 - http.server's naming
        type(self).received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        return None


def test_webhook_body_is_the_status_with_input_and_webhook_and_the_token_stays_out_of_logs(ep):
    _Hook.received = []
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        # The app's webhook URLs carry their token in the path.
        hook = f"http://127.0.0.1:{server.server_port}/webhooks/job-1/tok3n-in-path?sig=q5ecret"
        job = ep.api().run({"mode": "raise"}, webhook=hook)
        ep.wait_for(lambda: _Hook.received, 30, what="the webhook")
        body = _Hook.received[0]
        assert body["id"] == job["id"] and body["status"] == "FAILED"
        assert body["webhook"] == hook and body["input"] == {"mode": "raise"}
        assert {"delayTime", "executionTime", "error"} <= set(body)
        log = ep.log_tail(500)
        assert "tok3n-in-path" not in log and "q5ecret" not in log
    finally:
        server.shutdown()
        server.server_close()


def test_unreachable_webhook_is_logged_without_its_token(ep):
    hook = "http://127.0.0.1:9/webhooks/job-2/s3cret-token"
    job = ep.api().run({"mode": "echo"}, webhook=hook)
    ep.wait_status(job["id"])
    ep.wait_for(lambda: "given up" in ep.log_tail(100), 30, what="the webhook to be given up")
    assert "s3cret-token" not in ep.log_tail(500)
    assert "http://127.0.0.1:9/" in ep.log_tail(500)


def test_requests_without_rate_limited_routes_are_not_counted(ep):
    codes = {
        requests.get(ep.url("health"), headers=ep.headers, timeout=10).status_code
        for _ in range(30)
    }
    assert codes == {200}
