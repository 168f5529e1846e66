"""RunPod's per-endpoint rate limits on the job API: requests per 10 s and concurrent.

From RunPod's documentation (reference/runpod-api.md, "Rate limits"). RunPod raises a
route's limit to ``running_workers x requests_per_worker`` when that is larger; it does
not publish ``requests_per_worker``, so only the base limits apply here.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

WINDOW_S = 10.0

# route -> (requests per window, concurrent requests or None for no cap)
RUNPOD_LIMITS: dict[str, tuple[int, int | None]] = {
    "runsync": (2000, 400),
    "run": (1000, 200),
    "status": (2000, 400),
    "stream": (2000, 400),
    "cancel": (100, 20),
    "purge-queue": (2, None),
}


class RateLimiter:
    """Sliding-window counts and in-flight counts per route."""

    def __init__(
        self,
        limits: dict[str, tuple[int, int | None]] | None = None,
        window: float = WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limits = RUNPOD_LIMITS if limits is None else limits
        self.window = window
        self.clock = clock
        self._seen: dict[str, deque[float]] = {}
        self._in_flight: dict[str, int] = {}
        self.refused = 0

    def acquire(self, route: str) -> str | None:
        """Admit one request (then call ``release``), or say why it is refused."""
        limit = self.limits.get(route)
        if limit is None:
            return None
        per_window, concurrent = limit
        now = self.clock()
        seen = self._seen.setdefault(route, deque())
        while seen and seen[0] <= now - self.window:
            seen.popleft()
        if len(seen) >= per_window:
            self.refused += 1
            wait = seen[0] + self.window - now
            return (
                f"rate limit: /{route} allows {per_window} requests per {self.window:g} s "
                f"per endpoint; retry in {wait:.1f} s"
            )
        if concurrent is not None and self._in_flight.get(route, 0) >= concurrent:
            self.refused += 1
            return (
                f"rate limit: /{route} allows {concurrent} concurrent requests per endpoint; "
                "retry when one has finished"
            )
        seen.append(now)
        self._in_flight[route] = self._in_flight.get(route, 0) + 1
        return None

    def release(self, route: str) -> None:
        if route in self._in_flight:
            self._in_flight[route] -= 1

    def retry_after(self, route: str) -> int:
        """Whole seconds until the oldest counted request leaves the window."""
        seen = self._seen.get(route)
        if not seen:
            return 1
        return max(1, int(seen[0] + self.window - self.clock()) + 1)
