"""Why a job is not moving, in words an operator or user can act on (DESIGN invariant 7).

The rules are the operators' (``deploy.runpod.diagnosis``, which ``python -m deploy doctor``
prints); this module gathers the same facts from the endpoint snapshot (``/health`` and the
workers report: on the local endpoint its ``/workers``, on RunPod REST v2 in that shape)
plus the web app's own count of queued jobs, and words the findings for the job and admin
pages, most useful first.
"""

from __future__ import annotations

from typing import Any

from app.endpoints.routing import DEFAULT
from deploy.runpod import diagnosis as rules
from deploy.runpod.diagnosis import endpoint_queue
from deploy.runpod.vocabulary import exit_advice

__all__ = ["CHECKING", "NO_CAPACITY", "NO_WORKER", "diagnose", "endpoint_queue"]

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


def endpoint_unreachable(endpoint_id: str, grace_s: float, name: str = DEFAULT) -> str:
    """Why jobs of endpoint ``name`` (id ``endpoint_id``) cannot be sent or followed."""
    if name == DEFAULT:
        which, setting, recreate = "", "RUNPOD_ENDPOINT_ID", "python -m deploy apply --recreate"
    else:
        which = f"{name} "
        setting = f"{name}= in RUNPOD_ENDPOINTS"
        recreate = f"python -m deploy apply --endpoint {name} --recreate"
    return (
        f"endpoint unreachable: the {which}GPU endpoint {endpoint_id or '(not set)'} answers "
        f"Not Found. Check {setting}; if it is right, the RunPod account balance has probably "
        "gone negative, which disables the endpoint: add funds, then recreate the endpoint "
        f"({recreate}) and update {setting}. "
        f"Jobs wait up to {grace_s / 60:.0f} min before failing."
    )


UNHEALTHY = (
    "GPU workers are unhealthy (they crashed on start). An operator should read the "
    "worker logs (python -m deploy logs), fix the image, then purge the queue."
)
LOG_LINES = 5  # of the crashed worker's log, on one line of the page


def facts_of(
    health: dict[str, Any] | None,
    workers: dict[str, Any] | None,
    queued: int,
    target: str = "local",
) -> rules.Facts:
    facts = rules.Facts(target=target, endpoint_id="", health=health, waiting=queued)
    if workers:
        rules.add_report(facts, workers, LOG_LINES)
    return facts


def _crash_words(facts: rules.Facts, crash: rules.Crash) -> str:
    loop = facts.crash_loop or {}
    lines = " | ".join(str(line) for line in crash.lines[-LOG_LINES:])
    lines = lines or str(loop.get("lastError") or "")
    count = loop.get("consecutiveCrashes") or len(facts.crashed)
    crashes = f" ({count} crashes in a row)" if count else ""
    code = crash.code
    meaning = f"exit code {code} means {exit_advice(code)}" if code is not None else "they exit"
    return (
        f"GPU workers are crash looping{crashes}: {meaning}. Last log lines: {lines or 'none'}. "
        "An operator must fix the worker image or its start-up, then purge the queue."
    )


def diagnose(
    health: dict[str, Any] | None,
    workers: dict[str, Any] | None,
    queued: int,
    target: str = "local",
) -> str | None:
    """A sentence explaining why ``queued`` jobs wait, or None when nothing is wrong.

    The endpoint's own counts come first: when it has nothing queued or running, our
    "queued" jobs are stale statuses (finished there, their polls late), not victims of
    capacity or crashes, and saying "cold start" or "no capacity" would be false. A
    worker that is up (running, idle, ready) will take the job, so only a crash loop is
    worth a sentence then."""
    facts = facts_of(health, workers, queued, target)
    found = {finding.rule for finding in rules.diagnose(facts)}
    if "finished-upstream" in found:
        return CHECKING
    crash = rules.crash_of(facts)  # what the crash rule that fired read: code, log lines
    if crash and facts.crash_looping:
        return _crash_words(facts, crash)
    if facts.busy:
        return None
    if "throttled" in found:
        return NO_CAPACITY
    if crash and facts.count("unhealthy"):
        return UNHEALTHY
    if "no-worker" in found:
        return NO_WORKER
    return None


def worker_summary(health: dict[str, Any] | None, workers: dict[str, Any] | None) -> dict[str, int]:
    """Workers by state, as the diagnosis counts them: from the report's summary and
    ``/health`` alone, so a page view does not parse the worker rows for it."""
    facts = rules.Facts(target="local", endpoint_id="", health=health)
    rules.add_summary(facts, workers or {})
    return facts.worker_counts


def queue_words(health: dict[str, Any] | None, workers: dict[str, Any] | None) -> str:
    summary = worker_summary(health, workers)
    if not summary:
        return "no worker report"
    return ", ".join(f"{name} {count}" for name, count in sorted(summary.items()))
