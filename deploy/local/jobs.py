"""A job on the local endpoint: its fields, its status payload, and the allowed transitions."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from deploy.runpod.vocabulary import (
    CANCELLED,
    COMPLETED,
    FAILED,
    IN_PROGRESS,
    IN_QUEUE,
    TERMINAL,
    TIMED_OUT,
)

# Which status may follow which. A retry is the one way back from a terminal state.
TRANSITIONS: dict[str, frozenset[str]] = {
    IN_QUEUE: frozenset({IN_PROGRESS, CANCELLED, FAILED, TIMED_OUT}),
    IN_PROGRESS: frozenset({IN_QUEUE, COMPLETED, FAILED, CANCELLED, TIMED_OUT}),
    COMPLETED: frozenset(),
    FAILED: frozenset({IN_QUEUE}),
    CANCELLED: frozenset(),
    TIMED_OUT: frozenset({IN_QUEUE}),
}

# What ``Job.record()`` holds: the fields the store persists, one column each.
RECORD_FIELDS = (
    "id",
    "endpoint",
    "seq",
    "status",
    "input",
    "webhook",
    "policy",
    "s3_config",
    "output",
    "error",
    "worker_id",
    "created_at",
    "started_at",
    "finished_at",
    "requeues",
    "retried",
)


class Job:
    """In-memory job; ``record()`` is what the store persists."""

    __slots__ = (
        *RECORD_FIELDS,
        "progress",
        "stream",
        "stream_pos",
        "done",
        "attempt",
        "enqueued_mono",
        "timings",
        "is_stream",
    )

    def __init__(self, rec: dict[str, Any]) -> None:
        self.id: str = rec["id"]
        self.endpoint: str = rec.get("endpoint") or ""
        self.seq: int = rec["seq"]
        self.status: str = rec["status"]
        self.input: dict[str, Any] = rec["input"]
        self.webhook: str | None = rec.get("webhook")
        self.policy: dict[str, Any] = rec.get("policy") or {}
        # Passed to the worker as the job's ``s3Config``; never shown in a status payload.
        self.s3_config: dict[str, Any] | None = rec.get("s3_config")
        self.output: Any = rec.get("output")
        self.error: str | None = rec.get("error")
        self.worker_id: str | None = rec.get("worker_id")
        self.created_at: float = rec["created_at"]
        self.started_at: float | None = rec.get("started_at")
        self.finished_at: float | None = rec.get("finished_at")
        self.requeues: int = rec.get("requeues") or 0
        self.retried: int = rec.get("retried") or 0
        self.progress: Any = None
        self.stream: list[Any] = []
        self.stream_pos = 0
        self.done: asyncio.Event | None = None
        self.attempt = 0
        self.enqueued_mono = time.monotonic()
        # perf_counter stamps: received, enqueued, take (the worker's request), handed,
        # result, answered. The benchmark derives the endpoint's own overhead from them.
        self.timings: dict[str, float] = {}
        self.is_stream = False

    def record(self) -> dict[str, Any]:
        rec = {name: getattr(self, name) for name in RECORD_FIELDS}
        rec["policy"] = self.policy or None
        return rec

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def sync(self) -> bool:
        """Submitted through /runsync (RunPod keeps those results 1 minute, not 30)."""
        return self.id.startswith("sync-")

    @property
    def low_priority(self) -> bool:
        """``policy.lowPriority``: the job waits for a worker but never starts one."""
        return bool(self.policy.get("lowPriority"))

    def for_worker(self) -> dict[str, Any]:
        """What job-take hands the worker (the SDK gives the handler exactly this)."""
        job: dict[str, Any] = {"id": self.id, "input": self.input}
        if self.s3_config is not None:
            job["s3Config"] = self.s3_config
        return job

    def payload(self) -> dict[str, Any]:
        """The body of ``GET /status/{id}`` (and of the webhook), in RunPod's shape."""
        now = time.time()
        started = self.started_at
        body: dict[str, Any] = {"id": self.id, "status": self.status}
        end_of_wait = started or self.finished_at or now
        body["delayTime"] = max(0, int((end_of_wait - self.created_at) * 1000))
        if started is not None:
            body["executionTime"] = max(0, int(((self.finished_at or now) - started) * 1000))
        if self.worker_id:
            body["workerId"] = self.worker_id
        if self.status == IN_PROGRESS:
            if self.progress is not None:
                body["output"] = self.progress
        elif self.output is not None:
            body["output"] = self.output
        if self.error is not None and self.status != IN_QUEUE:
            body["error"] = self.error
        if self.retried:
            body["retries"] = self.retried
        timings = self.timing_summary()
        if timings:
            body["timings"] = timings
        return body

    def timing_summary(self) -> dict[str, float]:
        """Milliseconds the endpoint spent on this job, apart from the worker's own time."""
        t = self.timings
        if "result" not in t or "handed" not in t or "enqueued" not in t:
            return {}
        accept = t["enqueued"] - t["received"]
        ready = max(t["enqueued"], t.get("take", t["enqueued"]))
        handoff = max(0.0, t["handed"] - ready)
        finish = t.get("answered", t.get("finished", t["result"])) - t["result"]
        return {
            "endpointMs": round((accept + handoff + finish) * 1000, 3),
            "acceptMs": round(accept * 1000, 3),
            "handoffMs": round(handoff * 1000, 3),
            "finishMs": round(finish * 1000, 3),
            "queueWaitMs": round(max(0.0, ready - t["enqueued"]) * 1000, 3),
            "workerMs": round((t["result"] - t["handed"]) * 1000, 3),
        }
