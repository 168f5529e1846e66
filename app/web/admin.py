"""Admin pages and actions: login, endpoint dashboard, purge queue, cancel, retry."""

from __future__ import annotations

import functools
from urllib.parse import urlencode, urlparse

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from sqlalchemy import func, select

from app import taskhealth
from app.clients import quotas, tokens
from app.db import get_session
from app.endpoints import breaker
from app.endpoints.diagnosis import queue_words
from app.endpoints.health import FRESH_SNAPSHOT_S, ask_refresh, load_snapshot, snapshot_age_s
from app.lifecycle.jobs import JobError, cancel_job, retry_job
from app.lifecycle.polling import poll_plan
from app.lifecycle.spend import resume as resume_endpoint
from app.models import TERMINAL, Job, Status, utcnow
from app.services import services
from app.web import job_or_404
from app.web import spend as spend_section
from app.web.auth import (
    admin_required,
    check_admin_password,
    end_admin_session,
    login_failed,
    login_locked,
    start_admin_session,
)
from app.web.console import day_charts, endpoint_settings, parse_line
from app.web.live import unavailable_pipelines, unpicked_s
from app.web.ratelimit import in_words
from app.web.words import describe_now, operator_fix, waited_words, worker_said
from deploy.runpod.vocabulary import WorkerRow

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.route("/login", methods=["GET", "POST"])
def login():
    error = None
    target = request.values.get("next", "")
    if urlparse(target).netloc or not target.startswith("/"):
        target = url_for("admin.dashboard")
    if request.method == "POST":
        wait = login_locked()
        if wait:
            error = f"too many login attempts: try again in {in_words(wait)}"
            return render_template("login.html", error=error, next=target), 429
        if check_admin_password(request.form.get("password", "")):
            start_admin_session()
            return redirect(target, code=303)
        login_failed()
        error = "wrong password"
    return render_template("login.html", error=error, next=target), 401 if error else 200


@bp.post("/logout")
def logout():
    end_admin_session()
    return redirect(url_for("pages.upload_form"), code=303)


DASHBOARD_REFRESH_S = 3  # how often the open dashboard re-fetches its panel


def _worker_rows(snapshot: dict, active: list[Job]) -> list[dict]:
    """The snapshot's workers as the table shows them: state, job, age, last log lines.

    A worker that has reported progress for a job since the snapshot was taken shows as
    running it: the app's own record is newer than the endpoint's report.
    """
    now = utcnow().timestamp()
    by_runpod_id = {job.runpod_id: job for job in active if job.runpod_id}
    by_worker = {
        job.worker_id: job for job in active if job.status == Status.IN_PROGRESS and job.worker_id
    }
    rows = []
    for raw in (snapshot.get("workers") or {}).get("workers") or []:
        worker = WorkerRow.from_report(raw)
        age = worker.uptime_s
        if age is None and worker.started_at is not None:
            age = (worker.exited_at or now) - worker.started_at
        jobs = [(rid, by_runpod_id.get(rid)) for rid in worker.current_jobs]
        state = worker.state
        reported = by_worker.get(worker.id)
        if reported is not None and all(job is not reported for _, job in jobs):
            jobs.append((reported.runpod_id or "", reported))
            state = "running"
        rows.append(
            {
                "id": worker.id,
                "state": state,
                "jobs": jobs,
                "age": _duration(age),
                "exit": worker.exit_code,
                "exit_meaning": worker.exit_meaning,
                "stop_reason": raw.get("stopReason") or "",
                "exited": worker.exited_at is not None or state == "exited",
                "log": [parse_line(line) for line in worker.log_tail],
            }
        )
    return rows


def _duration(seconds: float | None) -> str:
    return "–" if seconds is None else waited_words(seconds)


def _celery_context(db, active: list[Job]) -> dict:
    """Task workers seen, queue lengths and beat's last tick (app.taskhealth), and the jobs
    no task worker has taken within the grace: what a paused Celery worker looks like."""
    settings = services().settings
    health = taskhealth.read(
        services().redis, taskhealth.queue_names(current_app.extensions["celery"])
    )
    unpicked = [job for job in active if unpicked_s(job) is not None]
    beat_late = (
        health.beat_age_s is None or health.beat_age_s > 2 * settings.reconcile_interval_s + 10
    )
    return {
        "tasks": health,
        "unpicked": unpicked,
        "beat_late": beat_late,
        "pickup_grace": _duration(settings.task_pickup_grace_s),
        "beat_every": _duration(settings.reconcile_interval_s),
        "heartbeat_every": _duration(taskhealth.HEARTBEAT_S),
        "duration": _duration,
    }


def _endpoint_panel(db, name: str, active: list[Job]) -> dict:
    """One endpoint's panel: its health, workers, queue, polling and diagnosis."""
    fleet = services().fleet
    endpoint = fleet.get(name)
    snapshot = load_snapshot(db, name) or {}
    banners = [snapshot[key] for key in ("error", "diagnosis") if snapshot.get(key)]
    for job in active:
        if job.endpoint == name and job.diagnosis and job.diagnosis not in banners:
            banners.append(job.diagnosis)
    return {
        "name": name,
        # Element ids stay as they were with one endpoint; with several each gets a suffix.
        "suffix": f"-{name}" if fleet.several else "",
        "endpoint_id": snapshot.get("endpoint_id") or endpoint.endpoint_id,
        "pipelines": endpoint.pipelines,
        "snapshot": snapshot,
        "snapshot_age": _duration(snapshot_age_s(db, name)),
        "workers": queue_words(snapshot.get("health"), snapshot.get("workers")),
        "worker_rows": _worker_rows(snapshot, active),
        "settings_rows": endpoint_settings(snapshot.get("workers")),
        "banners": banners,
        "polling": poll_plan(db, services().settings, name),
        # Issue 19 fills this in: the endpoint's spend from its billing records.
        "spend": None,
    }


def _dashboard_context() -> dict:
    db = get_session()
    counts = dict(db.execute(select(Job.status, func.count()).group_by(Job.status)).all())
    active = db.scalars(
        select(Job)
        .where(Job.status.not_in([s.value for s in TERMINAL]))
        .order_by(Job.created_at)
        .limit(100)
    ).all()
    recent = db.scalars(select(Job).order_by(Job.created_at.desc()).limit(30)).all()
    fleet = services().fleet
    panels = [_endpoint_panel(db, name, active) for name in fleet.names]
    spend = db.scalar(select(func.coalesce(func.sum(Job.cost_usd), 0.0)))
    return {
        **_celery_context(db, active),
        "counts": {s.value: counts.get(s.value, 0) for s in Status},
        "active": active,
        "recent": recent,
        "panels": panels,
        "several": fleet.several,
        "spend": spend,
        "describe": functools.partial(describe_now, db),  # the job page's queue words
        # Pipelines a worker could not load, each with its failed job and what to do.
        "unavailable": {
            name: (job, operator_fix(job), worker_said(job))
            for name, job in unavailable_pipelines(db, services().settings.pipelines).items()
        },
        "settings": services().settings,
        "refresh_s": DASHBOARD_REFRESH_S,
        **spend_section.context(db, services().settings),
    }


@bp.get("/")
@admin_required
def dashboard():
    ask_refresh(get_session(), services().enqueue, FRESH_SNAPSHOT_S, services().fleet.names)
    db = get_session()
    # Issue 20: named API tokens and their use today (outside the panel: no need to refresh).
    api_tokens = [(row, quotas.usage(db, row)) for row in tokens.all_tokens(db)]
    return render_template(
        "admin.html", charts=day_charts(db), api_tokens=api_tokens, **_dashboard_context()
    )


@bp.get("/panel")
@admin_required
def dashboard_panel():
    """The dashboard's live part; its script re-fetches it every few seconds, and while it
    does the endpoint snapshot is kept at most ``FRESH_SNAPSHOT_S`` old."""
    ask_refresh(get_session(), services().enqueue, FRESH_SNAPSHOT_S, services().fleet.names)
    return render_template("_admin_panel.html", **_dashboard_context())


@bp.post("/refresh")
@admin_required
def refresh():
    services().enqueue("tasks.refresh_endpoint")
    flash("Asked the endpoint for its health; this page shows it in a few seconds.")
    return redirect(url_for("admin.dashboard"), code=303)


@bp.post("/resume/<name>")
@admin_required
def resume(name: str):
    """Close an endpoint's breaker (issue 19); one probe job goes first."""
    if not breaker.load(get_session(), name).open:
        abort(404)
    state = resume_endpoint(get_session(), services(), name)
    flash(f"Endpoint {name} resumed; probe job: {state.probe or 'none held'}.")
    return redirect(url_for("admin.dashboard"), code=303)


def _purge_target() -> str:
    """The endpoint a purge is about: the one named, or the only one; else a 400."""
    fleet = services().fleet
    name = request.values.get("endpoint", "").strip() or (None if fleet.several else fleet.names[0])
    if name is None:
        abort(400, description=f"purge which endpoint? name one of {', '.join(fleet.names)}")
    if name not in fleet:
        abort(400, description=fleet.unknown_words(name))
    return name


def _purgeable(name: str) -> list[Job]:
    """The jobs a purge of ``name`` cancels: this app's jobs waiting in its queue (the ones
    ``app.lifecycle.reconcile.purge`` polls to CANCELLED)."""
    return list(
        get_session().scalars(
            select(Job)
            .where(
                Job.status == Status.IN_QUEUE,
                Job.runpod_id.is_not(None),
                Job.endpoint == name,
            )
            .order_by(Job.created_at)
        )
    )


@bp.get("/purge")
@admin_required
def purge_confirm():
    """The step before a purge: how many jobs it cancels, which, and a button that does it
    (a plain form: it works without JavaScript)."""
    name = _purge_target()
    snapshot = load_snapshot(get_session(), name) or {}
    at_endpoint = ((snapshot.get("health") or {}).get("jobs") or {}).get("inQueue")
    return render_template(
        "purge.html",
        endpoint=name,
        several=services().fleet.several,
        jobs=_purgeable(name),
        at_endpoint=at_endpoint,
    )


@bp.post("/purge")
@admin_required
def purge():
    name = _purge_target()
    if request.form.get("confirm") != "yes":
        # Only the confirmation page's button purges; anything else is asked first.
        # ``endpoint`` is url_for's own argument name, so the query is added by hand.
        return redirect(f"{url_for('admin.purge_confirm')}?{urlencode({'endpoint': name})}", 303)
    services().enqueue("tasks.purge_queue", name)
    which = f"endpoint {name}'s queue" if services().fleet.several else "the endpoint's queue"
    flash(f"Purging {which}: its queued jobs will show as cancelled.")
    return redirect(url_for("admin.dashboard"), code=303)


@bp.post("/jobs/<job_id>/<action>")
@admin_required
def job_action(job_id: str, action: str):
    db = get_session()
    job = job_or_404(job_id)
    try:
        if action == "cancel":
            cancel_job(db, job, services())
        elif action == "retry":
            retry_job(db, job, services())
        else:
            abort(404)
        flash(f"{action}: job {job_id}")
    except JobError as exc:
        flash(str(exc))
    return redirect(url_for("admin.dashboard"), code=303)
