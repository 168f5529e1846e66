"""A global budget for ``/status`` requests, shared by every Celery worker through Redis.

RunPod counts its limits per 10 s. The budget is enforced in 1-second windows of
``budget // 11`` requests each, so that *any* 10 seconds, however they fall across window
edges (at most 11 windows), stay under the budget; one atomic Lua script increments the
window's counter. The counter doubles as a ticket: the k-th refused caller in a window waits
``k // per_window`` more windows, so a backlog of 10,000 polls is spread over the windows it
needs instead of retrying every window, and each wait is jittered within its window so
refused polls do not stampede together.
"""

from __future__ import annotations

import random
import time

WINDOW_S = 1
WINDOWS_PER_BUDGET = 11  # a sliding 10 s span touches at most 11 one-second windows
MAX_WAIT_S = 600.0  # well under the broker's visibility timeout
_SCRIPT = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n
"""


class StatusBudget:
    def __init__(self, redis, per_10s: int, name: str = "status") -> None:
        self.per_10s = per_10s
        self.per_window = max(1, per_10s // WINDOWS_PER_BUDGET)
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
