"""A global budget for ``/status`` requests, shared by every Celery worker through Redis.

Fixed 10-second windows (RunPod counts its limits per 10 s): one atomic Lua script
increments the window's counter and refuses past the limit. The counter doubles as a ticket:
the k-th refused caller in a window waits ``k // limit`` more windows, so a backlog of
10,000 polls is spread over the windows it needs instead of retrying every window, and each
wait is jittered within its window so refused polls do not stampede together.
"""

from __future__ import annotations

import random
import time

WINDOW_S = 10
_SCRIPT = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return n
"""
MAX_WAIT_S = 600.0  # well under the broker's visibility timeout


class StatusBudget:
    def __init__(self, redis, limit: int, name: str = "status") -> None:
        self.limit = limit
        self.name = name
        self._script = redis.register_script(_SCRIPT)

    def acquire(self, now: float | None = None) -> float:
        """0 when a request may go now; otherwise the seconds to wait before trying again."""
        now = time.time() if now is None else now
        window = int(now // WINDOW_S)
        key = f"budget:{self.name}:{window}"
        ticket = int(self._script(keys=[key], args=[self.limit, WINDOW_S * 2000]))
        if ticket <= self.limit:
            return 0.0
        windows_ahead = (ticket - self.limit - 1) // max(self.limit, 1)
        wait = (window + 1 + windows_ahead) * WINDOW_S - now + random.uniform(0, WINDOW_S)
        return min(wait, MAX_WAIT_S)
