"""What RunPod's APIs say, named once: job statuses, exit codes, scaler kinds, default URLs,
how to tell RunPod from a local endpoint, and RunPod's worker rows in the local shape."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

# Job statuses as RunPod's job API reports them.
IN_QUEUE = "IN_QUEUE"
IN_PROGRESS = "IN_PROGRESS"
COMPLETED = "COMPLETED"
FAILED = "FAILED"
CANCELLED = "CANCELLED"
TIMED_OUT = "TIMED_OUT"
STATUSES = (IN_QUEUE, IN_PROGRESS, COMPLETED, FAILED, CANCELLED, TIMED_OUT)
TERMINAL = frozenset({COMPLETED, FAILED, CANCELLED, TIMED_OUT})

# Autoscaler kinds: seconds a job may wait before another worker starts, or jobs per worker.
QUEUE_DELAY = "QUEUE_DELAY"
REQUEST_COUNT = "REQUEST_COUNT"
SCALER_TYPES = (QUEUE_DELAY, REQUEST_COUNT)

# How the local endpoint's --fail-fast-crash-loop words a job it fails because no worker
# could start; the app's pages recognise it to tell the submitter that Retry cannot help.
CRASH_LOOP_ERROR = "workers are crash-looping"

DEFAULT_JOB_URL = "https://api.runpod.ai/v2"
DEFAULT_REST_URL = "https://api.runpod.io/v2"
DEFAULT_GRAPHQL_URL = "https://api.runpod.io/graphql"


@dataclass(frozen=True)
class ExitCode:
    """What an exit code usually means on a RunPod worker (seed notes, "exit codes").

    ``short`` goes into the local endpoint's errors and ``/workers`` ("exit code 2: ...");
    ``advice`` completes "exit code N means ..." on the app's pages, with what to check."""

    short: str
    advice: str | None = None


EXIT_CODES = {
    0: ExitCode("exited normally"),
    1: ExitCode(
        "Python exception or missing module (see the log tail)",
        "a Python exception or a missing module in the worker's start-up code",
    ),
    2: ExitCode(
        "file not found: the worker command or handler file is missing",
        "a file was not found (usually the handler script: check the image's CMD or the "
        "template's dockerArgs path)",
    ),
    126: ExitCode("the worker command is not executable"),
    127: ExitCode("the worker command was not found"),
    130: ExitCode("interrupted (SIGINT)"),
    134: ExitCode("aborted (SIGABRT)"),
    137: ExitCode(
        "killed (SIGKILL): usually out of memory (GPU VRAM or system RAM)",
        "the worker was killed for lack of memory (OOM: GPU VRAM or system RAM)",
    ),
    139: ExitCode(
        "segmentation fault (SIGSEGV): often a full disk during large writes",
        "a segfault, usually the disk filled up during a large write (raise the container "
        "disk or keep models on the network volume)",
    ),
    143: ExitCode("terminated (SIGTERM)"),
}
UNEXPECTED = "an unexpected error (see the log lines)"


def exit_meaning(code: int | None) -> str:
    """A few words for an exit code ("" when the process has not exited)."""
    if code is None:
        return ""
    known = EXIT_CODES.get(code)
    return known.short if known else f"exited with code {code}"


def exit_advice(code: Any) -> str:
    """What ``code`` means for someone fixing the worker, for "exit code N means ..."."""
    try:
        known = EXIT_CODES.get(int(code))
    except (TypeError, ValueError):
        return UNEXPECTED
    return (known.advice if known else None) or UNEXPECTED


def is_runpod(job_url: str, rest_url: str | None = None) -> bool:
    """RunPod rather than a local endpoint: the job API is on RunPod's hosts, or a management
    API URL was configured (a stand-in for RunPod's, as the tests and staging use)."""
    host = urlsplit(job_url).hostname or ""
    return bool(rest_url) or host.endswith(("runpod.ai", "runpod.io"))


def _number(value: Any) -> float | None:
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class WorkerRow:
    """One GPU worker, parsed once from either source: a RunPod REST v2 worker
    (``from_runpod``) or a row of the local endpoint's ``/workers`` report, the shape the
    app stores in its snapshot (``from_report``; ``to_report`` writes it back)."""

    id: str | None
    state: str  # as reported: running | idle | initializing | throttled | unhealthy | ...
    exit_code: int | None = None
    exit_meaning: str | None = None
    log_tail: tuple[str, ...] = ()
    current_jobs: tuple[str, ...] = ()
    started_at: float | None = None  # epoch seconds (the local endpoint's)
    exited_at: float | None = None
    uptime_s: float | None = None  # RunPod's uptimeSeconds
    stale: bool | None = None
    gpu: str | None = None
    datacenter: str | None = None

    @classmethod
    def from_runpod(cls, worker: dict[str, Any]) -> WorkerRow:
        return cls(
            id=worker.get("id"),
            state=str(worker.get("status") or "").lower(),
            stale=worker.get("isStale"),
            gpu=worker.get("gpuTypeId"),
            datacenter=worker.get("dataCenterId"),
            uptime_s=_number(worker.get("uptimeSeconds")),
        )

    @classmethod
    def from_report(cls, row: dict[str, Any]) -> WorkerRow:
        code = row.get("exitCode")
        return cls(
            id=row.get("id"),
            state=str(row.get("state") or "unknown"),
            exit_code=code if isinstance(code, int) and not isinstance(code, bool) else None,
            exit_meaning=row.get("exitMeaning"),
            log_tail=tuple(str(line) for line in row.get("logTail") or []),
            current_jobs=tuple(str(job) for job in row.get("currentJobs") or []),
            started_at=_number(row.get("startedAt")),
            exited_at=_number(row.get("exitedAt")),
            uptime_s=_number(row.get("uptimeS")),
            stale=row.get("stale"),
            gpu=row.get("gpu"),
            datacenter=row.get("datacenter"),
        )

    @property
    def status(self) -> str:
        """The state, except that a worker with an exit time has exited whatever it said."""
        return "exited" if self.exited_at is not None else self.state

    def age_s(self, now: float) -> float | None:
        """Seconds since the worker started (RunPod's own uptime when it gave that)."""
        return now - self.started_at if self.started_at else self.uptime_s

    def to_report(self) -> dict[str, Any]:
        """The ``/workers`` row shape (RunPod's rows are stored in it, beside local ones)."""
        row = {
            "id": self.id,
            "state": self.state,
            "stale": self.stale,
            "gpu": self.gpu,
            "datacenter": self.datacenter,
            "uptimeS": self.uptime_s,
        }
        extra = {
            "exitCode": self.exit_code,
            "exitMeaning": self.exit_meaning,
            "startedAt": self.started_at,
            "exitedAt": self.exited_at,
        }
        row.update({key: value for key, value in extra.items() if value is not None})
        if self.log_tail:
            row["logTail"] = list(self.log_tail)
        if self.current_jobs:
            row["currentJobs"] = list(self.current_jobs)
        return row


def worker_row(worker: dict[str, Any]) -> dict[str, Any]:
    """One RunPod REST v2 worker in the shape of the local endpoint's ``/workers`` rows."""
    return WorkerRow.from_runpod(worker).to_report()
