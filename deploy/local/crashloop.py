"""Crash-loop accounting: workers that die before taking a job, and the restart backoff.

As on RunPod, such workers are reported unhealthy and started again with a growing
delay while the jobs wait IN_QUEUE. Failing the queued jobs instead is a departure
(``--fail-fast-crash-loop``) that tests and impatient developers can ask for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from deploy.runpod.vocabulary import CRASH_LOOP_ERROR

FIRST_BACKOFF_S = 0.5
MAX_BACKOFF_S = 30.0


@dataclass
class CrashLoop:
    threshold: int = 3
    consecutive: int = 0
    active: bool = False
    last_error: str = ""
    log_tail: list[str] = field(default_factory=list)
    next_spawn_at: float = 0.0

    def record(self, error: str, log_tail: list[str], now: float) -> bool:
        """Count one worker that died before taking a job; True while a crash loop is on."""
        self.consecutive += 1
        self.last_error = error
        self.log_tail = log_tail
        backoff = min(MAX_BACKOFF_S, FIRST_BACKOFF_S * 2 ** (self.consecutive - 1))
        self.next_spawn_at = now + backoff
        if self.consecutive >= self.threshold:
            self.active = True
        return self.active

    def reset(self) -> bool:
        """A worker took a job: the loop (if any) is over. True if there was one to end."""
        had = bool(self.consecutive or self.active)
        self.consecutive = 0
        self.active = False
        self.last_error = ""
        self.log_tail = []
        self.next_spawn_at = 0.0
        return had

    def reason(self) -> str:
        """Why queued jobs fail under ``--fail-fast-crash-loop``, with what to do next."""
        last_lines = "\n".join(self.log_tail[-10:])
        return (
            f"{CRASH_LOOP_ERROR}: {self.consecutive} workers in a row exited before "
            f"taking a job; last {self.last_error}. Fix the worker (see `python -m deploy "
            f"workers` and the worker logs), then resubmit. Last log lines:\n{last_lines}"
        )

    def describe(self) -> dict[str, Any]:
        return {
            "active": self.active,
            "consecutiveCrashes": self.consecutive,
            "lastError": self.last_error,
            "logTail": self.log_tail,
        }
