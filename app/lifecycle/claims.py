"""The per-attempt claim: the GPU worker asks the app before it runs a job (invariant 3).

RunPod has no idempotency key, so when the answer to POST /run is lost the app cannot tell
whether the endpoint has the job. The app therefore lets the worker decide: every attempt's
job input carries a signed claim URL (``app.lifecycle.submission.callback_url``); before running the
model the worker POSTs the RunPod job id it runs under, and the first RunPod job to claim an
attempt holds it for good (one conditional UPDATE, so two claimers cannot both win).

- 200: this RunPod job holds the attempt (first claim, or a repeat by the same job, e.g. a
  worker restarted by RunPod); the job moves to IN_PROGRESS through ``apply_status`` and, if
  the app never learnt the id (submit outcome unknown), adopts it and is polled.
- 409: another RunPod job holds it: a duplicate execution, which ends without running.
- 410: the attempt is over (superseded by a resubmit or retry, or the job is terminal).

Reconcile and cancel close an unknown attempt with ``close_unclaimed``, the mirror image
of the claim: it succeeds only if no claim arrived, so a late worker then gets 410.
"""

from __future__ import annotations

import enum
import logging

from sqlalchemy import update
from sqlalchemy.orm import Session

from app.lifecycle.polling import first_delay, schedule_poll
from app.lifecycle.status import apply_status
from app.models import Attempt, AttemptState, Job, Status, utcnow
from app.services import Services

log = logging.getLogger(__name__)

OPEN = (AttemptState.CLAIMED, AttemptState.UNKNOWN, AttemptState.SENT)


class Verdict(enum.IntEnum):
    HELD = 200
    DUPLICATE = 409
    GONE = 410


def claim(
    session: Session,
    attempt_id: int,
    runpod_id: str,
    services: Services,
    *,
    poll: bool = False,
) -> tuple[Verdict, str]:
    """Record that ``runpod_id`` runs attempt ``attempt_id``; the verdict and why. With
    ``poll``, an adopted job (its submit never learnt the id) gets a poll chain."""
    attempt = session.get(Attempt, attempt_id)
    if attempt is None:
        return Verdict.GONE, "no such attempt: do not run this job"
    job = attempt.job
    current = job.current_attempt
    if current is None or current.id != attempt.id or job.terminal:
        return Verdict.GONE, f"attempt superseded (the job is {job.status.lower()}): do not run"
    if attempt.runpod_id and attempt.runpod_id != runpod_id:
        return Verdict.DUPLICATE, f"duplicate: the attempt was sent as {attempt.runpod_id}"
    won = session.execute(
        _open_and_unclaimed(attempt).values(
            claimed_runpod_id=runpod_id, claimed_at=utcnow(), updated_at=utcnow()
        )
    ).rowcount
    session.commit()
    session.refresh(attempt)
    if not won and attempt.claimed_runpod_id is None:
        return Verdict.GONE, "attempt closed (resubmitted or cancelled): do not run"
    if attempt.claimed_runpod_id != runpod_id:
        held = attempt.claimed_runpod_id
        log.warning("attempt %s: duplicate claim by %s (held by %s)", attempt.id, runpod_id, held)
        return Verdict.DUPLICATE, f"duplicate: RunPod job {held} already runs this attempt"
    _started(session, job, runpod_id, services, poll=poll)
    return Verdict.HELD, "claimed: run it"


def _started(
    session: Session,
    job: Job,
    runpod_id: str,
    services: Services,
    *,
    poll: bool,
) -> None:
    """A worker took the job: IN_PROGRESS (adopting the id if it was unknown), and polled."""
    session.refresh(job)
    payload = {"id": runpod_id, "status": Status.IN_PROGRESS.value}
    apply_status(session, job, payload, "claim", services)
    session.refresh(job)
    if poll and job.runpod_id == runpod_id and job.next_poll_at is None:
        # An adopted job had no poll chain (its submit never learnt the id): start one.
        schedule_poll(session, job, services.enqueue, first_delay(services.settings))


def _open_and_unclaimed(attempt: Attempt):
    """An UPDATE of ``attempt`` that matches only while it is open and unclaimed: a claim
    and a close race on it, and the row decides which one happened."""
    return (
        update(Attempt)
        .where(
            Attempt.id == attempt.id,
            Attempt.claimed_runpod_id.is_(None),
            Attempt.state.in_([s.value for s in OPEN]),
        )
        .execution_options(synchronize_session=False)
    )


def close_unclaimed(session: Session, attempt: Attempt, state: AttemptState, reason: str) -> bool:
    """Close an open attempt no worker has claimed (atomically against a claim arriving now).
    False when a claim got there first: the caller adopts ``attempt.claimed_runpod_id``."""
    closed = session.execute(
        _open_and_unclaimed(attempt).values(
            state=state.value, error=reason[:2000], updated_at=utcnow()
        )
    ).rowcount
    session.flush()
    session.expire(attempt)
    return closed == 1
