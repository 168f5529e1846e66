"""The one signed-URL scheme for local storage: HMAC-SHA256 over method, key and expiry.

A signature binds one HTTP method to one storage key until one moment, so a GET URL handed
to a GPU worker cannot be turned into a PUT, point at another job's file, or outlive its
expiry. The key is derived from ``SECRET_KEY`` so rotating that revokes every URL.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Mapping

# What ``sign`` writes: ASCII digits and lowercase hex. ``str.isdigit`` would also pass "²"
# or "①", which ``int`` then refuses (a 500); anything else is refused here as malformed.
_EXPIRES = re.compile(r"[0-9]{1,12}")
_SIGNATURE = re.compile(r"[0-9a-f]{64}")


class SignatureError(Exception):
    """The URL was forged, altered or has expired (the file route answers 403)."""


def _mac(secret: str, method: str, key: str, expires: int) -> str:
    derived = hashlib.sha256(b"signed-url:" + secret.encode()).digest()
    message = f"{method.upper()}\n{key}\n{expires}".encode()
    return hmac.new(derived, message, hashlib.sha256).hexdigest()


def sign(secret: str, method: str, key: str, ttl_s: int, now: float | None = None) -> dict:
    """Query parameters (``exp``, ``sig``) that let ``method`` reach ``key`` for ``ttl_s``."""
    expires = int((time.time() if now is None else now) + ttl_s)
    return {"exp": str(expires), "sig": _mac(secret, method, key, expires)}


def verify(secret: str, method: str, key: str, exp: str | None, sig: str | None) -> None:
    """Raise ``SignatureError`` unless ``sig`` is valid for ``method`` on ``key`` and unexpired."""
    if not exp or not sig or not _EXPIRES.fullmatch(exp) or not _SIGNATURE.fullmatch(sig):
        raise SignatureError("missing or malformed signature")
    expected = _mac(secret, method, key, int(exp))
    if not hmac.compare_digest(expected.encode(), sig.encode()):
        raise SignatureError("signature does not match")
    if int(exp) < time.time():
        raise SignatureError("link expired")


def verify_query(secret: str, method: str, key: str, query: Mapping[str, str]) -> None:
    """``verify`` for the query parameters ``sign`` wrote (``?exp=&sig=``) of a request."""
    verify(secret, method, key, query.get("exp"), query.get("sig"))
