"""Named API tokens (``flask admin tokens create|list|revoke``) beside ``API_TOKENS``.

A token is shown once and stored as its SHA-256 only. Its webhook signing secret is not
stored at all: it is HMAC-SHA256(SECRET_KEY, "webhook-secret:" + a random per-token salt),
so the app can sign with it any time while a copy of the database alone signs nothing.
Rotating ``SECRET_KEY`` therefore changes every token's webhook secret: make new tokens
after rotating it (docs/api.md).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.models import ApiToken, utcnow

TOKEN_PREFIX = "gj_"  # noqa: S105 - a prefix, not a secret
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class TokenError(ValueError):
    """A token command cannot be done; the message says what to change."""


@dataclass(frozen=True)
class Caller:
    """Who called the API: the owner id stored on its jobs, and the named token if any."""

    owner: str
    token: ApiToken | None = None

    @property
    def name(self) -> str | None:
        return self.token.name if self.token is not None else None


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def owner_of(row: ApiToken) -> str:
    """Jobs of a named token are owned by its id, so a new token given a revoked one's
    name never sees the old one's jobs."""
    return f"token:{row.id}"


def webhook_secret(secret_key: str, row: ApiToken) -> str:
    """The token's Standard Webhooks secret, ``whsec_<base64 of 32 bytes>``."""
    raw = hmac.new(
        secret_key.encode(), f"webhook-secret:{row.secret_salt}".encode(), hashlib.sha256
    ).digest()
    return "whsec_" + base64.b64encode(raw).decode()


@dataclass(frozen=True)
class Created:
    row: ApiToken
    token: str
    webhook_secret: str


def create(
    session: Session,
    secret_key: str,
    name: str,
    *,
    max_concurrent: int | None = None,
    max_jobs_per_day: int | None = None,
    max_spend_per_day: float | None = None,
) -> Created:
    """Make and commit token ``name``; the token and secret are returned here only."""
    if not NAME.match(name):
        raise TokenError(
            f"token name {name!r}: use 1-64 letters, digits, '.', '_' or '-', e.g. ci-nightly"
        )
    for label, value in (
        ("--max-concurrent", max_concurrent),
        ("--max-jobs-per-day", max_jobs_per_day),
        ("--max-spend-per-day", max_spend_per_day),
    ):
        if value is not None and value <= 0:
            raise TokenError(f"{label} must be above 0 (leave it out for no limit)")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(
        name=name,
        token_hash=digest(token),
        secret_salt=secrets.token_hex(16),
        max_concurrent=max_concurrent,
        max_jobs_per_day=max_jobs_per_day,
        max_spend_per_day=max_spend_per_day,
    )
    session.add(row)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise TokenError(
            f"a token named {name!r} exists (or existed: names are never reused); "
            "choose another name"
        ) from None
    return Created(row, token, webhook_secret(secret_key, row))


def ensure(session: Session, name: str, token: str) -> ApiToken:
    """Token ``name`` accepting ``token`` (``make run``'s development token, kept in
    ``instance/dev-secrets.env``): made if missing, re-keyed if the secrets file was
    regenerated; one revoked with this very token stays revoked."""
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == digest(token)))
    if row is not None:
        return row
    row = session.scalar(select(ApiToken).where(ApiToken.name == name))
    if row is None:
        row = ApiToken(name=name, token_hash=digest(token), secret_salt=secrets.token_hex(16))
        session.add(row)
    else:
        row.token_hash, row.revoked_at = digest(token), None
    session.commit()
    return row


def find(session: Session, token: str) -> ApiToken | None:
    """The live (not revoked) token row for ``token``: read on every request, so a
    revocation takes effect at once."""
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == digest(token)))
    if row is None or row.revoked_at is not None:
        return None
    return row


def by_name(session: Session, name: str) -> ApiToken:
    row = session.scalar(select(ApiToken).where(ApiToken.name == name))
    if row is None:
        raise TokenError(f"no token named {name!r}: see `flask admin tokens list`")
    return row


def revoke(session: Session, name: str) -> ApiToken:
    row = by_name(session, name)
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        session.commit()
    return row


def all_tokens(session: Session) -> list[ApiToken]:
    return list(session.scalars(select(ApiToken).order_by(ApiToken.created_at)))
