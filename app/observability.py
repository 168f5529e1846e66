"""Logging and error reporting for the web app, the Celery worker and beat.

``init_sentry(component)`` is called by ``create_app`` (component ``"web"``) and by the Celery
app (``"worker"``; beat loads the same module and tags itself ``"beat"``). It always sets up
logging; it starts sentry-sdk only when ``SENTRY_DSN`` is set (DESIGN: errors go to logs on
a fresh machine, to Sentry in production). Secrets never leave the process: the values of
secret-looking environment variables, bearer tokens and URL signatures are replaced by
``[Filtered]`` in every Sentry event and every log line, by the one redactor of this image
(``deploy.redaction``).
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from app.settings import Settings
from deploy.redaction import SECRET_FIELDS, redact, secret_values

_LOG_FORMAT = "%(asctime)s %(levelname)s [%(component)s] %(name)s: %(message)s"

_plain = logging.Formatter()
_state: dict[str, Any] = {"component": None, "sentry_dsn": None, "factory": None}


def _scrub(value: Any, secrets: list[str]) -> Any:
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, dict):
        return {key: _scrub(item, secrets) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(item, secrets) for item in value]
    return value


def scrub_event(event: dict[str, Any], hint: dict[str, Any] | None = None) -> dict[str, Any]:
    """Sentry ``before_send``: replace secret values anywhere in the event (messages,
    exception values, local variables, request URLs and headers, breadcrumbs)."""
    return _scrub(event, secret_values())


def configure_logging(component: str, level: str | None = None) -> None:
    """One line per record on stderr, tagged with the component, secrets redacted.

    Redaction sits in the log-record factory, so it also covers handlers that Celery and
    gunicorn install themselves.
    """
    _state["component"] = component
    if _state["factory"] is None:
        previous = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            record.component = _state["component"] or "-"
            try:
                message = record.getMessage()
            except Exception:  # noqa: BLE001 - a bad format string is the handler's to report
                return record
            cleaned = redact(message)
            if cleaned != message:
                record.msg, record.args = cleaned, ()
            if record.exc_info and not record.exc_text:
                # Formatters reuse a cached exc_text: caching a redacted one covers them all.
                record.exc_text = redact(_plain.formatException(record.exc_info))
            return record

        logging.setLogRecordFactory(factory)
        _state["factory"] = factory

    root = logging.getLogger()
    if not any(getattr(h, "_gpu_jobs", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(_LOG_FORMAT))
        handler._gpu_jobs = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel((level or "INFO").upper())


def init_sentry(component: str, settings: Settings | None = None) -> bool:
    """Set up logging and, when ``SENTRY_DSN`` is set, sentry-sdk with the Flask and Celery
    integrations (beat tasks monitored as cron check-ins). Returns whether Sentry is on.

    Safe to call more than once (every ``create_app`` calls it); Sentry is initialised once
    per DSN per process.
    """
    settings = settings or Settings.from_env()
    configure_logging(component, settings.log_level)
    dsn = settings.sentry_dsn.strip()
    if not dsn:
        return False
    import sentry_sdk

    if _state["sentry_dsn"] != dsn:
        from sentry_sdk.integrations.celery import CeleryIntegration
        from sentry_sdk.integrations.flask import FlaskIntegration
        from sentry_sdk.scrubber import DEFAULT_DENYLIST, EventScrubber

        sentry_sdk.init(
            dsn=dsn,
            environment=settings.app_env,
            release=settings.sentry_release or None,
            integrations=[FlaskIntegration(), CeleryIntegration(monitor_beat_tasks=True)],
            send_default_pii=False,
            event_scrubber=EventScrubber(
                denylist=[*DEFAULT_DENYLIST, *SECRET_FIELDS], recursive=True
            ),
            before_send=scrub_event,
            before_send_transaction=scrub_event,
            traces_sample_rate=settings.sentry_traces_sample_rate,
        )
        _state["sentry_dsn"] = dsn
        _tag_beat()
    # On the global scope: gevent's web workers (gunicorn.conf.py) run each request in a
    # greenlet with its own context, which a tag on the current scope would not reach.
    sentry_sdk.get_global_scope().set_tag("component", component)
    return True


def _tag_beat() -> None:
    # Beat imports the Celery app module, which calls init_sentry("worker"): retag it.
    try:
        from celery.signals import beat_init
    except ImportError:  # pragma: no cover - celery is a runtime dependency
        return

    def on_beat_init(**_: Any) -> None:
        import sentry_sdk

        _state["component"] = "beat"
        sentry_sdk.set_tag("component", "beat")

    beat_init.connect(on_beat_init, weak=False)


def capture(message: str, level: str = "warning", **tags: str) -> None:
    """An operator-facing event: logged, and sent to Sentry when it is on (issue 19's
    breaker says why it stopped an endpoint this way)."""
    logging.getLogger("app").log(logging.getLevelName(level.upper()), message)
    if not _state["sentry_dsn"]:
        return
    import sentry_sdk

    with sentry_sdk.new_scope() as scope:
        for key, value in tags.items():
            scope.set_tag(key, value)
        sentry_sdk.capture_message(message, level=level)
