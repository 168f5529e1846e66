"""Fixed-window rate limits in Redis, shared by every web process (admin logins, anonymous
uploads). Redis being down must not take the site with it: a limit that cannot be read is
not enforced, and the log says so."""

from __future__ import annotations

import logging
import math
import time

import redis as redis_lib

log = logging.getLogger(__name__)


def over_limit(redis, key: str, limit: int, window_s: int, *, count: bool = True) -> int | None:
    """Count one hit on ``key`` (unless ``count`` is False) and return the seconds until the
    window ends if ``limit`` hits are already used up; None while under the limit."""
    if limit <= 0:
        return None
    window = int(time.time() // window_s)
    name = f"ratelimit:{key}:{window}"
    try:
        if count:
            pipe = redis.pipeline()
            pipe.incr(name)
            pipe.expire(name, window_s + 5)
            used = int(pipe.execute()[0]) - 1
        else:
            used = int(redis.get(name) or 0)
    except (redis_lib.RedisError, OSError) as exc:  # fail open (see the docstring)
        log.warning("rate limit %s not enforced: Redis unavailable (%s)", key.split(":")[0], exc)
        return None
    if used < limit:
        return None
    return max(1, int((window + 1) * window_s - time.time()))


def in_words(seconds: int) -> str:
    minutes = math.ceil(seconds / 60)
    return f"{minutes} minute{'s' if minutes != 1 else ''}"
