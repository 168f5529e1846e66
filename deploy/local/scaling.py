"""The scaling decision: a pure function of what the endpoint observes.

No asyncio, no processes, no clock of its own: ``plan(observed, policy)`` says how many
workers to start, which idle ones to stop and when to look again, so every rule can be
tested with plain values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from deploy.runpod.vocabulary import QUEUE_DELAY, REQUEST_COUNT

INITIALIZING = "initializing"
IDLE = "idle"
RUNNING = "running"


@dataclass(frozen=True)
class WorkerView:
    """A live worker that is not being stopped."""

    id: str
    state: str  # INITIALIZING, IDLE or RUNNING (running: handed jobs it has not finished)
    idle_since: float | None = None


@dataclass(frozen=True)
class Observed:
    """What the endpoint knows at ``now`` (monotonic seconds)."""

    now: float
    workers: tuple[WorkerView, ...] = ()
    # Jobs waiting that may trigger scaling (policy.lowPriority ones do not).
    queued: int = 0
    # All jobs waiting, low priority included: while any wait, no worker is idle-stopped.
    queued_any: int = 0
    in_progress: int = 0
    # Enqueue time of the oldest job counted in ``queued``.
    oldest_queued_at: float | None = None
    # When the scaler last started a worker (QUEUE_DELAY waits again after each start).
    last_start_at: float | None = None
    # Crash-loop backoff: no worker may start before this.
    spawn_blocked_until: float = 0.0


@dataclass(frozen=True)
class Policy:
    scaler: str = QUEUE_DELAY
    scaler_value: float = 4.0
    workers_min: int = 0
    workers_max: int = 1
    idle_timeout: float = 5.0


@dataclass
class Plan:
    start: int = 0
    stop: list[str] = field(default_factory=list)
    wake_at: list[float] = field(default_factory=list)

    @property
    def next_wake(self) -> float | None:
        return min(self.wake_at) if self.wake_at else None


def _wanted(obs: Observed, policy: Policy, wake: list[float]) -> int:
    live = len(obs.workers)
    want = policy.workers_min
    if not obs.queued:
        return want
    want = max(want, 1)
    if policy.scaler == REQUEST_COUNT:
        per_worker = max(policy.scaler_value, 1)
        return max(want, math.ceil((obs.queued + obs.in_progress) / per_worker))
    # QUEUE_DELAY (RunPod: "adds a worker when a request has waited scalerValue
    # seconds"): one more worker each time the oldest job has waited that long, counted
    # again from the last start. Only an idle worker is free: busy and starting ones
    # are not, so a slow cold start does bring up a second worker.
    free = sum(1 for w in obs.workers if w.state == IDLE)
    if live == 0 or obs.oldest_queued_at is None or free:
        return max(want, live)
    since = obs.oldest_queued_at
    if obs.last_start_at is not None:
        since = max(since, obs.last_start_at)
    due = since + policy.scaler_value
    if due <= obs.now:
        return max(want, live + 1)
    wake.append(due)
    return max(want, live)


def plan(obs: Observed, policy: Policy) -> Plan:
    """Workers to start and stop now, and the times at which the answer may change."""
    result = Plan()
    live = len(obs.workers)
    want = min(_wanted(obs, policy, result.wake_at), policy.workers_max)
    if want > live:
        if obs.spawn_blocked_until > obs.now:
            result.wake_at.append(obs.spawn_blocked_until)
        else:
            result.start = want - live
            if policy.scaler == QUEUE_DELAY and want < policy.workers_max:
                # The jobs still wait after this start: look again once they have waited
                # scalerValue more seconds, or a slow start never brings up another worker.
                result.wake_at.append(obs.now + policy.scaler_value)
        return result
    if obs.queued_any:
        return result
    spare = live - policy.workers_min
    idle = sorted(
        (w for w in obs.workers if w.state == IDLE and w.idle_since is not None),
        key=lambda w: w.idle_since or 0.0,
    )
    for w in idle:
        if spare <= 0:
            break
        due = (w.idle_since or 0.0) + policy.idle_timeout
        if due <= obs.now:
            result.stop.append(w.id)
            spare -= 1
        else:
            result.wake_at.append(due)
    return result
