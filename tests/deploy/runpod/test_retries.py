"""The job API's retry rules on a real HTTP server: reads are retried, ``/run`` is sent
again only when it never arrived or was refused with 429."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from deploy.runpod.jobapi import (
    Backoff,
    EndpointUnreachable,
    JobAPI,
    RateLimited,
    SubmitOutcomeUnknown,
)

FAST = Backoff(base=0.01, cap=0.02, attempts=4)


class Script:
    """Answers each request with the next planned status (the last one repeats)."""

    def __init__(self) -> None:
        self.plan: list[int | str] = [200]
        self.seen: list[str] = []

    def next(self) -> int | str:
        return self.plan.pop(0) if len(self.plan) > 1 else self.plan[0]


@pytest.fixture
def server() -> Iterator[tuple[str, Script]]:
    script = Script()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            script.seen.append(f"{self.command} {self.path}")
            answer = script.next()
            if answer == "hang up":
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            body = b'{"id": "j1", "status": "IN_QUEUE"}'
            self.send_response(int(answer))
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PATCH = _answer

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v2", script
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def test_reads_are_retried_on_5xx(server):
    url, script = server
    script.plan = [503, 502, 200]
    assert JobAPI("ep", "key", url, backoff=FAST).status("j1")["id"] == "j1"
    assert script.seen == ["GET /v2/ep/status/j1"] * 3


def test_a_single_attempt_client_asks_once(server):
    url, script = server
    script.plan = [503]
    with pytest.raises(EndpointUnreachable, match="503"):
        JobAPI("ep", "key", url, backoff=Backoff(attempts=1)).status("j1")
    assert len(script.seen) == 1


def test_run_is_never_resent_after_a_5xx(server):
    url, script = server
    script.plan = [500, 200]
    with pytest.raises(SubmitOutcomeUnknown):
        JobAPI("ep", "key", url, backoff=FAST).run({"x": 1})
    assert script.seen == ["POST /v2/ep/run"]


def test_run_is_never_resent_once_it_may_have_arrived(server):
    url, script = server
    script.plan = ["hang up", 200]
    with pytest.raises(SubmitOutcomeUnknown):
        JobAPI("ep", "key", url, backoff=FAST).run({"x": 1})
    assert script.seen == ["POST /v2/ep/run"]


def test_run_refused_with_429_is_sent_again(server):
    url, script = server
    script.plan = [429, 429, 200]
    assert JobAPI("ep", "key", url, backoff=FAST).run({"x": 1})["id"] == "j1"
    assert script.seen == ["POST /v2/ep/run"] * 3


def test_run_refused_every_time_says_rate_limited(server):
    url, script = server
    script.plan = [429]
    with pytest.raises(RateLimited):
        JobAPI("ep", "key", url, backoff=FAST).run({"x": 1})
    assert len(script.seen) == FAST.attempts


def test_cancel_is_retried_like_a_read(server):
    url, script = server
    script.plan = [503, 200]
    JobAPI("ep", "key", url, backoff=FAST).cancel("j1")
    assert script.seen == ["POST /v2/ep/cancel/j1"] * 2


def test_run_to_a_closed_port_never_arrived():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    api = JobAPI("ep", "key", f"http://127.0.0.1:{port}/v2", backoff=FAST)
    with pytest.raises(EndpointUnreachable, match="cannot reach"):
        api.run({"x": 1})


def test_management_reads_retry_and_writes_resend_only_refusals(server):
    from deploy.runpod.management import ManagementAPI, ManagementError

    url, script = server
    api = ManagementAPI("key", rest_url=url, graphql_url=url + "/graphql")
    script.plan = [503, 200]
    api.get_endpoint("ep")
    assert script.seen == ["GET /v2/serverless/ep"] * 2
    script.seen, script.plan = [], [503, 200]
    with pytest.raises(ManagementError, match="503"):
        api.update_endpoint("ep", {"name": "x"})
    assert script.seen == ["PATCH /v2/serverless/ep"]
    script.seen, script.plan = [], [429, 200]
    api.create_endpoint({"name": "x"})
    assert script.seen == ["POST /v2/serverless"] * 2
