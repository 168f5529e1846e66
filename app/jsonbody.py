"""Reading JSON from requests and form fields with bounded size and nesting.

Python's ``json`` recurses once per nesting level, so a body like ``[[[[...]]]]`` a few
thousand levels deep raises ``RecursionError`` (a 500). Everything the app parses comes
through here and is refused with 400 past ``MAX_DEPTH`` levels, before it is parsed.
"""

from __future__ import annotations

import json
import re
from typing import Any

from flask import Request, abort
from flask.json.provider import DefaultJSONProvider

MAX_DEPTH = 32


class JSONError(ValueError):
    """Not JSON, or nested deeper than ``MAX_DEPTH``; the message says which."""


# A JSON string or one bracket. The string is matched possessively and its closing quote is
# optional, so each character is looked at once: an unterminated string of escaped quotes
# (``"\"\"\"...``) no longer makes the engine rescan the rest of the text from every
# quote (quadratic: 32 KiB took seconds). An unterminated string swallows the rest of the
# text; json.loads then refuses it as invalid.
_TOKENS = re.compile(r'"(?:[^"\\]++|\\.)*+"?|[\[\]{}]', re.DOTALL)


def too_deep(text: str, limit: int = MAX_DEPTH) -> bool:
    """True when brackets outside strings nest deeper than ``limit``: a pre-parse scan, linear
    in the length of ``text``."""
    if text.count("[") + text.count("{") <= limit:
        return False
    level = 0
    for match in _TOKENS.finditer(text):
        token = match.group()
        if token in ("[", "{"):
            level += 1
            if level > limit:
                return True
        elif token in ("]", "}"):
            level -= 1
    return False


def loads(text: str | bytes, what: str = "the JSON") -> Any:
    """``json.loads`` that refuses deep nesting with ``JSONError`` instead of crashing."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise JSONError(f"{what} is not UTF-8 text") from None
    if too_deep(text):
        raise JSONError(f"{what} is nested more than {MAX_DEPTH} levels deep")
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        raise JSONError(f"{what} must be a JSON object; this is not valid JSON") from None


def json_object(request: Request, max_bytes: int, what: str = "the body") -> dict[str, Any]:
    """The request's JSON object body, or abort 400/413 with a clear message."""
    if request.content_length is not None and request.content_length > max_bytes:
        abort(413, description=f"{what} is larger than {max_bytes} bytes")
    raw = request.get_data(cache=True)
    if len(raw) > max_bytes:
        abort(413, description=f"{what} is larger than {max_bytes} bytes")
    try:
        value = loads(raw, what)
    except JSONError as exc:
        abort(400, description=str(exc))
    if not isinstance(value, dict):
        abort(400, description=f"{what} must be a JSON object")
    return value


class BoundedJSONProvider(DefaultJSONProvider):
    """Flask's JSON provider with the nesting bound: ``request.get_json`` anywhere in the
    app answers 400 for a too-deep body (``get_json`` turns the ``ValueError`` into 400)."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return loads(s)
