"""Reading JSON from requests and form fields with bounded size and nesting.

Python's ``json`` recurses once per nesting level, so a body like ``[[[[...]]]]`` a few
thousand levels deep raises ``RecursionError`` (a 500). Everything the app parses comes
through here and is refused with 400 past ``MAX_DEPTH`` levels, before it is parsed.
"""

from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import Any

from flask import Request, abort
from flask.json.provider import DefaultJSONProvider

MAX_DEPTH = 32


class JSONError(ValueError):
    """Not JSON, or nested deeper than ``MAX_DEPTH``; the message says which."""


# After escapes are blanked, a string is a quote, anything but a quote, and the closing
# quote if any (an unterminated string swallows the rest: json.loads then refuses it).
_STRING = re.compile(r'"[^"]*"?')
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_DEPTH_CHANGE = {"[": 1, "{": 1, "]": -1, "}": -1}


def too_deep(text: str, limit: int = MAX_DEPTH) -> bool:
    """True when brackets outside strings nest deeper than ``limit``: a pre-parse scan in
    time linear in ``len(text)``, every step in C (str.replace, re, itertools).

    The scan that matched whole strings with a backtracking regex rescanned the rest of
    the text from every quote of an unterminated string of escaped quotes: 32 KiB of
    ``\\"`` took seconds (issue 16). Here escapes are blanked first, in pairs from the left
    as JSON reads them (``\\\\`` then ``\\"``), so every quote left opens or closes a
    string; strings are then dropped, and the depth is the running sum of the brackets."""
    if text.count("[") + text.count("{") <= limit:
        return False
    plain = text.replace("\\\\", "__").replace('\\"', "__")
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", plain))
    return max(accumulate(map(_DEPTH_CHANGE.__getitem__, brackets)), default=0) > limit


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
