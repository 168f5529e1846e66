"""Webhooks to API clients: which URLs are allowed, which events a job sends, and one
delivery attempt (``tasks/deliveries.py`` runs it on its own queue, ``webhooks``).

Each event is a ``WebhookMessage`` whose body is fixed when the event happens and whose id
is the ``webhook-id`` header on every attempt. Deliveries are signed the Standard Webhooks
way (``standardwebhooks``) with the job's token's secret (``app.clients.tokens``). An
attempt that meets a network error, a 5xx or a 429 is tried again with growing delays for
24 h; any other 4xx ends it. Every attempt is recorded (``GET /api/jobs/<id>/webhooks``).

Outside development a URL must be https and every address its host resolves to public:
not loopback, private, link-local (cloud metadata lives at 169.254.169.254), shared,
reserved or multicast. The check runs when the job is created and again at each attempt,
and the attempt connects to the very address it checked (a name re-pointed in between,
DNS rebinding, cannot send it inward).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import socket
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis
import requests
from requests.adapters import HTTPAdapter
from sqlalchemy import select
from sqlalchemy.orm import Session
from standardwebhooks.webhooks import Webhook

from app.clients.tokens import webhook_secret
from app.models import ApiToken, Job, Status, WebhookAttempt, WebhookMessage, utcnow
from app.services import Services
from app.settings import Settings

log = logging.getLogger(__name__)

EVENTS = ("start", "progress", "completed")
DEFAULT_EVENTS = ("completed",)
PROGRESS_EVERY_S = 2.0
RETRY_FOR = timedelta(hours=24)
RETRY_CAP_S = 3600.0  # below the broker's visibility timeout (app/queue.py)
CONNECT_TIMEOUT_S = 5.0
MAX_URL = 2048
DELIVER_TASK = "tasks.deliver_webhook"
CHANNEL = "job-events:"  # + job id: Redis pub/sub that ``Prefer: wait`` listens on


class WebhookURLError(ValueError):
    """The webhook URL or events cannot be used; the API answers 400 with the message."""


def parse_events(raw: str | None) -> str:
    """``webhook_events_filter`` (comma list, or repeated field joined) -> canonical text."""
    if raw is None or not raw.strip():
        return ",".join(DEFAULT_EVENTS)
    names = [part.strip() for part in raw.split(",") if part.strip()]
    unknown = sorted(set(names) - set(EVENTS))
    if unknown:
        raise WebhookURLError(
            f"webhook_events_filter {unknown[0]!r}: use any of {', '.join(EVENTS)}"
        )
    return ",".join(e for e in EVENTS if e in names)


def _refusal(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local (cloud metadata)"
    if ip.is_private:
        return "private"
    if not ip.is_global or ip.is_multicast:
        return "not a public address"
    return None


def _addresses(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise WebhookURLError(f"webhook host {host!r} does not resolve ({exc})") from None
    return list(dict.fromkeys(info[4][0] for info in infos))


@dataclass(frozen=True)
class Target:
    url: str
    host: str
    port: int
    addresses: tuple[str, ...]  # the checked IPs the delivery connects to, in order


def check_url(url: str, settings: Settings) -> Target:
    """The URL's target, checked (see the module docstring); ``WebhookURLError`` if not."""
    if len(url) > MAX_URL:
        raise WebhookURLError(f"webhook URL is longer than {MAX_URL} characters")
    parts = urlsplit(url.strip())
    allowed = ("https", "http") if settings.development else ("https",)
    if parts.scheme not in allowed or not parts.hostname:
        raise WebhookURLError(
            f"webhook must be an {' or '.join(allowed)} URL with a host, e.g. "
            "https://example.com/hooks/gpu-jobs"
        )
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise WebhookURLError("webhook URL has an invalid port") from None
    addresses = _addresses(parts.hostname, port)
    if not settings.development:
        for address in addresses:
            why = _refusal(ipaddress.ip_address(address.split("%")[0]))
            if why:
                raise WebhookURLError(
                    f"webhook host {parts.hostname!r} resolves to {address}, a {why} address: "
                    "give a URL on the public internet"
                )
    return Target(url.strip(), parts.hostname, port, tuple(addresses))


class _PinnedTLS(HTTPAdapter):
    """Connects to a checked IP while TLS still checks the certificate for the name."""

    def __init__(self, hostname: str) -> None:
        self._hostname = hostname
        super().__init__(max_retries=0)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["server_hostname"] = self._hostname
        kwargs["assert_hostname"] = self._hostname
        super().init_poolmanager(*args, **kwargs)


def _post(
    target: Target, headers: dict[str, str], body: bytes, settings: Settings
) -> requests.Response:
    """POST to the first of the checked addresses that takes the connection (a name with
    an IPv6 and an IPv4 address may be reachable on one only)."""
    for n, address in enumerate(target.addresses):
        try:
            return _post_to(address, target, headers, body, settings)
        except requests.ConnectionError as exc:
            if isinstance(exc, requests.exceptions.SSLError) or n == len(target.addresses) - 1:
                raise
    raise requests.ConnectionError("no address")  # unreachable: check_url returns one at least


def _post_to(
    address: str, target: Target, headers: dict[str, str], body: bytes, settings: Settings
) -> requests.Response:
    parts = urlsplit(target.url)
    host = f"[{address}]" if ":" in address else address
    pinned = urlunsplit((parts.scheme, f"{host}:{target.port}", parts.path or "/", parts.query, ""))
    default_port = 443 if parts.scheme == "https" else 80
    host_header = target.host if target.port == default_port else f"{target.host}:{target.port}"
    with requests.Session() as session:
        session.trust_env = False  # no proxy from the environment may see or reroute it
        if parts.scheme == "https":
            session.mount("https://", _PinnedTLS(target.host))
        return session.post(
            pinned,
            data=body,
            headers={**headers, "Host": host_header},
            timeout=(CONNECT_TIMEOUT_S, settings.client_webhook_timeout_s),
            verify=settings.client_webhook_ca_bundle or True,
            allow_redirects=False,
        )


# Events.


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=utcnow().tzinfo)).isoformat()


def payload(job: Job, event: str, settings: Settings) -> dict[str, Any]:
    """The body: ``{type, timestamp, data}`` as Standard Webhooks suggests. ``data`` is the
    job as it was at the event; fetch ``data.urls.get`` for its result link (a stored
    body cannot carry an expiring link: retries would send it stale)."""
    base = settings.public_base_url.rstrip("/")
    return {
        "type": f"job.{event}",
        "timestamp": _iso(utcnow()),
        "data": {
            "id": job.id,
            "status": job.status,
            "pipeline": job.pipeline,
            "params": job.params,
            "progress": job.progress,
            "result": job.result,
            "error": job.error,
            "token_name": job.token_name,
            "created_at": _iso(job.created_at),
            "started_at": _iso(job.started_at),
            "finished_at": _iso(job.finished_at),
            "urls": {"get": f"{base}/api/jobs/{job.id}", "page": f"{base}/jobs/{job.id}"},
        },
    }


def _events_for(job: Job, previous: str) -> list[str]:
    now = job.status
    if now == previous:
        return ["progress"] if now == Status.IN_PROGRESS else []
    events = []
    ran_unseen = job.terminal and previous != Status.IN_PROGRESS and job.started_at is not None
    if now == Status.IN_PROGRESS or ran_unseen:
        events.append("start")  # a job seen only queued, then ended, still started
    if job.terminal:
        events.append("completed")
    return events


def announce(session: Session, job: Job, previous: str, services: Services) -> None:
    """After a change to ``job`` was committed: tell ``Prefer: wait`` listeners, and queue
    the webhook events its owner asked for. Never raises: the change is already the truth."""
    try:
        services.redis.publish(CHANNEL + job.id, job.status)
    except redis.RedisError as exc:
        log.warning("job %s: could not publish its change (%s)", job.id, exc)
    if not job.client_webhook_url:
        return
    wanted = set((job.client_webhook_events or "").split(","))
    events = [e for e in _events_for(job, previous) if e in wanted]
    if "progress" in events and not _progress_due(job, services):
        events.remove("progress")
    for event in events:
        message = WebhookMessage(
            id=f"msg_{uuid.uuid4().hex}",
            job_id=job.id,
            event=event,
            url=job.client_webhook_url,
            body=json.dumps(payload(job, event, services.settings), separators=(",", ":")),
            next_attempt_at=utcnow(),
        )
        session.add(message)
        try:
            session.commit()
        except Exception:  # noqa: BLE001 - the job's change stands; log why no webhook
            session.rollback()
            log.exception("job %s: could not record its %s webhook", job.id, event)
            continue
        services.enqueue(DELIVER_TASK, message.id)


def _progress_due(job: Job, services: Services) -> bool:
    """At most one ``progress`` event per job every ``PROGRESS_EVERY_S``."""
    try:
        return bool(
            services.redis.set(
                f"webhook-progress:{job.id}", 1, nx=True, px=int(PROGRESS_EVERY_S * 1000)
            )
        )
    except redis.RedisError:
        return False


# Delivery.


def retry_delay(attempts: int, settings: Settings) -> float:
    return min(settings.client_webhook_retry_base_s * 3 ** (attempts - 1), RETRY_CAP_S)


def _signing_secret(session: Session, job: Job, settings: Settings) -> str | None:
    owner = job.owner or ""
    if not owner.startswith("token:") or not owner[6:].isdigit():
        return None
    row = session.get(ApiToken, int(owner[6:]))
    if row is None or row.revoked_at is not None:
        return None
    return webhook_secret(settings.secret_key, row)


def _record(
    session: Session, message: WebhookMessage, code: int | None, error: str | None, ms: int
) -> None:
    message.attempt_count += 1
    session.add(
        WebhookAttempt(
            message_id=message.id,
            status_code=code,
            error=(error or None) and error[:500],
            duration_ms=ms,
        )
    )


def deliver(session: Session, message_id: str, services: Services) -> str:
    """One attempt at ``message_id``; schedules the next when the answer allows one."""
    settings = services.settings
    message = session.get(WebhookMessage, message_id)
    if message is None or message.state != "pending":
        return "nothing to deliver"
    job = session.get(Job, message.job_id)
    secret = _signing_secret(session, job, settings) if job is not None else None
    started = time.monotonic()
    code: int | None = None
    error: str | None = None
    if secret is None:
        error = "the job's API token was revoked: not sent"
    else:
        try:
            target = check_url(message.url, settings)
            timestamp = utcnow()
            body = message.body.encode()
            headers = {
                "Content-Type": "application/json",
                "User-Agent": "gpu-jobs-webhooks/1",
                "webhook-id": message.id,
                "webhook-timestamp": str(int(timestamp.timestamp())),
                "webhook-signature": Webhook(secret).sign(message.id, timestamp, body),
            }
            response = _post(target, headers, body, settings)
            code = response.status_code
            response.close()
        except WebhookURLError as exc:
            error = str(exc)
        except requests.RequestException as exc:
            error = f"network error: {type(exc).__name__}"
    ms = int((time.monotonic() - started) * 1000)
    delay = 0.0
    _record(session, message, code, error, ms)
    retryable = secret is not None and (
        (code is None and error and error.startswith("network error"))
        or (code is not None and (code >= 500 or code == 429))
    )
    if code is not None and 200 <= code < 300:
        message.state, message.next_attempt_at = "delivered", None
        outcome = f"delivered ({code})"
    elif retryable and _created(message) + RETRY_FOR > utcnow():
        delay = retry_delay(message.attempt_count, settings)
        message.next_attempt_at = utcnow() + timedelta(seconds=delay)
        outcome = f"attempt {message.attempt_count}: {code or error}; again in {delay:.0f} s"
    else:
        message.state, message.next_attempt_at = "failed", None
        outcome = f"failed for good ({code or error})"
    session.commit()
    if message.state == "pending":
        services.enqueue(DELIVER_TASK, message.id, countdown=delay)
    return outcome


def _created(message: WebhookMessage) -> datetime:
    at = message.created_at
    return at if at.tzinfo else at.replace(tzinfo=utcnow().tzinfo)


def redeliver(session: Session, message: WebhookMessage, services: Services) -> None:
    """Send ``message`` again (same ``webhook-id``), whatever became of it."""
    message.state = "pending"
    message.next_attempt_at = utcnow()
    session.commit()
    services.enqueue(DELIVER_TASK, message.id)


def overdue(session: Session, grace_s: float = 60.0) -> list[str]:
    """Pending messages whose attempt is over ``grace_s`` late: their task message was
    lost (a broker restart); the sweep sends them again."""
    cutoff = utcnow() - timedelta(seconds=grace_s)
    return list(
        session.scalars(
            select(WebhookMessage.id).where(
                WebhookMessage.state == "pending", WebhookMessage.next_attempt_at < cutoff
            )
        )
    )


def messages(session: Session, job_id: str) -> list[WebhookMessage]:
    return list(
        session.scalars(
            select(WebhookMessage)
            .where(WebhookMessage.job_id == job_id)
            .order_by(WebhookMessage.created_at)
        )
    )


def message_json(message: WebhookMessage) -> dict[str, Any]:
    return {
        "id": message.id,
        "event": message.event,
        "url": message.url,
        "state": message.state,
        "created_at": _iso(message.created_at),
        "next_attempt_at": _iso(message.next_attempt_at),
        "attempts": [
            {
                "at": _iso(a.at),
                "status_code": a.status_code,
                "error": a.error,
                "duration_ms": a.duration_ms,
            }
            for a in message.attempts
        ],
    }
