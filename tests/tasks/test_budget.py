"""The global /status budget, on a real Redis shared by several clients (as by workers)."""

from __future__ import annotations

import contextlib

import pytest

from app.budget import WINDOW_S, StatusBudget
from tests.support.services import redis_server


@pytest.fixture(scope="module")
def redis(tmp_path_factory):
    with redis_server(tmp_path_factory.mktemp("redis")) as server:
        with contextlib.closing(server.client()) as client:
            yield client


def test_budget_is_shared_and_spreads_the_backlog(redis):
    redis.flushdb()
    workers = [StatusBudget(redis, limit=50), StatusBudget(redis, limit=50)]
    now = 1_000_000 * WINDOW_S + 1.0  # one second into a window
    waits = [workers[i % 2].acquire(now=now) for i in range(250)]
    assert waits[:50] == [0.0] * 50, "the first 50 of the window go now"
    refused = waits[50:]
    assert all(w > 0 for w in refused)
    # 200 refused callers are spread over the next 4 windows, 50 per window.
    windows = [int((now + w) // WINDOW_S) - int(now // WINDOW_S) for w in refused]
    assert {n: windows.count(n) for n in set(windows)} == {1: 50, 2: 50, 3: 50, 4: 50}
    # The next window has its own 50.
    assert StatusBudget(redis, limit=50).acquire(now=now + WINDOW_S) == 0.0


def test_budget_survives_a_flushed_redis(redis):
    budget = StatusBudget(redis, limit=2)
    now = 2_000_000 * WINDOW_S
    assert [budget.acquire(now=now) > 0 for _ in range(3)] == [False, False, True]
    redis.flushdb()
    assert budget.acquire(now=now) == 0.0
