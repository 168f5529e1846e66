"""Database models: the job row is the truth (DESIGN invariant 1).

Shared by ``app`` and ``tasks``. Status moves only forward along ``TRANSITIONS``; each job
ends in exactly one terminal state and stays there (invariant 2).
"""

from __future__ import annotations

import enum
import secrets
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from deploy.runpod import vocabulary as runpod


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: DateTime(timezone=True), dict[str, Any]: JSON}


class Status(enum.StrEnum):
    PENDING = "PENDING"  # row committed, submit task not yet run
    SUBMITTING = "SUBMITTING"  # claimed by a submit task; POST /run under way or outcome unknown
    # RunPod's own statuses, spelled as its job API reports them.
    IN_QUEUE = runpod.IN_QUEUE  # the endpoint accepted the job
    IN_PROGRESS = runpod.IN_PROGRESS  # a worker took it
    COMPLETED = runpod.COMPLETED
    FAILED = runpod.FAILED
    CANCELLED = runpod.CANCELLED
    TIMED_OUT = runpod.TIMED_OUT

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset(Status(s) for s in runpod.TERMINAL)

# The state machine as data: which statuses each status may move to. Retry is the only way
# out of a terminal state and it creates a new attempt (see ``RETRYABLE``).
TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.PENDING: frozenset({Status.SUBMITTING, Status.CANCELLED, Status.FAILED}),
    Status.SUBMITTING: frozenset({Status.PENDING, Status.IN_QUEUE, Status.IN_PROGRESS} | TERMINAL),
    Status.IN_QUEUE: frozenset({Status.IN_PROGRESS} | TERMINAL),
    Status.IN_PROGRESS: TERMINAL,
    Status.COMPLETED: frozenset(),
    Status.FAILED: frozenset(),
    Status.CANCELLED: frozenset(),
    Status.TIMED_OUT: frozenset(),
}
RETRYABLE = frozenset({Status.FAILED, Status.CANCELLED, Status.TIMED_OUT})


def can_move(current: Status | str, new: Status | str) -> bool:
    return Status(new) in TRANSITIONS[Status(current)]


class AttemptState(enum.StrEnum):
    CLAIMED = "CLAIMED"  # claimed; POST /run not yet sent
    SENT = "SENT"  # the endpoint returned an id
    UNKNOWN = "UNKNOWN"  # POST /run may or may not have reached the endpoint
    FAILED = "FAILED"  # POST /run provably did not create a job
    SUPERSEDED = "SUPERSEDED"  # a later attempt replaced this one (retry)
    DUPLICATE = "DUPLICATE"  # a second execution found by reconciliation; cancelled, ignored


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=lambda: str(uuid.uuid4()))
    status: Mapped[str] = mapped_column(String(16), default=Status.PENDING, nullable=False)
    pipeline: Mapped[str] = mapped_column(String(64), nullable=False)
    # The NAME of the endpoint that serves the pipeline (app.endpoints.routing), fixed when
    # the job is made: its submit, polls, cancel and purge go there. "default" with one
    # endpoint, and for rows older than migration 0005_fleet.
    endpoint: Mapped[str] = mapped_column(
        String(64), default="default", server_default="default", nullable=False
    )
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)

    input_key: Mapped[str | None] = mapped_column(String(512))
    input_name: Mapped[str | None] = mapped_column(String(255))
    input_size: Mapped[int | None] = mapped_column(Integer)
    input_content_type: Mapped[str | None] = mapped_column(String(128))
    output_key: Mapped[str | None] = mapped_column(String(512))
    output_content_type: Mapped[str | None] = mapped_column(String(128))
    output_size: Mapped[int | None] = mapped_column(Integer)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # the handler's JSON, minus files

    # Who may see the job through the API; the web form's jobs have no owner token.
    owner: Mapped[str | None] = mapped_column(String(64))
    # Unguessable per-job token in the webhook URL (RunPod does not sign webhooks).
    webhook_token: Mapped[str] = mapped_column(
        String(64), default=lambda: secrets.token_urlsafe(32), nullable=False
    )

    runpod_id: Mapped[str | None] = mapped_column(String(128))  # the current attempt's job id
    worker_id: Mapped[str | None] = mapped_column(String(128))
    progress: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)  # words a user can act on
    error_detail: Mapped[str | None] = mapped_column(Text)  # for operators (admin pages)
    diagnosis: Mapped[str | None] = mapped_column(Text)  # why a queued job is not moving

    delay_ms: Mapped[int | None] = mapped_column(Integer)
    execution_ms: Mapped[int | None] = mapped_column(Integer)
    cold_start_ms: Mapped[int | None] = mapped_column(Integer)
    cost_usd: Mapped[float | None] = mapped_column(Float)

    poll_count: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    # Only the poll chain carrying the current sequence number may run; reconcile bumps it
    # when it re-enqueues a lost poll, so two chains never poll the same job.
    poll_seq: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    unreachable_since: Mapped[datetime | None] = mapped_column()
    cancel_requested_at: Mapped[datetime | None] = mapped_column()
    files_deleted_at: Mapped[datetime | None] = mapped_column()
    # Optimistic lock: a poll and a webhook applying statuses at once cannot both win.
    version: Mapped[int] = mapped_column(Integer, default=1, nullable=False)
    next_poll_at: Mapped[datetime | None] = mapped_column()
    last_polled_at: Mapped[datetime | None] = mapped_column()

    created_at: Mapped[datetime] = mapped_column(default=utcnow, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow, nullable=False)

    # Issue 9: attempts the app started by itself after a failure that was the app's own
    # (its storage or claim URL unreachable from the worker); at most one per job.
    auto_retries: Mapped[int] = mapped_column(
        Integer, default=0, server_default="0", nullable=False
    )
    # The worker's machine-readable cause of a failure (``error_kind``), when it gave one.
    failure_kind: Mapped[str | None] = mapped_column(String(32))

    submitted_at: Mapped[datetime | None] = mapped_column()
    started_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()

    # Issue 20 (app.clients): the named API token that made the job, and where its owner
    # asked to be told of it (``webhook_events``: comma list of start, progress, completed).
    token_name: Mapped[str | None] = mapped_column(String(64))
    client_webhook_url: Mapped[str | None] = mapped_column(String(2048))
    client_webhook_events: Mapped[str | None] = mapped_column(String(64))

    attempts: Mapped[list[Attempt]] = relationship(
        back_populates="job", order_by="Attempt.number", cascade="all, delete-orphan"
    )

    __table_args__ = (
        Index("ix_jobs_status_next_poll", "status", "next_poll_at"),
        Index("ix_jobs_status_updated", "status", "updated_at"),
        Index("ix_jobs_created", "created_at"),
        Index("ix_jobs_runpod_id", "runpod_id"),
        Index("ix_jobs_owner_created", "owner", "created_at"),
        Index("ix_jobs_endpoint_status", "endpoint", "status"),
    )
    __mapper_args__ = {"version_id_col": version}

    @property
    def terminal(self) -> bool:
        return Status(self.status).terminal

    @property
    def current_attempt(self) -> Attempt | None:
        """The latest attempt (``attempts`` is ordered by number): the one a status, a claim
        or a cancel is about; None before the first submit."""
        return self.attempts[-1] if self.attempts else None


class Attempt(Base):
    """One claim of a job for submission; every POST /run has one (invariant 3)."""

    __tablename__ = "attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False)
    number: Mapped[int] = mapped_column(Integer, nullable=False)
    state: Mapped[str] = mapped_column(String(16), default=AttemptState.CLAIMED, nullable=False)
    runpod_id: Mapped[str | None] = mapped_column(String(128))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow, nullable=False)

    # issue 12: each attempt's own figures, so a retried job's page lists every attempt and
    # the job row holds only the current one's (migration 0003_i12).
    worker_id: Mapped[str | None] = mapped_column(String(128))
    started_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()
    delay_ms: Mapped[int | None] = mapped_column(Integer)
    execution_ms: Mapped[int | None] = mapped_column(Integer)
    cost_usd: Mapped[float | None] = mapped_column(Float)
    outcome: Mapped[str | None] = mapped_column(String(16))  # the job status it ended in

    # Issue 9, the per-attempt claim: the RunPod job whose worker claimed this attempt
    # before running it (``app.lifecycle.claims``). Set once, atomically; any other RunPod job that
    # turns up with this attempt's input is a duplicate and does not run.
    claimed_runpod_id: Mapped[str | None] = mapped_column(String(128))
    claimed_at: Mapped[datetime | None] = mapped_column()

    job: Mapped[Job] = relationship(back_populates="attempts")

    __table_args__ = (
        Index("ix_attempts_job_number", "job_id", "number", unique=True),
        Index("ix_attempts_state", "state"),
    )


class Snapshot(Base):
    """The latest endpoint health and workers report, written by reconcile, read by pages.

    Pages never call RunPod themselves (nothing in ``app`` blocks on it); they show this.
    """

    __tablename__ = "snapshots"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow, nullable=False)


class AdminSession(Base):
    """Issue 9: a logged-in admin browser, server-side, so logout ends it for good (a copied
    cookie stops working) and it expires after ``ADMIN_SESSION_HOURS``. The id is a hash of
    the nonce the signed session cookie carries, never the nonce itself."""

    __tablename__ = "admin_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, nullable=False)
    expires_at: Mapped[datetime] = mapped_column(nullable=False)


IDLE = "idle"  # what billed seconds no job caused are charged to (``BilledSeconds.charged_to``)


class BilledSeconds(Base):
    """Issue 19: one worker's billed seconds charged to one job (or to ``IDLE``), as the
    endpoint recorded the worker's life; refreshed by ``tasks.spend``
    (``app.endpoints.billing``). Rows of one worker sum to its start-to-stop bill."""

    __tablename__ = "billed_seconds"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    worker_id: Mapped[str] = mapped_column(String(128), nullable=False)
    charged_to: Mapped[str] = mapped_column(String(64), nullable=False)  # a job id or IDLE
    endpoint: Mapped[str] = mapped_column(String(64), nullable=False)  # the endpoint's name
    pipeline: Mapped[str | None] = mapped_column(String(64))
    startup_s: Mapped[float] = mapped_column(Float, default=0.0, nullable=False)
    run_s: Mapped[float] = mapped_column(Float, default=0.0, nullable=False)
    idle_s: Mapped[float] = mapped_column(Float, default=0.0, nullable=False)
    usd: Mapped[float] = mapped_column(Float, default=0.0, nullable=False)
    worker_started_at: Mapped[datetime] = mapped_column(nullable=False)
    open: Mapped[bool] = mapped_column(default=False, nullable=False)  # the worker still bills
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow, nullable=False)

    __table_args__ = (
        Index("ix_billed_worker_charge", "worker_id", "charged_to", unique=True),
        Index("ix_billed_charge", "charged_to"),
        Index("ix_billed_started", "worker_started_at"),
    )


class ApiToken(Base):
    """Issue 20: a named API token. Only its SHA-256 is stored; its webhook signing secret
    is not stored at all but derived from ``SECRET_KEY`` and ``secret_salt``
    (``app.clients.tokens.webhook_secret``), so a copy of the database signs nothing."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    secret_salt: Mapped[str] = mapped_column(String(64), nullable=False)
    max_concurrent: Mapped[int | None] = mapped_column(Integer)
    max_jobs_per_day: Mapped[int | None] = mapped_column(Integer)
    max_spend_per_day: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, nullable=False)
    revoked_at: Mapped[datetime | None] = mapped_column()


class IdempotencyKey(Base):
    """Issue 20: one ``Idempotency-Key`` of one token, kept 24 h. The unique (owner, key)
    index decides which of concurrent requests makes the job; the others replay its answer."""

    __tablename__ = "idempotency_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    owner: Mapped[str] = mapped_column(String(64), nullable=False)
    key: Mapped[str] = mapped_column(String(255), nullable=False)
    request_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    status_code: Mapped[int | None] = mapped_column(Integer)  # None while the first runs
    response: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    job_id: Mapped[str | None] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, nullable=False)

    __table_args__ = (Index("ix_idempotency_owner_key", "owner", "key", unique=True),)


class WebhookMessage(Base):
    """Issue 20: one event for a client's webhook (``id`` is the ``webhook-id`` header, the
    same on every attempt); its body is fixed when the event happens."""

    __tablename__ = "webhook_messages"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False)
    event: Mapped[str] = mapped_column(String(16), nullable=False)
    url: Mapped[str] = mapped_column(String(2048), nullable=False)
    body: Mapped[str] = mapped_column(Text, nullable=False)
    state: Mapped[str] = mapped_column(String(16), default="pending", nullable=False)
    attempt_count: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    next_attempt_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow, nullable=False)

    attempts: Mapped[list[WebhookAttempt]] = relationship(
        order_by="WebhookAttempt.id", cascade="all, delete-orphan"
    )

    __table_args__ = (
        Index("ix_webhook_messages_job", "job_id", "created_at"),
        Index("ix_webhook_messages_state_next", "state", "next_attempt_at"),
    )


class WebhookAttempt(Base):
    """Issue 20: one HTTP attempt at delivering a ``WebhookMessage``."""

    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(
        ForeignKey("webhook_messages.id", ondelete="CASCADE"), nullable=False
    )
    at: Mapped[datetime] = mapped_column(default=utcnow, nullable=False)
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(String(500))
    duration_ms: Mapped[int | None] = mapped_column(Integer)
