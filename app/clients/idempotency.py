"""``Idempotency-Key`` on ``POST /api/jobs``, with Stripe's semantics.

The first request with a key inserts an ``idempotency_keys`` row (unique per token and
key) holding the hash of its body, makes the job and stores its answer. Within 24 h,
the same key from the same token gets that answer again (same status code and body,
``Idempotent-Replayed: true``) and nothing is stored or sent; with another body it gets
422; while the first is still running, 409 (retry in a moment). Concurrent requests race
on the unique index, so exactly one of them makes the job and the GPU run. A first request
that failed with a 4xx gives its key back, so the client can fix the request and resend.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from flask import Request
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.models import IdempotencyKey, utcnow

KEPT = timedelta(hours=24)
MAX_KEY = 255
CHUNK = 1024 * 1024


class IdempotencyError(ValueError):
    """The key cannot be used as sent; ``status_code`` is the answer."""

    def __init__(self, message: str, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code


@dataclass(frozen=True)
class Replay:
    status_code: int
    body: dict[str, Any]


def request_hash(request: Request) -> str:
    """SHA-256 over the form fields (sorted) and the uploaded file's name, type and bytes:
    what makes two POSTs "the same request"."""
    h = hashlib.sha256()
    for name in sorted(request.form):
        for value in request.form.getlist(name):
            h.update(f"field:{name}={value}\0".encode())
    for name in sorted(request.files):
        for upload in request.files.getlist(name):
            h.update(f"file:{name}:{upload.filename}:{upload.mimetype}\0".encode())
            upload.stream.seek(0)
            while chunk := upload.stream.read(CHUNK):
                h.update(chunk)
            upload.stream.seek(0)
    return h.hexdigest()


def valid_key(raw: str) -> str:
    key = raw.strip()
    if not key or len(key) > MAX_KEY or not key.isprintable():
        raise IdempotencyError(f"Idempotency-Key must be 1-{MAX_KEY} printable characters", 400)
    return key


def begin(session: Session, owner: str, key: str, digest: str) -> Replay | None:
    """Claim ``key`` for this request (None: go on and make the job), or the first
    request's answer to send instead; ``IdempotencyError`` for a mismatch or one in flight."""
    for _ in range(2):
        session.add(IdempotencyKey(owner=owner, key=key, request_hash=digest))
        try:
            session.commit()
            return None
        except IntegrityError:
            session.rollback()
        row = session.scalar(
            select(IdempotencyKey).where(IdempotencyKey.owner == owner, IdempotencyKey.key == key)
        )
        if row is None:
            continue  # the first gave its key back in between: claim it
        created = (
            row.created_at
            if row.created_at.tzinfo
            else row.created_at.replace(tzinfo=utcnow().tzinfo)
        )
        if created < utcnow() - KEPT:
            session.delete(row)  # older than 24 h: the key is free again
            session.commit()
            continue
        if row.request_hash != digest:
            raise IdempotencyError(
                "this Idempotency-Key was used with a different file or parameters: "
                "send a new key for a new job",
                422,
            )
        if row.status_code is None:
            raise IdempotencyError(
                "a request with this Idempotency-Key is still being handled: retry shortly",
                409,
            )
        return Replay(row.status_code, row.response or {})
    raise IdempotencyError("this Idempotency-Key is busy: retry shortly", 409)


def finish(session: Session, owner: str, key: str, status_code: int, body: dict[str, Any]) -> None:
    """Store the answer the first request gave (a 2xx), for replays."""
    row = session.scalar(
        select(IdempotencyKey).where(IdempotencyKey.owner == owner, IdempotencyKey.key == key)
    )
    if row is not None:
        row.status_code = status_code
        row.response = body
        row.job_id = body.get("id")
        session.commit()


def give_back(session: Session, owner: str, key: str) -> None:
    """The first request failed before making a job: free the key."""
    session.rollback()
    session.execute(
        delete(IdempotencyKey).where(
            IdempotencyKey.owner == owner,
            IdempotencyKey.key == key,
            IdempotencyKey.status_code.is_(None),
        )
    )
    session.commit()


def purge_expired(session: Session) -> int:
    """Delete keys older than 24 h (cleanup calls it)."""
    done = session.execute(
        delete(IdempotencyKey).where(IdempotencyKey.created_at < utcnow() - KEPT)
    )
    session.commit()
    return done.rowcount or 0
