"""A global budget for ``/status`` requests, shared by every Celery worker through Redis.

Fixed 10-second windows (RunPod counts its limits per 10 s): one atomic Lua script
increments the window's counter and refuses past the limit. A refused poll waits for the
next window, spread over it with jitter so refused polls do not stampede together.
"""

from __future__ import annotations

import random
import time

WINDOW_S = 10
_SCRIPT = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if n > tonumber(ARGV[1]) then return 0 end
return 1
"""


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
        if self._script(keys=[key], args=[self.limit, WINDOW_S * 2000]):
            return 0.0
        return (window + 1) * WINDOW_S - now + random.uniform(0, WINDOW_S)
