"""Why a job is not moving, in words an operator or user can act on (DESIGN invariant 7).

Inputs are the endpoint's ``/health`` answer and, on the local endpoint, its ``/workers``
report (RunPod's ``IN_QUEUE`` cannot tell "no capacity" from "crash-looping" on its own).
"""

from __future__ import annotations

from typing import Any

from deploy.runpod.vocabulary import exit_advice

NO_CAPACITY = (
    "no GPU capacity: the endpoint cannot get a GPU worker of its tiers right now (workers "
    "throttled). Wait, or an operator can add more GPU tiers (e.g. AMPERE_48,ADA_48_PRO,"
    "AMPERE_80) or drop the network volume's datacenter pin."
)
NO_WORKER = (
    "no GPU worker has started for this endpoint: usually no GPU capacity in the pinned "
    "datacenter, or workersMax is 0. An operator can add GPU tiers or check the endpoint."
)


CHECKING = (
    "checking with the GPU endpoint: it reports no job queued or running, so this one has "
    "probably finished there; its status is being fetched now."
)


def endpoint_queue(health: dict[str, Any] | None) -> int | None:
    """Jobs the endpoint itself counts as queued or running; None when it did not say."""
    jobs = (health or {}).get("jobs")
    if not isinstance(jobs, dict):
        return None
    counts = [jobs.get("inQueue"), jobs.get("inProgress")]
    if not all(isinstance(c, int | float) for c in counts):
        return None
    return int(sum(counts))


def endpoint_unreachable(endpoint_id: str, grace_s: float) -> str:
    return (
        f"endpoint unreachable: the GPU endpoint {endpoint_id or '(not set)'} answers Not Found. "
        "Check RUNPOD_ENDPOINT_ID; if it is right, the RunPod account balance has probably "
        "gone negative, which disables the endpoint: add funds, then recreate the endpoint "
        "(python -m deploy apply --recreate) and update RUNPOD_ENDPOINT_ID. "
        f"Jobs wait up to {grace_s / 60:.0f} min before failing."
    )


def _crash_loop(workers: dict[str, Any]) -> str | None:
    """Workers that keep dying before taking a job: the endpoint says so (``crashLoop``), or
    at least two crashed in a row with none alive."""
    crash = workers.get("crashLoop") or {}
    listed = workers.get("workers") or []
    exited = [w for w in listed if w.get("exitCode") not in (None, 0)]
    alive = [w for w in listed if w.get("state") in ("running", "idle", "ready")]
    if not crash.get("active") and (len(exited) < 2 or alive):
        return None
    exited.sort(key=lambda w: float(w.get("exitedAt") or 0))
    code = exited[-1].get("exitCode") if exited else None
    tail = crash.get("logTail") or (exited[-1].get("logTail") if exited else None) or []
    if isinstance(tail, str):
        tail = tail.splitlines()
    lines = " | ".join(str(line) for line in tail[-5:]) or str(crash.get("lastError") or "")
    count = crash.get("consecutiveCrashes") or len(exited)
    crashes = f" ({count} crashes in a row)" if count else ""
    meaning = f"exit code {code} means {exit_advice(code)}" if code is not None else "they exit"
    return (
        f"GPU workers are crash looping{crashes}: {meaning}. Last log lines: {lines or 'none'}. "
        "An operator must fix the worker image or its start-up, then purge the queue."
    )


def _summary(health: dict[str, Any] | None, workers: dict[str, Any] | None) -> dict[str, int]:
    source = (workers or {}).get("summary") or (health or {}).get("workers") or {}
    return {k: int(v) for k, v in source.items() if isinstance(v, int | float)}


def diagnose(
    health: dict[str, Any] | None, workers: dict[str, Any] | None, queued: int
) -> str | None:
    """A sentence explaining why ``queued`` jobs wait, or None when nothing is wrong.

    The endpoint's own counts come first: when it has nothing queued or running, our
    "queued" jobs are stale statuses (finished there, their polls late), not victims of
    capacity or crashes, and saying "cold start" or "no capacity" would be false."""
    if queued and endpoint_queue(health) == 0:
        return CHECKING
    if workers:
        crash = _crash_loop(workers)
        if crash:
            return crash
    summary = _summary(health, workers)
    busy = summary.get("running", 0) + summary.get("idle", 0) + summary.get("ready", 0)
    if summary.get("throttled", 0) and not busy:
        return NO_CAPACITY
    if summary.get("unhealthy", 0) and not busy:
        return (
            "GPU workers are unhealthy (they crashed on start). An operator should read the "
            "worker logs (python -m deploy logs), fix the image, then purge the queue."
        )
    if queued and not busy and not summary.get("initializing", 0) and not any(summary.values()):
        return NO_WORKER
    return None


def queue_words(health: dict[str, Any] | None, workers: dict[str, Any] | None) -> str:
    summary = _summary(health, workers)
    if not summary:
        return "no worker report"
    return ", ".join(f"{name} {count}" for name, count in sorted(summary.items()))
