"""Webhooks: POST the job's status payload when it ends, as RunPod does."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp

from deploy.redaction import url_origin

log = logging.getLogger("deploy.local")
ATTEMPTS = 3


def body(payload: dict[str, Any], job_input: Any, url: str) -> dict[str, Any]:
    """What RunPod posts: the status payload plus ``input`` and ``webhook`` (runpod-python#409)."""
    return payload | {"input": job_input, "webhook": url}


async def send(
    session: aiohttp.ClientSession, url: str, payload: dict[str, Any], retry_delay: float
) -> bool:
    """POST ``payload``; on failure retry twice, ``retry_delay`` apart. True once delivered."""
    for attempt in range(ATTEMPTS):
        if attempt:
            await asyncio.sleep(retry_delay)
        try:
            async with session.post(url, json=payload) as resp:
                if resp.status < 300:
                    return True
                log.warning("webhook %s answered %s", url_origin(url), resp.status)
        except (TimeoutError, aiohttp.ClientError) as exc:
            log.warning("webhook %s failed: %s", url_origin(url), type(exc).__name__)
    log.error("webhook for job %s given up after %d attempts", payload.get("id"), ATTEMPTS)
    return False
