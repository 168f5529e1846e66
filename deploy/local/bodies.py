"""Reading request bodies: the whole body up to a size limit, JSON of bounded depth.

aiohttp's ``request.content.read(n)`` returns only what is buffered so far (often
~128 KiB), so bodies are read chunk by chunk until the end or the limit.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

MB = 1024 * 1024
# RunPod documents no depth limit; a cap keeps a hostile body from exhausting the
# parser's recursion (a RecursionError would otherwise be a 500).
MAX_DEPTH = 100
CHUNK = 256 * 1024


class BadBody(Exception):
    """A body that cannot be accepted; ``status`` is the HTTP answer to give."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


async def read_limited(request: web.Request, limit: int, too_large: str, status: int) -> bytes:
    """The whole body; ``BadBody(status, too_large)`` once it is longer than ``limit``."""
    if request.content_length is not None and request.content_length > limit:
        raise BadBody(status, too_large)
    buf = bytearray()
    async for chunk in request.content.iter_chunked(CHUNK):
        buf += chunk
        if len(buf) > limit:
            raise BadBody(status, too_large)
    return bytes(buf)


def nesting_depth(value: Any) -> int:
    """How deeply lists and objects nest in ``value`` (a scalar is 0), without recursion."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        if deepest > MAX_DEPTH:
            return deepest
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return deepest


def parse_json(raw: bytes, what: str = "request body") -> Any:
    """Decode JSON, refusing malformed text and nesting deeper than ``MAX_DEPTH``."""
    try:
        value = json.loads(raw)
    except RecursionError:
        raise BadBody(400, f"{what} nests deeper than {MAX_DEPTH} levels") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadBody(400, f"{what} is not valid JSON ({exc})") from None
    if nesting_depth(value) > MAX_DEPTH:
        raise BadBody(400, f"{what} nests deeper than {MAX_DEPTH} levels")
    return value


async def read_json(request: web.Request, limit: int, too_large: str, status: int = 413) -> Any:
    """Read and decode a JSON body of at most ``limit`` bytes."""
    return parse_json(await read_limited(request, limit, too_large, status))
