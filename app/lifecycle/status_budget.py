"""A global budget for ``/status`` requests, shared by every Celery worker through Redis.

RunPod counts its limits per 10 s, at the endpoint, over any 10 seconds. The budget hands out
tickets in 1-second windows of ``budget // 12`` each: a granted request reaches the endpoint
a moment after its ticket (the HTTP send; we allow up to ``SKEW_S`` = 1 s), so the requests
the endpoint sees in any 10 s hold tickets from at most 12 consecutive windows, and
``12 * (budget // 12) <= budget``. (With ``budget // 11`` per window, as before, a request
granted at the end of one window and arriving in the next could push a 10 s span over.)

One atomic Lua script increments the window's counter. The counter doubles as a ticket: the
k-th refused caller in a window waits ``k // per_window`` more windows, so a backlog of
10,000 polls is spread over the windows it needs instead of retrying every window, and each
wait is jittered within its window so refused polls do not stampede together.

Every ``/status`` request the app makes spends exactly one ticket: polls go through
``app.lifecycle.polling.poll`` with a job-API client that never retries by itself
(``app.services.Services.status_api``); a retry is the next poll, which asks the budget again.
"""

from __future__ import annotations

import random
import time

WINDOW_S = 1
SKEW_S = 1  # a granted request reaches the endpoint at most this long after its ticket
# A sliding 10 s at the endpoint holds tickets from a span of 10 s + SKEW_S, which touches
# at most 12 one-second windows.
WINDOWS_PER_BUDGET = 10 // WINDOW_S + SKEW_S // WINDOW_S + 1
MAX_WAIT_S = 600.0  # well under the broker's visibility timeout
_SCRIPT = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n
"""


def per_window(per_10s: int) -> int:
    """Requests granted per 1-second window for a budget of ``per_10s``."""
    return max(1, per_10s // WINDOWS_PER_BUDGET)


def pace(per_10s: int) -> float:
    """The most ``/status`` requests per second the budget lets through, sustained."""
    return per_window(per_10s) / WINDOW_S


class StatusBudget:
    def __init__(self, redis, per_10s: int, name: str = "status") -> None:
        self.per_10s = per_10s
        self.per_window = per_window(per_10s)
        self.name = name
        self._script = redis.register_script(_SCRIPT)

    def acquire(self, now: float | None = None) -> float:
        """0 when a request may go now; otherwise the seconds to wait before trying again."""
        now = time.time() if now is None else now
        window = int(now // WINDOW_S)
        key = f"budget:{self.name}:{window}"
        ticket = int(self._script(keys=[key], args=[WINDOW_S * 5000]))
        if ticket <= self.per_window:
            return 0.0
        windows_ahead = (ticket - self.per_window - 1) // self.per_window
        wait = (window + 1 + windows_ahead) * WINDOW_S - now + random.uniform(0, WINDOW_S)
        return min(wait, MAX_WAIT_S)
