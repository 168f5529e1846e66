"""Celery wired the Flask way (``celery_init_app``): every task runs in an app context.

Reliability choices (Celery docs, "Acks and redelivery"; DESIGN invariants 1 and 3):

- ``task_acks_late`` + ``task_reject_on_worker_lost``: tasks are idempotent (submit claims
  the job row by compare-and-set, poll carries a sequence number, reconcile and cleanup
  re-read the database), so a task whose worker dies mid-run is re-delivered instead of
  lost. No loop is possible: a re-delivered submit finds the job already claimed.
- ``visibility_timeout`` 2 h: longer than any countdown used here (polls wait at most
  ``POLL_CAP_S``, submit retries at most 10 min), so Redis never re-delivers a message
  that is merely waiting for its ETA.
- ``worker_prefetch_multiplier=1``: a worker reserves one message at a time, so a crash
  strands at most one, and countdown messages do not pile up in one process.
- Time limits on every task (soft 45 s, hard 60 s by default): no task blocks on a GPU job;
  each makes at most a few HTTP calls with their own timeouts.
- Results are ignored (nothing reads them); the job row is what pages read.
- Beat entries expire after one interval, so sweeps queued during an outage do not pile up.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celery import Celery, Task
from flask import Flask

from app import taskhealth
from app.settings import Settings

TASK_MODULES = ["tasks.jobs", "tasks.periodic", "tasks.spend", "tasks.deliveries"]
# Issue 20: webhooks to clients go through their own queue and worker (Procfile
# ``deliveries``), so a slow receiver never delays a job's tasks.
DELIVERIES_QUEUE = "webhooks"


def celery_config(settings: Settings) -> dict[str, Any]:
    interval = settings.reconcile_interval_s
    return {
        "broker_url": settings.redis_url,
        "task_ignore_result": True,
        "result_backend": None,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "broker_transport_options": {"visibility_timeout": 7200, "socket_timeout": 10},
        "broker_connection_retry_on_startup": True,
        "task_soft_time_limit": 45,
        "task_time_limit": 60,
        "task_publish_retry_policy": {
            "max_retries": 2,
            "interval_start": 0,
            "interval_step": 0.5,
            "interval_max": 1,
        },
        "task_default_queue": "celery",
        "task_routes": {
            "tasks.deliver_webhook": {"queue": DELIVERIES_QUEUE},
            "tasks.sweep_webhooks": {"queue": DELIVERIES_QUEUE},
        },
        "worker_hijack_root_logger": False,
        "include": TASK_MODULES,
        "beat_schedule": {
            "reconcile": {
                "task": "tasks.reconcile",
                "schedule": interval,
                "options": {"expires": interval},
            },
            # Issue 19: the bill and the breaker, as often as reconcile refreshes the snapshot.
            "spend": {
                "task": "tasks.spend",
                "schedule": interval,
                "options": {"expires": interval},
            },
            "cleanup": {"task": "tasks.cleanup", "schedule": 3600.0, "options": {"expires": 3600}},
            "sweep-webhooks": {
                "task": "tasks.sweep_webhooks",
                "schedule": 60.0,
                "options": {"expires": 60},
            },
        },
    }


def celery_init_app(app: Flask, settings: Settings, overrides: dict[str, Any] | None = None):
    class FlaskTask(Task):
        def __call__(self, *args: object, **kwargs: object) -> object:
            with app.app_context():
                return self.run(*args, **kwargs)

    celery = Celery(app.name, task_cls=FlaskTask)
    celery.config_from_object({**celery_config(settings), **(overrides or {})})
    celery.set_default()
    taskhealth.install(celery)
    app.extensions["celery"] = celery
    return celery


def sender(app: Flask, celery: Celery) -> Callable[..., None]:
    """``enqueue(name, *args, countdown=None)`` for ``Services``: sends by name, and logs
    (does not raise) when the broker is down: the row is the truth; reconcile re-sends."""

    def send(name: str, *args: Any, countdown: float | None = None) -> None:
        try:
            celery.send_task(name, args=list(args), countdown=countdown)
        except Exception:  # noqa: BLE001 - the row is the truth; reconcile re-sends
            app.logger.exception("could not enqueue %s%r; reconcile will retry", name, args)

    return send
