"""Who may do what: admin login (password from ``ADMIN_PASSWORD``), API bearer tokens, and
the browser session's own jobs (a person sees and acts on the jobs they uploaded)."""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from flask import abort, g, jsonify, redirect, request, session, url_for
from sqlalchemy import delete

from app.clients import tokens
from app.clients.tokens import Caller
from app.db import get_session
from app.models import AdminSession, utcnow
from app.services import services
from app.web.ratelimit import over_limit

MY_JOBS_KEPT = 50
LOGIN_WINDOW_S = 300
ACCOUNT_KEY = "login-account:admin"
ACCOUNT_FACTOR = 3  # one noisy client cannot lock the admin out; many clients still cannot guess


def check_admin_password(candidate: str) -> bool:
    expected = services().settings.admin_password
    return bool(expected) and hmac.compare_digest(candidate.encode(), expected.encode())


def _client_key() -> str:
    return f"login-ip:{request.remote_addr or '-'}"


def login_locked() -> int | None:
    """Seconds until this client may try a password again; None when it may now.

    Each address has its own limit. The account-wide one (``ACCOUNT_FACTOR`` times it, for
    guessing spread over many addresses) applies only to an address that has itself
    guessed wrong in the window: strangers cannot lock the admin out, and each of a
    guesser's addresses gets one try per window once the account limit is reached. The
    production password strength rule (``app.settings``) covers what that leaves.
    """
    redis, limit = services().redis, services().settings.login_attempts_per_5min
    wait = over_limit(redis, _client_key(), limit, LOGIN_WINDOW_S, count=False)
    if wait or not over_limit(redis, _client_key(), 1, LOGIN_WINDOW_S, count=False):
        return wait  # locked itself, or a clean address
    return over_limit(redis, ACCOUNT_KEY, limit * ACCOUNT_FACTOR, LOGIN_WINDOW_S, count=False)


def login_failed() -> None:
    limit = services().settings.login_attempts_per_5min
    over_limit(services().redis, _client_key(), limit, LOGIN_WINDOW_S)
    over_limit(services().redis, ACCOUNT_KEY, limit * ACCOUNT_FACTOR, LOGIN_WINDOW_S)


def _digest(nonce: str) -> str:
    return hashlib.sha256(nonce.encode()).hexdigest()


def start_admin_session() -> None:
    """Log this browser in: a server-side session row, its nonce in the signed cookie."""
    db = get_session()
    now = utcnow()
    db.execute(delete(AdminSession).where(AdminSession.expires_at < now))
    nonce = secrets.token_urlsafe(32)
    hours = services().settings.admin_session_hours
    db.add(AdminSession(id=_digest(nonce), expires_at=now + timedelta(hours=hours)))
    db.commit()
    session.clear()
    session["admin"] = nonce
    g.pop("is_admin", None)


def end_admin_session() -> None:
    """Log out: the row goes, so a copy of the cookie stops working too."""
    nonce = session.pop("admin", None)
    if isinstance(nonce, str):
        db = get_session()
        db.execute(delete(AdminSession).where(AdminSession.id == _digest(nonce)))
        db.commit()
    g.pop("is_admin", None)


def is_admin() -> bool:
    if "is_admin" not in g:
        g.is_admin = _admin_session_valid(session.get("admin"))
    return g.is_admin


def _admin_session_valid(nonce: Any) -> bool:
    if not isinstance(nonce, str) or not nonce:
        return False
    row = get_session().get(AdminSession, _digest(nonce))
    if row is None:
        return False
    expires = (
        row.expires_at if row.expires_at.tzinfo else row.expires_at.replace(tzinfo=utcnow().tzinfo)
    )
    return expires > utcnow()


def admin_required(view: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if not is_admin():
            if request.method == "GET":
                return redirect(url_for("admin.login", next=request.path))
            abort(401)
        return view(*args, **kwargs)

    return wrapped


def owner_of_token(token: str) -> str:
    """The owner id stored on API jobs: a hash, so the token itself is never stored."""
    return "api:" + hashlib.sha256(token.encode()).hexdigest()[:24]


def api_caller() -> Caller | None:
    """Who sent this API request: a token from ``API_TOKENS``, or a named token from the
    database (``app.clients.tokens``; read each time, so a revoked one is refused at once)."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    for valid in services().settings.api_tokens:
        if hmac.compare_digest(token.encode(), valid.encode()):
            return Caller(owner_of_token(valid))
    row = tokens.find(get_session(), token)
    return Caller(tokens.owner_of(row), row) if row is not None else None


def token_required(view: Callable[..., Any]) -> Callable[..., Any]:
    """Passes ``owner`` (the owner id on the caller's jobs); ``g.api_caller`` holds the rest."""

    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        caller = api_caller()
        if caller is None:
            response = jsonify(
                error="missing, invalid or revoked API token: send 'Authorization: Bearer "
                "<token>' with a token from `flask admin tokens create` or API_TOKENS"
            )
            response.status_code = 401
            response.headers["WWW-Authenticate"] = "Bearer"
            return response
        g.api_caller = caller
        return view(*args, owner=caller.owner, **kwargs)

    return wrapped


def remember_job(job_id: str) -> None:
    jobs = [j for j in session.get("my_jobs", []) if j != job_id]
    session["my_jobs"] = [job_id, *jobs][:MY_JOBS_KEPT]


def my_job_ids() -> list[str]:
    return list(session.get("my_jobs", []))


def may_act_on(job_id: str) -> bool:
    return is_admin() or job_id in session.get("my_jobs", [])
