"""The local endpoint's pure parts: rate limits, body rules, deadlines, crash-loop
backoff, webhook redaction, and a state dir written before ``s3Config`` was kept."""

from __future__ import annotations

import sqlite3

import pytest

from deploy.local.bodies import MAX_DEPTH, BadBody, nesting_depth, parse_json
from deploy.local.crashloop import MAX_BACKOFF_S, CrashLoop
from deploy.local.deadlines import EXEC, TTL, Deadlines, execution_timeout_s, ttl_s
from deploy.local.limits import RateLimiter
from deploy.local.store import Store
from deploy.redaction import url_origin


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_rate_limiter_counts_a_sliding_window_per_route():
    clock = Clock()
    limiter = RateLimiter({"purge-queue": (2, None)}, window=10, clock=clock)
    assert limiter.acquire("purge-queue") is None
    clock.now += 4
    assert limiter.acquire("purge-queue") is None
    refusal = limiter.acquire("purge-queue")
    assert refusal and "2 requests per 10 s" in refusal and "retry in 6.0 s" in refusal
    assert limiter.retry_after("purge-queue") == 7
    clock.now += 6  # the first request leaves the window
    assert limiter.acquire("purge-queue") is None
    assert limiter.acquire("health") is None  # not a limited route


def test_rate_limiter_caps_concurrent_requests():
    limiter = RateLimiter({"cancel": (100, 2)}, clock=Clock())
    assert limiter.acquire("cancel") is None and limiter.acquire("cancel") is None
    assert "2 concurrent" in limiter.acquire("cancel")
    limiter.release("cancel")
    assert limiter.acquire("cancel") is None


def test_nesting_depth_without_recursion():
    assert nesting_depth(1) == 0
    assert nesting_depth({"a": [1, {"b": []}]}) == 4
    deep: list = []
    for _ in range(10_000):
        deep = [deep]
    assert nesting_depth(deep) > MAX_DEPTH  # stops early, never a RecursionError


@pytest.mark.parametrize(
    ("raw", "text"),
    [(b"{", "not valid JSON"), (b"[" * 101 + b"]" * 101, "nests deeper"), (b"\xff", "not valid")],
)
def test_parse_json_refuses_with_400(raw, text):
    with pytest.raises(BadBody) as exc:
        parse_json(raw)
    assert exc.value.status == 400 and text in str(exc.value)


def test_deadlines_pop_in_order_and_carry_their_token():
    heap = Deadlines()
    heap.push(5, TTL, "b")
    heap.push(3, EXEC, "a", 2)
    assert heap.next_at() == 3
    assert heap.pop_due(4) == [(EXEC, "a", 2)]
    assert heap.pop_due(10) == [(TTL, "b", 0)] and heap.next_at() is None


def test_policy_times():
    assert execution_timeout_s({"executionTimeout": 5000}, 600) == 5
    assert execution_timeout_s({}, 600) == 600
    assert ttl_s({"ttl": 10_000}) == 10 and ttl_s({}) is None


def test_crash_loop_backs_off_and_ends_when_a_worker_takes_a_job():
    loop = CrashLoop(threshold=3)
    assert loop.record("exit code 2: file not found", ["line"], now=0) is False
    assert loop.next_spawn_at == 0.5
    loop.record("exit code 2: file not found", [], now=10)
    assert loop.next_spawn_at == 11
    assert loop.record("exit code 2: file not found", [], now=20) is True
    for _ in range(20):
        loop.record("x", [], now=0)
    assert loop.next_spawn_at == MAX_BACKOFF_S
    assert "crash-looping" in loop.reason() and "python -m deploy workers" in loop.reason()
    assert loop.reset() is True and not loop.active and loop.next_spawn_at == 0


@pytest.mark.parametrize(
    "url",
    [
        "https://app.example.com/webhooks/job-1/SECRET",
        "http://10.0.0.1:8080/hook?token=SECRET",
        "https://user:SECRET@app.example.com/x",
    ],
)
def test_redacted_webhook_urls_keep_only_scheme_and_host(url):
    assert "SECRET" not in url_origin(url)
    assert url_origin(url).startswith(url.split(":", 1)[0] + "://")


def test_state_dir_from_before_s3_config_still_opens(tmp_path):
    db = sqlite3.connect(tmp_path / "jobs.sqlite3")
    db.execute(
        "CREATE TABLE jobs (id TEXT PRIMARY KEY, seq INTEGER NOT NULL, status TEXT NOT NULL,"
        " input TEXT NOT NULL, webhook TEXT, policy TEXT, output TEXT, error TEXT,"
        " worker_id TEXT, created_at REAL NOT NULL, started_at REAL, finished_at REAL,"
        " requeues INTEGER NOT NULL DEFAULT 0, retried INTEGER NOT NULL DEFAULT 0)"
    )
    db.execute(
        "INSERT INTO jobs (id, seq, status, input, created_at) VALUES ('j', 1, 'IN_QUEUE', '{}', 0)"
    )
    db.commit()
    db.close()
    store = Store(tmp_path / "jobs.sqlite3")
    try:
        (job,) = store.load_jobs()
        assert job["id"] == "j" and job["s3_config"] is None
    finally:
        store.close()


def test_store_keeps_inputs_and_outputs_apart_from_status_changes(tmp_path):
    store = Store(tmp_path / "jobs.sqlite3")
    try:
        rec = {"id": "j", "seq": 1, "status": "IN_QUEUE", "input": {"blob": "x" * 1000}}
        store.save_job(rec | {"created_at": 0})
        store.update_job("j", status="IN_PROGRESS", worker_id="w1")
        store.update_job("j", status="COMPLETED", output={"n": 1}, finished_at=2.0)
        (job,) = store.load_jobs()
        assert job["input"] == rec["input"] and job["output"] == {"n": 1}
        assert job["status"] == "COMPLETED" and job["worker_id"] == "w1"
        store.update_job("j", status="IN_QUEUE", output=None)  # a retry clears the output
        assert store.load_jobs()[0]["output"] is None
        store.delete_jobs(["j"])
        assert store.load_jobs() == []
        assert store.db.execute("SELECT COUNT(*) FROM job_payloads").fetchone() == (0,)
    finally:
        store.close()
