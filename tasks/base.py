"""The one task decorator: retry policy, time limits, timing and error tagging in one place
(as Sentry's ``instrumented_task``), so each task body stays a few lines.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Any

from celery import shared_task

from app.lifecycle.submission import RetryLater

log = logging.getLogger("tasks")


def task(
    name: str,
    *,
    acks_late: bool = True,
    soft_time_limit: int = 45,
    time_limit: int = 60,
    max_retries: int = 8,
    retry_backoff_max: int = 600,
) -> Callable[[Callable[..., Any]], Any]:
    """Register ``fn`` as Celery task ``name``.

    ``RetryLater`` (nothing was sent; try again) retries with exponential backoff and full
    jitter, capped at ``retry_backoff_max`` (below the broker's visibility timeout). Any other
    exception is logged with the task name and its arguments' job id, and reaches Sentry
    through the Celery integration; it is not retried blindly.
    """

    def decorate(fn: Callable[..., Any]) -> Any:
        @shared_task(
            name=name,
            bind=True,
            acks_late=acks_late,
            ignore_result=True,
            soft_time_limit=soft_time_limit,
            time_limit=time_limit,
            autoretry_for=(RetryLater,),
            retry_backoff=2,
            retry_backoff_max=retry_backoff_max,
            retry_jitter=True,
            max_retries=max_retries,
            trail=False,  # no result backend; trails only leak memory
        )
        @functools.wraps(fn)
        def run(self, *args: Any, **kwargs: Any) -> Any:
            started = time.monotonic()
            job_id = args[0] if args and isinstance(args[0], str) else None
            _tag(name, job_id)
            try:
                outcome = fn(*args, **kwargs)
            except RetryLater as exc:
                log.warning("%s %s: will retry (%s)", name, job_id or "", exc)
                raise
            except Exception:
                log.exception("%s %s failed", name, job_id or "")
                raise
            log.info(
                "%s %s: %s (%.0f ms)",
                name,
                job_id or "",
                outcome,
                (time.monotonic() - started) * 1000,
            )
            return None

        return run

    return decorate


def _tag(name: str, job_id: str | None) -> None:
    try:
        import sentry_sdk
    except ImportError:  # pragma: no cover - sentry-sdk is a runtime dependency
        return
    sentry_sdk.set_tag("task", name)
    if job_id:
        sentry_sdk.set_tag("job_id", job_id)
