"""``Prefer: wait=N`` (RFC 7240, as Replicate's API): hold a request until its job ends or
N seconds pass, whichever is first.

The wait listens on the Redis pub/sub channel every applied change is announced on
(``app.clients.webhooks.announce``), re-reading the row only when a change arrives, and at
least every ``RECHECK_S`` in case an announcement was lost. Cost: a waiting request holds
one of its gunicorn worker's connections (a gevent greenlet; ``worker_connections`` in
gunicorn.conf.py) and one Redis connection for up to ``MAX_WAIT_S`` (docs/api.md).
"""

from __future__ import annotations

import re
import time

import redis
from sqlalchemy.orm import Session

from app.clients.webhooks import CHANNEL
from app.models import TERMINAL, Job

MAX_WAIT_S = 60
RECHECK_S = 2.0
_WAIT = re.compile(r"^\s*wait\s*=\s*(\S+?)\s*$", re.IGNORECASE)


class PreferError(ValueError):
    """The ``Prefer`` header asks for a wait this API cannot give (400)."""


def parse_prefer(header: str | None) -> int | None:
    """Seconds asked by ``Prefer: wait=N``; None when no wait is asked."""
    for preference in (header or "").split(","):
        match = _WAIT.match(preference.split(";")[0])
        if match:
            raw = match.group(1).strip('"')
            if not raw.isdigit() or not 1 <= int(raw) <= MAX_WAIT_S:
                raise PreferError(f"Prefer: wait={raw}: use a whole number of seconds, 1 to 60")
            return int(raw)
    return None


def wait_for_end(session: Session, job: Job, seconds: float, client: redis.Redis) -> Job:
    """``job`` refreshed once it has ended, or as it is after ``seconds``."""
    deadline = time.monotonic() + seconds
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    try:
        pubsub.subscribe(CHANNEL + job.id)  # before the read below: no change falls between
        session.commit()
        session.refresh(job)
        while not job.terminal and (left := deadline - time.monotonic()) > 0:
            message = pubsub.get_message(timeout=min(left, RECHECK_S))
            if message is None or _says_ended(message):
                session.commit()
                session.refresh(job)
    except redis.RedisError:
        session.refresh(job)  # no Redis: answer with the job as it is, as a short wait would
    finally:
        pubsub.close()
    return job


def _says_ended(message: dict) -> bool:
    data = message.get("data")
    text = data.decode() if isinstance(data, bytes) else str(data)
    return text in TERMINAL
