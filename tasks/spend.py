"""Issue 19's beat task: the bill, the breaker (``app.lifecycle.spend``)."""

from __future__ import annotations

from app.db import session_scope
from app.lifecycle.spend import sweep
from app.services import services
from tasks.base import task


@task("tasks.spend", acks_late=False, soft_time_limit=50, time_limit=58)
def spend() -> dict:
    # Early ack: a lost sweep is simply the next one.
    with session_scope() as session:
        return sweep(session, services())
