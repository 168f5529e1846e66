"""Checks that must run before a form body is read: a browser post without the form's
security token, or beyond the anonymous upload rate, is refused while its body is still
unread, so a 500 MiB anonymous post never reaches the disk (Flask-WTF's own CSRF check
reads the whole form first). The full CSRF check still follows for posts that pass."""

from __future__ import annotations

from flask import Flask, request, session

from app.services import services
from app.web.errors import answer
from app.web.ratelimit import in_words, over_limit

# Machine-to-machine routes: token or signature authenticated, no CSRF (see create_app).
EXEMPT_BLUEPRINTS = frozenset({"api", "files", "webhooks", "callbacks"})
UPLOAD_ENDPOINT = "pages.upload"


def _refuse(code: int, message: str):
    response = answer(code, message)
    if not isinstance(response, tuple):
        response.headers["Connection"] = "close"  # the unread body is not ours to drain
        return response
    body, status = response
    return body, status, {"Connection": "close"}


def check_before_body():
    if request.method != "POST" or request.url_rule is None:
        return None  # not a post, or no such route: the 404/405 says so
    if request.blueprint in EXEMPT_BLUEPRINTS:
        return None
    if not session.get("csrf_token") and not request.headers.get("X-CSRFToken"):
        # No form was ever loaded in this session: the token cannot be right.
        return _refuse(
            400, "the form's security token is missing or stale: reload the page and try again"
        )
    if request.endpoint == UPLOAD_ENDPOINT:
        limit = services().settings.upload_rate_per_hour
        wait = over_limit(services().redis, f"upload-ip:{request.remote_addr or '-'}", limit, 3600)
        if wait:
            return _refuse(
                429,
                f"too many uploads from your address (at most {limit} an hour): try again "
                f"in {in_words(wait)}, or use the JSON API with a token",
            )
    return None


def init_app(app: Flask) -> None:
    # First of all before-request hooks: Flask-WTF's CSRF check would read the body.
    app.before_request_funcs.setdefault(None, []).insert(0, check_before_body)
