"""Checks that run before a request's body is read (issue 9, issue 16 finding 2).

One place refuses, while the body is still unread, every browser post that cannot succeed
or that is larger than its route needs:

- a post to a route that needs the session's form token, when the session has none, or the
  token sent in ``X-CSRFToken`` is not the session's (a made-up header used to let a whole
  upload reach the disk before Flask-WTF's own check, which reads the whole form first);
- a post larger than ``SMALL_BODY_BYTES`` to any form route but the upload (login, logout,
  cancel, retry, the admin's buttons): 413, and the cap also bounds a body sent without a
  ``Content-Length`` while it streams;
- more than ``ADMIN_FORM_POSTS_PER_5MIN`` posts to /admin/login or /admin/logout, or more
  than ``UPLOAD_RATE_PER_HOUR`` anonymous uploads, from one client address: 429.

Machine-to-machine routes (tokens, signatures) check their credential before reading
anything and cap their own bodies. The full CSRF check still follows for posts that pass.
"""

from __future__ import annotations

from flask import Flask, abort, request, session
from flask_wtf.csrf import ValidationError, validate_csrf

from app import signing
from app.services import services
from app.web.errors import answer
from app.web.ratelimit import in_words, over_limit

# Machine-to-machine routes: token or signature authenticated, no CSRF (see create_app).
EXEMPT_BLUEPRINTS = frozenset({"api", "files", "webhooks", "callbacks"})
UPLOAD_ENDPOINT = "pages.upload"
# Form posts that are not uploads carry a token, a password, a "next" path: a few hundred
# bytes. Anything past this is refused before it is read.
SMALL_BODY_BYTES = 64 * 1024
ADMIN_FORM_ENDPOINTS = frozenset({"admin.login", "admin.logout"})
ADMIN_FORM_POSTS_PER_5MIN = 30  # per client address, failed or not
STALE_FORM = "the form's security token is missing or stale: reload the page and try again"


def require_signature(method: str, key: str) -> None:
    """403 unless this request's ``?exp=&sig=`` sign ``method`` on ``key`` (``app.signing``):
    the credential of the file routes and the worker's callbacks, checked before the body."""
    try:
        signing.verify_query(services().settings.secret_key, method, key, request.args)
    except signing.SignatureError as exc:
        abort(403, description=f"forbidden: {exc}")


def _refuse(code: int, message: str):
    response = answer(code, message)
    if not isinstance(response, tuple):
        response.headers["Connection"] = "close"  # the unread body is not ours to drain
        return response
    body, status = response
    return body, status, {"Connection": "close"}


def check_before_body():
    if request.method in ("GET", "HEAD", "OPTIONS") or request.url_rule is None:
        return None  # no body to guard, or no such route: the 404/405 says so
    if request.blueprint in EXEMPT_BLUEPRINTS:
        return None
    if request.endpoint != UPLOAD_ENDPOINT:
        request.max_content_length = SMALL_BODY_BYTES  # also cuts off a chunked body
        if (request.content_length or 0) > SMALL_BODY_BYTES:
            return _refuse(
                413,
                f"the request is larger than this form sends ({SMALL_BODY_BYTES} bytes at most)",
            )
    if not _token_can_match():
        return _refuse(400, STALE_FORM)
    address = request.remote_addr or "-"
    if request.endpoint in ADMIN_FORM_ENDPOINTS:
        wait = over_limit(
            services().redis, f"admin-form-ip:{address}", ADMIN_FORM_POSTS_PER_5MIN, 300
        )
        if wait:
            return _refuse(
                429, f"too many requests from your address: try again in {in_words(wait)}"
            )
    if request.endpoint == UPLOAD_ENDPOINT:
        limit = services().settings.upload_rate_per_hour
        wait = over_limit(services().redis, f"upload-ip:{address}", limit, 3600)
        if wait:
            return _refuse(
                429,
                f"too many uploads from your address (at most {limit} an hour): try again "
                f"in {in_words(wait)}, or use the JSON API with a token",
            )
    return None


def _token_can_match() -> bool:
    """False when the post's form token cannot be right: the session never had one (no form
    was loaded in it), or the ``X-CSRFToken`` header holds another. A token in the form
    body is checked by Flask-WTF once the body is read."""
    if not session.get("csrf_token"):
        return False
    header = request.headers.get("X-CSRFToken")
    if header is None:
        return True
    try:
        validate_csrf(header)
    except ValidationError:
        return False
    return True


def init_app(app: Flask) -> None:
    # First of all before-request hooks: Flask-WTF's CSRF check would read the body.
    app.before_request_funcs.setdefault(None, []).insert(0, check_before_body)
