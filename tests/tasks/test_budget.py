"""The global /status budget, on a real Redis shared by several clients (as by workers)."""

from __future__ import annotations

import contextlib
import random

import pytest

from app.lifecycle.status_budget import SKEW_S, StatusBudget
from deploy.stack.services import redis_server


@pytest.fixture(scope="module")
def redis(tmp_path_factory):
    with redis_server(tmp_path_factory.mktemp("redis")) as server:
        with contextlib.closing(server.client()) as client:
            yield client


def test_backlog_is_spread_over_the_windows_it_needs(redis):
    redis.flushdb()
    workers = [StatusBudget(redis, per_10s=120), StatusBudget(redis, per_10s=120)]
    now = 1_000_000.25
    waits = [workers[i % 2].acquire(now=now) for i in range(50)]
    assert waits[:10] == [0.0] * 10, "10 per second go now"
    seconds = [int(now + w) - int(now) for w in waits[10:]]
    assert {n: seconds.count(n) for n in set(seconds)} == {1: 10, 2: 10, 3: 10, 4: 10}


def test_no_ten_seconds_exceed_the_budget(redis):
    """Callers retrying when told, at random moments, each request reaching the endpoint up
    to SKEW_S after its ticket: any sliding 10 s at the endpoint stays in budget."""
    redis.flushdb()
    budget = StatusBudget(redis, per_10s=200)
    rng = random.Random(7)
    pending = sorted(2_000_000 + rng.uniform(0, 20) for _ in range(3000))
    sent: list[float] = []
    while pending:
        at = pending.pop(0)
        wait = budget.acquire(now=at)
        if wait:
            pending.append(at + wait)
            pending.sort()
        else:
            sent.append(at + rng.uniform(0, SKEW_S))
    sent.sort()
    j = 0
    worst = 0
    for i, start in enumerate(sent):
        while j < len(sent) and sent[j] < start + 10:
            j += 1
        worst = max(worst, j - i)
    assert worst <= 200
    assert len(sent) == 3000, "every caller got through eventually"


def test_budget_survives_a_flushed_redis(redis):
    budget = StatusBudget(redis, per_10s=24)
    now = 3_000_000.0
    assert [budget.acquire(now=now) > 0 for _ in range(3)] == [False, False, True]
    redis.flushdb()
    assert budget.acquire(now=now) == 0.0
