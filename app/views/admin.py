"""Admin pages and actions: login, endpoint dashboard, purge queue, cancel, retry."""

from __future__ import annotations

from urllib.parse import urlparse

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from sqlalchemy import func, select

from app.auth import (
    admin_required,
    check_admin_password,
    end_admin_session,
    login_failed,
    login_locked,
    start_admin_session,
)
from app.db import get_session
from app.diagnosis import queue_words
from app.endpoint import load_snapshot
from app.extensions import enqueue, get_settings, get_storage
from app.jobs import JobError, cancel_job, describe, retry_job
from app.models import TERMINAL, Job, Status
from app.polling import poll_plan
from app.ratelimit import in_words

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


@bp.get("/")
@admin_required
def dashboard():
    db = get_session()
    counts = dict(db.execute(select(Job.status, func.count()).group_by(Job.status)).all())
    active = db.scalars(
        select(Job)
        .where(Job.status.not_in([s.value for s in TERMINAL]))
        .order_by(Job.created_at)
        .limit(100)
    ).all()
    recent = db.scalars(select(Job).order_by(Job.created_at.desc()).limit(30)).all()
    snapshot = load_snapshot(db) or {}
    banners = []
    if snapshot.get("error"):
        banners.append(snapshot["error"])
    if snapshot.get("diagnosis"):
        banners.append(snapshot["diagnosis"])
    for job in active:
        if job.diagnosis and job.diagnosis not in banners:
            banners.append(job.diagnosis)
    spend = db.scalar(select(func.coalesce(func.sum(Job.cost_usd), 0.0)))
    return render_template(
        "admin.html",
        counts={s.value: counts.get(s.value, 0) for s in Status},
        active=active,
        recent=recent,
        snapshot=snapshot,
        workers=queue_words(snapshot.get("health"), snapshot.get("workers")),
        banners=banners,
        spend=spend,
        polling=poll_plan(db, get_settings()),
        describe=describe,
        settings=get_settings(),
    )


@bp.post("/refresh")
@admin_required
def refresh():
    enqueue("tasks.refresh_endpoint")
    flash("Asked the endpoint for its health; reload in a few seconds.")
    return redirect(url_for("admin.dashboard"), code=303)


@bp.post("/purge")
@admin_required
def purge():
    enqueue("tasks.purge_queue")
    flash("Purging the endpoint's queue: queued jobs will show as cancelled.")
    return redirect(url_for("admin.dashboard"), code=303)


@bp.post("/jobs/<job_id>/<action>")
@admin_required
def job_action(job_id: str, action: str):
    db = get_session()
    job = db.get(Job, job_id) if len(job_id) <= 36 else None
    if job is None:
        abort(404, description="no such job")
    try:
        if action == "cancel":
            cancel_job(db, job, settings=get_settings(), storage=get_storage(), enqueue=enqueue)
        elif action == "retry":
            retry_job(db, job, storage=get_storage(), enqueue=enqueue)
        else:
            abort(404)
        flash(f"{action}: job {job_id}")
    except JobError as exc:
        flash(str(exc))
    return redirect(url_for("admin.dashboard"), code=303)
