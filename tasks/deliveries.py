"""Webhook deliveries to API clients, on their own queue (``webhooks``) served by their own
worker (Procfile ``deliveries``): a receiver that hangs holds a delivery thread for at most
the attempt's timeouts, never a slot a job's submit or poll needs."""

from __future__ import annotations

from app.clients import idempotency, webhooks
from app.db import session_scope
from app.services import services
from tasks.base import task


# Above connect + CLIENT_WEBHOOK_TIMEOUT_S; the threads pool the Procfile gives it enforces
# none, and a delivery cut off stays pending for the sweep.
@task(webhooks.DELIVER_TASK, soft_time_limit=120, time_limit=130)
def deliver(message_id: str) -> str:
    with session_scope() as session:
        return webhooks.deliver(session, message_id, services())


@task("tasks.sweep_webhooks")
def sweep() -> str:
    """Beat, every minute: re-send the deliveries whose task message was lost, and forget
    idempotency keys older than 24 h."""
    with session_scope() as session:
        lost = webhooks.overdue(session)
        expired = idempotency.purge_expired(session)
    for message_id in lost:
        services().enqueue(webhooks.DELIVER_TASK, message_id)
    return f"{len(lost)} overdue deliveries sent again; {expired} idempotency keys expired"
