"""Flask CLI: ``flask db-upgrade``, ``flask admin purge|cancel|retry|health|reconcile|cleanup``
and ``flask jobs submit FILE [--pipeline NAME] [--param k=v ...] [--wait]``.

Admin commands act directly (they are run by an operator who wants the answer now);
``jobs submit`` goes through the same service as the upload form and lets the Celery
worker submit and poll.
"""

from __future__ import annotations

import functools
import json
import mimetypes
import shutil
import sys
import time
from typing import Any

import click
from flask import Flask
from flask.cli import AppGroup

from app.clients import quotas
from app.clients import tokens as api_tokens
from app.db import session_scope
from app.endpoints import breaker, budgets
from app.endpoints.diagnosis import queue_words
from app.endpoints.health import refresh_snapshots
from app.lifecycle import spend
from app.lifecycle.jobs import JobError, cancel_job, create_job, find_job, retry_job
from app.lifecycle.polling import poll_plan
from app.lifecycle.reconcile import cleanup, purge, reconcile
from app.migrate import upgrade
from app.models import Job, Status
from app.services import JobAPI, JobAPIError, services
from app.web.words import describe

admin = AppGroup("admin", help="Operate the endpoint and the jobs.")
jobs = AppGroup("jobs", help="Submit and follow jobs from the command line.")


def _fail(message: str) -> None:
    raise click.ClickException(message)


def _job(session, job_id: str) -> Job:
    job = find_job(session, job_id)
    if job is None:
        _fail(f"no job {job_id}")
    return job


def _endpoint_name(name: str | None, action: str) -> str | None:
    """The endpoint ``--endpoint`` names (refused, listing them, when unknown); the one
    endpoint when there is one; None (after listing them) when several leave it open."""
    fleet = services().fleet
    if name is not None:
        if name not in fleet:
            _fail(fleet.unknown_words(name))
        return name
    if not fleet.several:
        return fleet.names[0]
    click.echo(
        f"several endpoints; {action} acts on one: pass --endpoint NAME. Endpoints:", err=True
    )
    for endpoint in fleet.endpoints:
        click.echo(f"  {endpoint.name}: {', '.join(endpoint.pipelines)}", err=True)
    return None


def _endpoint_api(name: str) -> JobAPI:
    if not services().settings.configured(name):
        _fail(
            f"endpoint {name} is not configured: set RUNPOD_API_KEY and "
            + (
                "RUNPOD_ENDPOINT_ID"
                if not services().fleet.several
                else f"{name}= in RUNPOD_ENDPOINTS"
            )
        )
    return services().api_for(name)


def _api_errors(fn):
    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except JobAPIError as exc:
            _fail(str(exc))

    return wrapped


@admin.command("purge")
@click.option("--endpoint", "endpoint", default=None, help="the endpoint (name) to purge")
@_api_errors
def purge_command(endpoint: str | None) -> None:
    """Purge one endpoint's queue; its queued jobs become CANCELLED, other endpoints' stay.
    With several endpoints, --endpoint NAME is required (purging all at once is never what
    a crash loop on one calls for)."""
    name = _endpoint_name(endpoint, "purge")
    if name is None:
        _fail("nothing purged")
    _endpoint_api(name)  # refuses when that endpoint is not configured
    with session_scope() as session:
        result = purge(session, services(), name)
    which = f"purged endpoint {name}: it" if services().fleet.several else "purged: the endpoint"
    click.echo(
        f"{which} removed {result['removed']} queued job(s); "
        f"{result['cancelled']} job(s) here are now CANCELLED"
    )


@admin.command("cancel")
@click.argument("job_id")
def cancel_command(job_id: str) -> None:
    """Cancel a job."""
    with session_scope() as session:
        job = _job(session, job_id)
        try:
            cancel_job(session, job, services())
        except JobError as exc:
            _fail(str(exc))
        click.echo(f"job {job_id}: {describe(session.get(Job, job_id)).headline}")


@admin.command("retry")
@click.argument("job_id")
def retry_command(job_id: str) -> None:
    """Run a failed, cancelled or timed-out job again."""
    with session_scope() as session:
        job = _job(session, job_id)
        try:
            retry_job(session, job, services())
        except JobError as exc:
            _fail(str(exc))
        click.echo(f"job {job_id}: queued again")


@admin.command("health")
@click.option("--endpoint", "endpoint", default=None, help="one endpoint (default: each)")
@click.option("--json", "as_json", is_flag=True, help="print the raw report")
def health_command(endpoint: str | None, as_json: bool) -> None:
    """Ask each endpoint (or one) for its health and explain it."""
    fleet = services().fleet
    if endpoint is not None and endpoint not in fleet:
        _fail(fleet.unknown_words(endpoint))
    names = [endpoint] if endpoint else fleet.names
    for name in names:
        _endpoint_api(name)
    with session_scope() as session:
        reports = refresh_snapshots(session, services(), names)
        for name, data in reports.items():
            reports[name] = dict(data, polling=poll_plan(session, services().settings, name))
    if as_json:
        click.echo(json.dumps(reports if fleet.several else reports[names[0]], indent=2))
        return
    failed = []
    for name, data in reports.items():
        label = f"endpoint {data['endpoint_id']}" + (f" ({name})" if fleet.several else "")
        if data.get("error"):
            click.echo(f"{label}: {data['error']}", err=True)
            failed.append(name)
            continue
        plan = data["polling"]
        jobs_ = data["health"].get("jobs", {})
        click.echo(f"{label}: workers: {queue_words(data['health'], data.get('workers'))}")
        click.echo(f"jobs: {jobs_.get('inQueue', 0)} queued, {jobs_.get('inProgress', 0)} running")
        click.echo(
            f"polling: {plan['in_flight']} in flight, each polled at least every "
            f"{plan['effective_cap_s']:.0f} s (effective cap; /status budget "
            f"{plan['budget_per_10s']} per 10 s)"
        )
        if data.get("diagnosis"):
            click.echo(f"diagnosis: {data['diagnosis']}")
    if failed:
        _fail(f"cannot read the health of {', '.join(failed)}")


@admin.command("budget")
@click.option("--set", "set_", metavar="PERIOD=USD", help="store a budget: day=50 or month=900")
@click.option("--clear", type=click.Choice(budgets.PERIODS), help="drop a stored budget")
@click.option("--endpoint", default=budgets.ALL, help="the endpoint it is for (default: all)")
@click.option("--release", is_flag=True, help="send the jobs a budget holds, once, anyway")
def budget_command(set_: str | None, clear: str | None, endpoint: str, release: bool) -> None:
    """Show each GPU budget and its use; raise one (--set) or release held jobs."""
    with session_scope() as session:
        if set_:
            period, _, usd = set_.partition("=")
            try:
                budgets.set_override(session, period.strip(), endpoint, float(usd))
            except ValueError as exc:
                why = exc if period in budgets.PERIODS else "use day=USD or month=USD"
                _fail(f"--set {set_!r}: {why}")
            sent = spend.send_held(session, services())
            click.echo(f"budget stored; {sent} held job(s) asked to start again")
        if clear:
            budgets.set_override(session, clear, endpoint, None)
            click.echo(f"stored {clear} budget for {endpoint} cleared")
        if release:
            ids = spend.release_held(session, services())
            click.echo(f"released {len(ids)} held job(s)")
        uses = budgets.use(session, services().settings)
        held = budgets.held_jobs(session)
    if not uses:
        click.echo("no GPU budget is set (BUDGET_USD_PER_DAY, BUDGET_USD_PER_MONTH)")
    for use in uses:
        scope = "all endpoints" if use.scope == budgets.ALL else f"endpoint {use.scope}"
        click.echo(
            f"{use.period} budget for {scope}: ${use.spent_usd:,.4f} of ${use.limit_usd:,.2f} spent"
        )
    click.echo(f"held jobs: {len(held)}")


@admin.command("resume")
@click.argument("endpoint")
def resume_command(endpoint: str) -> None:
    """Close an endpoint's breaker: one probe job goes first."""
    with session_scope() as session:
        state = breaker.load(session, endpoint)
        if not state.open:
            _fail(f"the breaker of endpoint {endpoint!r} is not open")
        state = spend.resume(session, services(), endpoint)
    probe = f"; probe job {state.probe}" if state.probe else "; no job was held"
    click.echo(f"endpoint {endpoint} resumed{probe}")


@admin.command("reconcile")
def reconcile_command() -> None:
    """Run one reconcile sweep now."""
    with session_scope() as session:
        counts = reconcile(session, services())
    click.echo("reconciled: " + ", ".join(f"{k} {v}" for k, v in counts.items()))


@admin.command("cleanup")
def cleanup_command() -> None:
    """Delete files of jobs past the retention period."""
    with session_scope() as session:
        counts = cleanup(session, services())
    click.echo(
        f"cleaned up: {counts['files']} file(s) of {counts['jobs']} job(s), "
        f"{counts['staging']} stale upload(s)"
    )


def _parse_params(values: tuple[str, ...]) -> dict[str, str]:
    params = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            _fail(f"--param {item!r}: use NAME=VALUE")
        params[key] = value
    return params


@jobs.command("submit")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, readable=True))
@click.option("--pipeline", default=None, help="pipeline name (default: the first of PIPELINES)")
@click.option("--param", "params", multiple=True, metavar="NAME=VALUE", help="a parameter")
@click.option("--wait", is_flag=True, help="show progress until the job ends")
@click.option("--timeout", default=3600.0, show_default=True, help="seconds to wait at most")
def submit_command(
    file: str, pipeline: str | None, params: tuple[str, ...], wait: bool, timeout: float
) -> None:
    """Upload FILE as a new job."""
    settings = services().settings
    storage = services().storage
    with open(file, "rb") as src, storage.staging_file() as staged:
        shutil.copyfileobj(src, staged, 1024 * 1024)
    with session_scope() as session:
        try:
            job = create_job(
                session,
                services(),
                staged_path=staged.name,
                filename=file.rsplit("/", 1)[-1],
                declared_type=mimetypes.guess_type(file)[0],
                pipeline_name=pipeline or settings.pipelines[0],
                raw_params=_parse_params(params),
            )
        except JobError as exc:
            from pathlib import Path

            Path(staged.name).unlink(missing_ok=True)
            _fail(str(exc))
        services().enqueue("tasks.submit", job.id)
        job_id = job.id
    page = f"{settings.public_base_url}/jobs/{job_id}"
    click.echo(f"job {job_id} created: {page}")
    if wait:
        _follow(job_id, timeout)


def show_progress(bar: Any, done: int, percent: object, label: str) -> int:
    """Move ``bar`` to ``percent`` under ``label`` in one redraw, and return the new figure.
    The label is set before the bar moves: click draws on ``update``, so a label set after
    it would show one step late (the bar at 100 % still saying "running")."""
    moved = isinstance(percent, int | float) and int(percent) > done
    relabel = bar.label != label
    bar.label = label
    if moved:
        bar.update(int(percent) - done)  # type: ignore[arg-type]
        return int(percent)  # type: ignore[arg-type]
    if relabel:
        bar.render_progress()
    return done


def _follow(job_id: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    with click.progressbar(length=100, label="queued", file=sys.stderr) as bar:
        done = 0
        while time.monotonic() < deadline:
            with session_scope() as session:
                job = session.get(Job, job_id)
                words = describe(job)
                percent = (job.progress or {}).get("percent") if job.progress else None
                if job.terminal:
                    percent = 100
                done = show_progress(bar, done, percent, words.headline[:40])
                if job.terminal:
                    break
            time.sleep(0.5)
        else:
            _fail(f"job {job_id} did not finish within {timeout:.0f} s; it continues")
    with session_scope() as session:
        job = session.get(Job, job_id)
        words = describe(job)
        if job.status != Status.COMPLETED:
            _fail(f"job {job_id} {words.headline}: {words.detail or ''}".strip())
        click.echo(f"job {job_id} done")
        if job.output_size and job.output_key:
            click.echo(f"result: {services().storage.get_url(job.output_key, 24 * 3600)}")
        if job.result:
            click.echo(f"result JSON: {json.dumps(job.result)}")


tokens_group = AppGroup("tokens", help="Named API tokens with quotas (issue 20).")
admin.add_command(tokens_group)


@tokens_group.command("create")
@click.argument("name")
@click.option("--max-concurrent", type=click.IntRange(min=1), help="unfinished jobs at once")
@click.option("--max-jobs-per-day", type=click.IntRange(min=1), help="jobs per UTC day")
@click.option("--max-spend-per-day", type=click.FloatRange(min=0, min_open=True), help="USD")
def tokens_create(
    name: str,
    max_concurrent: int | None,
    max_jobs_per_day: int | None,
    max_spend_per_day: float | None,
) -> None:
    """Make token NAME; prints it and its webhook secret, once."""
    with session_scope() as session:
        try:
            made = api_tokens.create(
                session,
                services().settings.secret_key,
                name,
                max_concurrent=max_concurrent,
                max_jobs_per_day=max_jobs_per_day,
                max_spend_per_day=max_spend_per_day,
            )
        except api_tokens.TokenError as exc:
            _fail(str(exc))
    click.echo(f"token {name} created. Shown this once; keep both somewhere safe:")
    click.echo(f"  token:          {made.token}")
    click.echo(f"  webhook secret: {made.webhook_secret}")


@tokens_group.command("list")
def tokens_list() -> None:
    """Every named token, its limits and today's use (UTC day)."""
    with session_scope() as session:
        rows = api_tokens.all_tokens(session)
        if not rows:
            click.echo("no named tokens: make one with `flask admin tokens create NAME`")
        for row in rows:
            used = quotas.usage(session, row)
            limits = ", ".join(
                f"{label} {value}"
                for label, value in (
                    ("max-concurrent", row.max_concurrent),
                    ("max-jobs-per-day", row.max_jobs_per_day),
                    ("max-spend-per-day", row.max_spend_per_day),
                )
                if value is not None
            )
            state = f"revoked {row.revoked_at:%Y-%m-%d %H:%M}" if row.revoked_at else "active"
            click.echo(
                f"{row.name}\t{state}\t{limits or 'no limits'}\trunning {used.running}, "
                f"today {used.jobs_today} jobs ${used.spend_today:.4f}"
            )


@tokens_group.command("revoke")
@click.argument("name")
def tokens_revoke(name: str) -> None:
    """Revoke token NAME: refused from the next request on."""
    with session_scope() as session:
        try:
            api_tokens.revoke(session, name)
        except api_tokens.TokenError as exc:
            _fail(str(exc))
    click.echo(f"token {name} revoked")


def register(app: Flask) -> None:
    @app.cli.command("db-upgrade")
    def db_upgrade() -> None:
        """Create or upgrade the database tables."""
        upgrade(services().settings.database_url)
        click.echo("database is up to date")

    app.cli.add_command(admin)
    app.cli.add_command(jobs)
