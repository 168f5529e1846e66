"""A worker's billed life, recorded as it happens: what RunPod bills and only the
local endpoint knows to the millisecond.

RunPod bills a worker from its start to its stop: container start and model load (start
to ready), each job, the idle time between and after jobs (up to the idle timeout), and
the stop. ``WorkerLife`` keeps those instants (wall-clock seconds) and splits the billed
seconds into parts an app can attribute: start-up to the job that woke the worker, each
job span to its job, the rest to idle. Plain data, no clock of its own.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

IDLE = "idle"


@dataclass
class Span:
    job_id: str
    start: float
    end: float | None = None


@dataclass
class WorkerLife:
    started_at: float
    worker_id: str = ""
    endpoint: str = ""
    gpu: str | None = None
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

    def last_seen(self) -> float:
        """The latest instant the record knows of (for a worker whose endpoint died)."""
        times = [self.started_at, self.ready_at, self.stop_requested_at]
        times += [t for s in self.spans for t in (s.start, s.end)]
        return max(t for t in times if t is not None)

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

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> WorkerLife:
        data = json.loads(text)
        data["spans"] = [Span(**s) for s in data.get("spans", [])]
        return cls(**data)

    def attribute(self, now: float) -> dict[str, float]:
        """Every billed second to a job id or to ``IDLE``; the parts sum to the bill.

        Start-up (start to ready) goes to the job that woke the worker (its first job),
        each job's span to that job (time shared by concurrent jobs split evenly), the
        rest (between jobs, after the last one, a worker that never took a job) to idle.
        """
        end = self.exited_at if self.exited_at is not None else now
        parts: dict[str, float] = {}

        def add(key: str, seconds: float) -> None:
            if seconds > 0:
                parts[key] = parts.get(key, 0.0) + seconds

        ready = min(self.ready_at if self.ready_at is not None else end, end)
        add(self.spans[0].job_id if self.spans else IDLE, ready - self.started_at)
        spans = [
            (s.job_id, max(s.start, ready), min(s.end if s.end is not None else end, end))
            for s in self.spans
        ]
        cuts = sorted({ready, end, *(t for _, a, b in spans for t in (a, b) if ready <= t <= end)})
        for a, b in zip(cuts, cuts[1:], strict=False):
            active = [
                job for job, start, stop in spans if start <= a and stop >= b and stop > start
            ]
            if not active:
                add(IDLE, b - a)
            for job in active:
                add(job, (b - a) / len(active))
        return {k: round(v, 6) for k, v in parts.items()}

    def describe(self, now: float) -> dict[str, Any]:
        return {
            "workerId": self.worker_id,
            "endpoint": self.endpoint,
            "gpu": self.gpu,
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
            "attributed": self.attribute(now),
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


def bill(lives: list[WorkerLife], now: float) -> dict[str, Any]:
    """The endpoint's bill: each worker's record, and the seconds attributed to each job
    and to idle over all of them (they sum to ``billedSeconds``)."""
    jobs: dict[str, float] = {}
    for life in lives:
        for key, seconds in life.attribute(now).items():
            jobs[key] = jobs.get(key, 0.0) + seconds
    idle = jobs.pop(IDLE, 0.0)
    return {
        "workers": [life.describe(now) for life in lives],
        "jobs": {k: round(v, 6) for k, v in jobs.items()},
        "idleSeconds": round(idle, 6),
        "billedSeconds": round(sum(life.billed(now)["billedSeconds"] for life in lives), 3),
    }
