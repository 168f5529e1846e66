"""Who may do what: admin login (password from ``ADMIN_PASSWORD``), API bearer tokens, and
the browser session's own jobs (a person sees and acts on the jobs they uploaded)."""

from __future__ import annotations

import functools
import hashlib
import hmac
from collections.abc import Callable
from typing import Any

from flask import abort, jsonify, redirect, request, session, url_for

from app.extensions import get_settings

MY_JOBS_KEPT = 50


def check_admin_password(candidate: str) -> bool:
    expected = get_settings().admin_password
    return bool(expected) and hmac.compare_digest(candidate.encode(), expected.encode())


def is_admin() -> bool:
    return bool(session.get("admin"))


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


def api_owner() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        return None
    for valid in get_settings().api_tokens:
        if hmac.compare_digest(token.strip().encode(), valid.encode()):
            return owner_of_token(valid)
    return None


def token_required(view: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        owner = api_owner()
        if owner is None:
            response = jsonify(
                error="missing or invalid API token: send 'Authorization: Bearer <token>' "
                "with one of the tokens in API_TOKENS"
            )
            response.status_code = 401
            response.headers["WWW-Authenticate"] = "Bearer"
            return response
        return view(*args, owner=owner, **kwargs)

    return wrapped


def remember_job(job_id: str) -> None:
    jobs = [j for j in session.get("my_jobs", []) if j != job_id]
    session["my_jobs"] = [job_id, *jobs][:MY_JOBS_KEPT]


def my_job_ids() -> list[str]:
    return list(session.get("my_jobs", []))


def may_act_on(job_id: str) -> bool:
    return is_admin() or job_id in session.get("my_jobs", [])
