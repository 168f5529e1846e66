"""Is anything taking the app's Celery tasks? Task workers, queue lengths and beat, from Redis.

``celery inspect ping`` would block a page for its timeout on every refresh and says nothing
of beat; instead each process records itself in Redis and any page reads that in one round
trip:

- every Celery worker writes ``{hostname: time}`` into a hash every ``HEARTBEAT_S`` from a
  thread of its main process (a paused or wedged worker stops writing, so its time ages);
- beat records the time of each task it sends (``after_task_publish`` in the beat process);
- the queues' lengths are the Redis lists Celery's transport keeps (``LLEN``).
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import redis
from celery import Celery
from celery.signals import after_task_publish, beat_init, worker_ready, worker_shutdown

WORKERS_KEY = "taskhealth:workers"
BEAT_KEY = "taskhealth:beat"
HEARTBEAT_S = 5.0
# A worker silent for longer than this is not counted as seen (three missed heartbeats).
SEEN_WITHIN_S = 3 * HEARTBEAT_S
FORGET_AFTER_S = 24 * 3600.0  # a worker gone this long drops off the dashboard


@dataclass(frozen=True)
class TaskHealth:
    """What the dashboard shows of Celery; ``error`` says why the rest is empty."""

    workers: dict[str, float] = field(default_factory=dict)  # hostname -> seconds since seen
    queues: dict[str, int] = field(default_factory=dict)  # queue name -> messages waiting
    beat_age_s: float | None = None  # seconds since beat last sent a task; None: never
    error: str = ""

    @property
    def live_workers(self) -> list[str]:
        return sorted(name for name, age in self.workers.items() if age <= SEEN_WITHIN_S)

    @property
    def last_seen_s(self) -> float | None:
        """Seconds since any task worker was last seen; None if none ever was."""
        return min(self.workers.values(), default=None)


def read(client: redis.Redis, queues: list[str], now: float | None = None) -> TaskHealth:
    """One pipeline round trip; a Redis error becomes ``error`` (the page still renders)."""
    now = time.time() if now is None else now
    try:
        pipe = client.pipeline()
        pipe.hgetall(WORKERS_KEY)
        pipe.get(BEAT_KEY)
        for name in queues:
            pipe.llen(name)
        seen, beat, *lengths = pipe.execute()
    except redis.RedisError as exc:
        return TaskHealth(error=f"Redis did not answer ({type(exc).__name__})")
    workers = {}
    for host, at in seen.items():
        age = max(now - float(at), 0.0)
        if age < FORGET_AFTER_S:
            workers[host.decode() if isinstance(host, bytes) else host] = age
    return TaskHealth(
        workers=workers,
        queues=dict(zip(queues, (int(n) for n in lengths), strict=True)),
        beat_age_s=max(now - float(beat), 0.0) if beat else None,
    )


def queue_names(celery: Celery) -> list[str]:
    """The default queue and every queue a route names, in that order."""
    names = [celery.conf.task_default_queue]
    for route in (celery.conf.task_routes or {}).values():
        queue = route.get("queue") if isinstance(route, dict) else None
        if queue and queue not in names:
            names.append(queue)
    return names


_broker: dict[str, str] = {}  # the broker URL of the process's Celery app (``install``)
_stop = threading.Event()
_in_beat = threading.Event()


def install(celery: Celery) -> None:
    """Make this process's worker or beat record itself in ``celery``'s broker (the signal
    handlers below are connected once, at import; they act only after this)."""
    _broker["url"] = celery.conf.broker_url


def _client() -> redis.Redis:
    return redis.Redis.from_url(_broker["url"], socket_timeout=5)


@worker_ready.connect
def _start_heartbeat(sender: Any = None, **_: Any) -> None:
    if "url" not in _broker:
        return
    hostname = getattr(sender, "hostname", None) or "celery"

    def beat_forever() -> None:
        conn = _client()
        while True:
            with contextlib.suppress(redis.RedisError):
                conn.hset(WORKERS_KEY, hostname, time.time())
            if _stop.wait(HEARTBEAT_S):
                return

    _stop.clear()
    threading.Thread(target=beat_forever, name="taskhealth", daemon=True).start()


@worker_shutdown.connect
def _stop_heartbeat(**_: Any) -> None:
    _stop.set()


@beat_init.connect
def _mark_beat(**_: Any) -> None:
    _in_beat.set()


@after_task_publish.connect
def _beat_tick(**_: Any) -> None:
    # Only beat's sends are ticks; the web app and tasks publish too.
    if _in_beat.is_set() and "url" in _broker:
        with contextlib.suppress(redis.RedisError):
            _client().set(BEAT_KEY, time.time())
