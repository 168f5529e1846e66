"""Sentry for the worker, switched on by ``SENTRY_DSN``; a no-op without it."""

from __future__ import annotations

import logging

from gpu_worker.redaction import drop_query_strings

log = logging.getLogger("gpu_worker")
_enabled = False


def init_sentry(dsn: str) -> bool:
    """Initialise sentry-sdk when ``dsn`` is set; return whether it is on."""
    global _enabled
    if not dsn:
        return False
    import sentry_sdk

    from gpu_worker.settings import Platform

    platform = Platform.from_env()

    sentry_sdk.init(
        dsn=dsn,
        send_default_pii=False,
        # Frames' locals hold the job input, whose signed URLs are secrets.
        include_local_variables=False,
        before_breadcrumb=drop_query_strings,
        traces_sample_rate=0.0,
        environment=platform.sentry_environment,
        release=platform.sentry_release or None,
    )
    sentry_sdk.set_tag("component", "gpu_worker")
    if platform.runpod_endpoint_id:
        sentry_sdk.set_tag("runpod_endpoint", platform.runpod_endpoint_id)
    _enabled = True
    log.info("Sentry enabled for the GPU worker")
    return True


def capture(exc: BaseException, **tags: str) -> None:
    """Send ``exc`` (with its traceback) to Sentry when it is enabled."""
    if not _enabled:
        return
    import sentry_sdk

    with sentry_sdk.new_scope() as scope:
        for key, value in tags.items():
            scope.set_tag(key, value)
        sentry_sdk.capture_exception(exc)


def capture_message(message: str) -> None:
    if not _enabled:
        return
    import sentry_sdk

    sentry_sdk.capture_message(message, level="error")
