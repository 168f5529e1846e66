"""A worker's billed life, recorded as it happens: what RunPod bills and only the
local endpoint knows to the millisecond.

RunPod bills a worker from its start to its stop: container start and model load (start
to ready), each job, the idle time between and after jobs (up to the idle timeout), and
the stop. ``WorkerLife`` keeps those instants (wall-clock seconds) and splits the billed
seconds into parts an app can attribute: start-up to the job that woke the worker, each
job span to its job, the rest to idle. Plain data, no clock of its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Span:
    job_id: str
    start: float
    end: float | None = None


@dataclass
class WorkerLife:
    started_at: float
    ready_at: float | None = None  # its first job-take: the SDK is up and the model loaded
    spans: list[Span] = field(default_factory=list)
    stop_requested_at: float | None = None
    stop_reason: str = ""
    exited_at: float | None = None
    exit_code: int | None = None

    def job_started(self, job_id: str, now: float) -> None:
        self.spans.append(Span(job_id, now))

    def job_ended(self, job_id: str, now: float) -> None:
        for span in reversed(self.spans):
            if span.job_id == job_id and span.end is None:
                span.end = now
                return

    def exited(self, code: int, now: float) -> None:
        self.exited_at = now
        self.exit_code = code
        for span in self.spans:
            if span.end is None:
                span.end = now

    def billed(self, now: float) -> dict[str, Any]:
        """Seconds billed so far (to ``now`` while alive) and their parts."""
        end = self.exited_at if self.exited_at is not None else now
        total = max(0.0, end - self.started_at)
        startup = max(0.0, (self.ready_at if self.ready_at is not None else end) - self.started_at)
        busy = _union([(s.start, s.end if s.end is not None else end) for s in self.spans])
        return {
            "billedSeconds": round(total, 3),
            "startupSeconds": round(startup, 3),
            "jobSeconds": round(busy, 3),
            "idleSeconds": round(max(0.0, total - startup - busy), 3),
            # Start-up goes to the job that woke the worker: its first job.
            "wokenBy": self.spans[0].job_id if self.spans else None,
        }

    def describe(self, now: float) -> dict[str, Any]:
        return {
            "startedAt": self.started_at,
            "readyAt": self.ready_at,
            "stopRequestedAt": self.stop_requested_at,
            "stopReason": self.stop_reason,
            "exitedAt": self.exited_at,
            "exitCode": self.exit_code,
            "jobs": [
                {
                    "jobId": s.job_id,
                    "startedAt": s.start,
                    "endedAt": s.end,
                    "seconds": round((s.end if s.end is not None else now) - s.start, 3),
                }
                for s in self.spans
            ],
            **self.billed(now),
        }


def _union(intervals: list[tuple[float, float]]) -> float:
    """Seconds covered by the intervals (a worker may run several jobs at once)."""
    covered = 0.0
    reach = float("-inf")
    for start, end in sorted(intervals):
        start = max(start, reach)
        if end > start:
            covered += end - start
            reach = end
    return covered
