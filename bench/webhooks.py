"""The ``webhooks`` section of ``python -m bench pipeline`` (issue 20).

- ``delivery_ms``: from a job's completion at the app (the row's ``finished_at``) to the
  client's receiver on 127.0.0.1 reading the signed ``job.completed`` POST; p50/p99, jobs
  one at a time on a warm worker (target p50 <= 100 ms).
- ``job_latency_ms``: from ``POST /api/jobs`` to the row's ``finished_at``, for jobs without
  a webhook, in alternating blocks (six of each): with no deliveries pending, and while
  200 deliveries hang on a dead receiver (it accepts connections and never answers; their
  token is revoked after the block, which ends them); the ratio of the loaded p50 to the
  quiet p50 (target <= 1.1: deliveries have their own queue and worker). Alternating cancels
  some of the drift of a machine shared with other work.

Timestamps on both sides are wall-clock times of this one machine.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests

HANGING = 200


@contextlib.contextmanager
def receiver() -> Iterator[tuple[str, dict[str, float]]]:
    """A receiver that answers 204 at once; yields (URL, {job id: wall time received})."""
    arrivals: dict[str, float] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            at = time.time()
            self.send_response(204)
            self.end_headers()
            event = json.loads(body)
            if event.get("type") == "job.completed":
                arrivals.setdefault(event["data"]["id"], at)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", arrivals
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@contextlib.contextmanager
def dead_receiver() -> Iterator[str]:
    """A port that accepts connections (the kernel's backlog) and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(HANGING + 50)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/hook"
    finally:
        sock.close()


@contextlib.contextmanager
def token_rows(env: dict[str, str]) -> Iterator[Any]:
    """A session on the stack's database, for its named tokens."""
    from sqlalchemy.orm import Session

    from app.db import make_engine

    engine = make_engine(env["DATABASE_URL"])
    try:
        with Session(engine) as session:
            yield session
    finally:
        engine.dispose()


def make_token(env: dict[str, str], name: str) -> str:
    """A named token (webhooks are signed with one's secret), made in the stack's database."""
    from app.clients import tokens

    with token_rows(env) as session:
        return tokens.create(session, env["SECRET_KEY"], f"{name}-{time.time_ns()}").token


def revoke_token(env: dict[str, str], token: str) -> None:
    from app.clients import tokens
    from app.models import ApiToken

    with token_rows(env) as session:
        row = session.query(ApiToken).filter_by(token_hash=tokens.digest(token)).one()
        tokens.revoke(session, row.name)


def measure(s: Any, samples: int, percentiles: Any, wall: Any, cycles: int = 6) -> dict[str, Any]:
    """``s`` is bench.pipeline's Stack (with the deliveries worker); see the docstring."""
    token = make_token(s.env, "bench")

    def submit(webhook: str | None = None, by: str = token) -> tuple[str, float]:
        return s.submit(token=by, **({"webhook": webhook} if webhook else {}))

    def finished_at(job_id: str) -> float:
        with contextlib.closing(s.app_db()) as db:
            (value,) = db.execute("SELECT finished_at FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return wall(value)

    def job_latencies(count: int) -> list[float]:
        out = []
        for _ in range(count):
            job_id, sent = submit()
            if s.wait_terminal([job_id], timeout=120)[job_id] == "COMPLETED":
                out.append((finished_at(job_id) - sent) * 1000)
        return out

    def hang(dead: str) -> str:
        """200 deliveries hanging on ``dead``, under a token of their own: revoking it ends
        them (the attempts in flight time out, none follows)."""
        hanger = make_token(s.env, "bench-dead-receiver")
        auth = {"Authorization": f"Bearer {hanger}"}
        hung, _ = submit(dead, by=hanger)
        s.wait_terminal([hung], timeout=120)
        listing = s.web.url(f"/api/jobs/{hung}/webhooks")
        deadline = time.monotonic() + 30
        # The event is recorded just after the job's end is committed: wait for it.
        while not (found := requests.get(listing, headers=auth, timeout=30).json()["deliveries"]):
            if time.monotonic() > deadline:
                raise RuntimeError(f"job {hung} ended but recorded no webhook delivery")
            time.sleep(0.05)
        (message,) = found
        again = s.web.url(f"/api/jobs/{hung}/webhooks/{message['id']}/redeliver")
        for _ in range(HANGING - 1):
            requests.post(again, headers=auth, timeout=30)
        return hanger

    warm, _ = submit()
    s.wait_terminal([warm], timeout=180)
    delivery: list[float] = []
    with receiver() as (url, arrivals):
        for _ in range(samples):
            job_id, _sent = submit(url)
            if s.wait_terminal([job_id], timeout=120)[job_id] != "COMPLETED":
                continue
            deadline = time.monotonic() + 30
            while job_id not in arrivals and time.monotonic() < deadline:
                time.sleep(0.005)
            if job_id in arrivals:
                delivery.append((arrivals[job_id] - finished_at(job_id)) * 1000)

    # Quiet and loaded blocks alternate, so drift in the machine's other load falls on both.
    quiet: list[float] = []
    loaded: list[float] = []
    blocks: list[tuple[float | None, float | None]] = []
    block = max(samples // cycles, 1)
    timeout_s = float(s.env.get("CLIENT_WEBHOOK_TIMEOUT_S", "10"))
    with dead_receiver() as dead:
        for _ in range(cycles):
            calm = job_latencies(block)
            hanger = hang(dead)
            busy_block = job_latencies(block)
            quiet += calm
            loaded += busy_block
            blocks.append((percentiles(calm)["p50"], percentiles(busy_block)["p50"]))
            revoke_token(s.env, hanger)
            time.sleep(timeout_s + 3)
    base, busy = percentiles(quiet), percentiles(loaded)
    return {
        "delivery_ms": percentiles(delivery),
        "job_latency_ms": {"no_deliveries": base, f"{HANGING}_hanging_deliveries": busy},
        # Each cycle's (quiet p50, loaded p50): how much of the ratio is the machine's drift.
        "blocks_p50_ms": blocks,
        "job_latency_ratio_p50": (
            round(busy["p50"] / base["p50"], 3) if base["p50"] and busy["p50"] else None
        ),
    }
