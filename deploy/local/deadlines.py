"""The deadline heap: execution timeouts, ttl and result retention, soonest first.

Each entry carries a token (the job's attempt or retry count when it was pushed), so a
deadline left over from an earlier attempt is recognised and ignored when it comes due.
"""

from __future__ import annotations

import heapq
import itertools
from typing import Any, NamedTuple

EXEC = "exec"
TTL = "ttl"
RETENTION = "retention"


class Due(NamedTuple):
    kind: str
    job_id: str
    token: int


class Deadlines:
    def __init__(self) -> None:
        self._heap: list[tuple[float, int, str, str, int]] = []
        self._tiebreak = itertools.count()

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, when: float, kind: str, job_id: str, token: int = 0) -> None:
        heapq.heappush(self._heap, (when, next(self._tiebreak), kind, job_id, token))

    def pop_due(self, now: float) -> list[Due]:
        due = []
        while self._heap and self._heap[0][0] <= now:
            _, _, kind, job_id, token = heapq.heappop(self._heap)
            due.append(Due(kind, job_id, token))
        return due

    def next_at(self) -> float | None:
        return self._heap[0][0] if self._heap else None


def execution_timeout_s(policy: dict[str, Any], default_s: float) -> float:
    """The job's execution timeout: ``policy.executionTimeout`` (ms) or the endpoint's."""
    ms = policy.get("executionTimeout")
    return ms / 1000 if ms else default_s


def ttl_s(policy: dict[str, Any]) -> float | None:
    """The job's ttl in seconds (queue time plus run time), if it has one."""
    ms = policy.get("ttl")
    return ms / 1000 if ms else None
