"""``python -m bench pipeline``: the web app, Celery and the local endpoint, measured end to end.

Starts the stack on embedded defaults (private Redis, the local endpoint with real runpod SDK
workers running the echo pipeline, a Celery worker and beat, gunicorn) and prints JSON:

- ``completion_latency_ms``: from the endpoint recording a job done (its ``finished_at``) to
  the app's database showing COMPLETED (the job row's ``finished_at``), with webhooks and with
  polling only; p50/p99.
- ``submit_latency_ms``: from the API request to the endpoint receiving ``/run`` (its
  ``created_at``); p50/p99.
- ``burst``: N jobs submitted at once; whether all completed, seconds, and job-API calls per
  job counted at the endpoint (its ``/stats`` route).
- ``upload``: a 1 GiB upload through the form (CSRF token and all): seconds, MiB/s, and the
  gunicorn worker's peak RSS growth.
- ``progress``: jobs whose worker reports progress about once a second (echo, ``sleep_s``):
  from the worker sending an update (its ``progress.reported_at``) to the page's data
  (``GET /jobs/<id>.json``, what the job page reads) showing it, p50/p99; and the ``/status``
  calls counted at the endpoint meanwhile against the polls the app scheduled for those jobs
  (anything beyond them is what following progress cost in ``/status`` calls: target none).
- ``inflight``: N synthetic in-flight jobs (real jobs queued at the endpoint, whose workers
  never take them): ``/status`` calls per second and per sliding 10 s (counted at the
  endpoint) against the budget, and whether every job was polled within its effective cap
  ``max(POLL_CAP_S, N / budget pace)``, observed for one whole cap plus a margin.
- ``endpoints``: two endpoints in one local endpoint process, as ``make run`` serves them
  (``video``: at most 1 worker, each job ``--video-job-s`` long; ``light``: echo, at most 2
  workers). Echo jobs on ``light`` at a steady rate, first with ``video`` idle, then while
  ``video`` has long jobs running and queued, in the same run: p50/p99 of each echo job's
  completion latency (API request to the app's row COMPLETED) and the ratio of the p50s
  (target: at most 1.1).
- ``eta``: the waiting page's estimate against what happened. One GPU worker; a history of
  echo jobs of varied length, then a batch submitted at once. Every second each queued
  job's page data (``GET /jobs/<id>.json``, what the page words) gives its estimated start
  and end; once all ended, each estimate is compared with the job row's ``started_at`` and
  ``finished_at``: absolute error as a share of the time that was actually left, median and
  p90, for jobs queued behind others (target: median ≤ 25 %), and how often the truth fell
  inside the range the page showed.
- ``webhooks``: signed deliveries to a client's receiver, and jobs beside 200 deliveries
  hanging on a dead receiver (``bench/webhooks.py``).

Timestamps on both sides are wall-clock times of this one machine.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests

from bench import webhooks as client_webhooks
from deploy.runpod.vocabulary import TERMINAL

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "bench-api-token-" + uuid.uuid4().hex[:12]
# The smallest valid PNG: the echo pipeline ignores the content, the app checks the type.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082"
)
MEASUREMENT_ROUTES = frozenset({"stats", "workers", "logs"})
SECTIONS = ("latency", "burst", "upload", "progress", "inflight", "eta", "endpoints", "webhooks")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench pipeline", description=__doc__.split("\n")[0])
    p.add_argument("--only", default=",".join(SECTIONS), help=f"sections ({','.join(SECTIONS)})")
    p.add_argument("--samples", type=int, default=30, help="jobs per latency figure (30)")
    p.add_argument("--progress-jobs", type=int, default=8, help="jobs for the progress figure (8)")
    p.add_argument("--burst", type=int, default=200, help="jobs submitted at once (200)")
    p.add_argument("--upload-mib", type=int, default=1024, help="upload size in MiB (1024)")
    p.add_argument("--inflight", type=int, default=10_000, help="synthetic in-flight jobs")
    p.add_argument(
        "--inflight-seconds",
        type=float,
        default=None,
        help="observe them this long (default: their effective cap plus a margin)",
    )
    p.add_argument("--workers-max", type=int, default=2, help="the endpoint's workersMax (2)")
    p.add_argument("--concurrency", type=int, default=4, help="Celery worker concurrency (4)")
    p.add_argument("--endpoint-jobs", type=int, default=30, help="echo jobs per phase (30)")
    p.add_argument(
        "--endpoint-interval", type=float, default=0.5, help="seconds between echo jobs (0.5)"
    )
    p.add_argument("--endpoint-rounds", type=int, default=3, help="alone/busy phases in turn (3)")
    p.add_argument("--video-job-s", type=float, default=120, help="each video job's length")
    p.add_argument("--eta-jobs", type=int, default=6, help="jobs queued at once for eta (6)")
    p.add_argument("--keep", action="store_true", help="keep the working folder and its logs")
    return p.parse_args(argv)


def percentiles(values: list[float]) -> dict[str, float | int | None]:
    if not values:
        return {"n": 0, "p50": None, "p99": None, "max": None}
    ordered = sorted(values)

    def pick(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)

    return {
        "n": len(ordered),
        "p50": round(statistics.median(ordered), 1),
        "p99": pick(0.99),
        "max": round(ordered[-1], 1),
    }


@dataclass
class Stack:
    env: dict[str, str]
    web: Any
    endpoint: Any
    worker: Any
    workdir: Path

    @property
    def db_path(self) -> Path:
        return Path(self.env["DATABASE_URL"].removeprefix("sqlite:///"))

    def app_db(self) -> sqlite3.Connection:
        return sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=30)

    def endpoint_db(self) -> sqlite3.Connection:
        path = self.endpoint.state_dir / "jobs.sqlite3"
        return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)

    def api(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {TOKEN}", **kwargs.pop("headers", {})}
        return requests.request(method, self.web.url(path), headers=headers, timeout=60, **kwargs)

    def submit(
        self,
        params: dict[str, Any] | None = None,
        pipeline: str = "echo",
        *,
        token: str = TOKEN,
        **fields: str,
    ) -> tuple[str, float]:
        """POST /api/jobs with a tiny image (echo by default); (job id, wall time sent).
        ``fields`` are more form fields (``webhook``)."""
        sent = time.time()
        answer = self.api(
            "POST",
            "/api/jobs",
            files={"file": ("pixel.png", PNG, "image/png")},
            data={"pipeline": pipeline, "params": json.dumps(params or {}), **fields},
            headers={"Authorization": f"Bearer {token}"},
        )
        if answer.status_code != 201:
            raise RuntimeError(f"POST /api/jobs answered {answer.status_code}: {answer.text}")
        return answer.json()["id"], sent

    def endpoint_requests(self) -> dict[str, int]:
        return self.endpoint.api().stats()["requests"]

    def column(self, name: str, job_ids: list[str]) -> dict[str, Any]:
        """``{job id: value}`` of the jobs table's column ``name`` (one of this module's)."""
        with contextlib.closing(self.app_db()) as db:
            return dict(
                db.execute(
                    # Only the column and "?" placeholders are formatted in; the ids are bound.
                    f"SELECT id, {name} FROM jobs WHERE id IN ({','.join('?' * len(job_ids))})",  # noqa: S608
                    job_ids,
                ).fetchall()
            )

    def wait_terminal(self, job_ids: list[str], timeout: float) -> dict[str, str]:
        """Poll the app's database until every job is terminal; {job id: status}."""
        deadline = time.monotonic() + timeout
        wanted = set(job_ids)
        while True:
            rows = self.column("status", sorted(wanted))
            done = {k: v for k, v in rows.items() if v in TERMINAL}
            if len(done) == len(wanted) or time.monotonic() > deadline:
                return {job: rows.get(job, "MISSING") for job in job_ids}
            time.sleep(0.05)


@contextlib.contextmanager
def stack(
    workdir: Path,
    args: argparse.Namespace,
    endpoint_options: dict[str, Any] | None = None,
    endpoints: list[Any] | None = None,
    deliveries: bool = False,
    **app_extra: str,
) -> Iterator[Stack]:
    """The whole stack, each part a real process; everything stopped on exit. ``endpoints``:
    several endpoints (``endpoint_spec`` each) in the one local endpoint process."""
    from deploy.stack.services import whole_stack

    endpoint_options = {
        "workers_max": args.workers_max,
        "idle_timeout": 30,
        **(endpoint_options or {}),
    }
    extra = {"API_TOKENS": TOKEN, "PIPELINES": "echo", "LOG_LEVEL": "WARNING", **app_extra}
    with whole_stack(
        workdir,
        endpoint_options=None if endpoints else endpoint_options,
        endpoints=endpoints,
        extra_env=extra,
        concurrency=args.concurrency,
        external_redis=False,
        deliveries=deliveries,
    ) as parts:
        yield Stack(
            env=parts.env,
            web=parts.web,
            endpoint=parts.endpoint,
            worker=parts.worker,
            workdir=workdir,
        )


def measure_latency(s: Stack, samples: int) -> dict[str, Any]:
    """Jobs one at a time on a warm worker: submit and completion latency."""
    warm, _ = s.submit()
    s.wait_terminal([warm], timeout=180)
    submits, completions, failed = [], [], 0
    for _ in range(samples):
        job_id, sent = s.submit()
        status = s.wait_terminal([job_id], timeout=120)[job_id]
        if status != "COMPLETED":
            failed += 1
            continue
        with contextlib.closing(s.app_db()) as db:
            runpod_id, finished = db.execute(
                "SELECT runpod_id, finished_at FROM jobs WHERE id = ?", (job_id,)
            ).fetchone()
        with contextlib.closing(s.endpoint_db()) as db:
            created, ep_finished = db.execute(
                "SELECT created_at, finished_at FROM jobs WHERE id = ?", (runpod_id,)
            ).fetchone()
        submits.append((created - sent) * 1000)
        completions.append((_wall(finished) - ep_finished) * 1000)
    return {
        "submit": percentiles(submits),
        "completion": percentiles(completions),
        "failed": failed,
    }


def _echo_stream(s: Stack, jobs: int, interval_s: float) -> list[float]:
    """``jobs`` echo jobs, one every ``interval_s``; each one's completion latency in ms
    (API request sent to the app's row COMPLETED), failed ones left out."""
    sent: dict[str, float] = {}
    for _ in range(jobs):
        started = time.monotonic()
        job_id, at = s.submit()
        sent[job_id] = at
        time.sleep(max(0.0, interval_s - (time.monotonic() - started)))
    statuses = s.wait_terminal(list(sent), timeout=300)
    finished = s.column("finished_at", list(sent))
    return [
        (_wall(finished[job_id]) - at) * 1000
        for job_id, at in sent.items()
        if statuses[job_id] == "COMPLETED"
    ]


def _video_in_flight(s: Stack, status: str = "'IN_QUEUE', 'IN_PROGRESS'") -> int:
    with contextlib.closing(s.app_db()) as db:
        return db.execute(
            # ``status`` is one of this module's literals, never input.
            f"SELECT count(*) FROM jobs WHERE endpoint = 'video' AND status IN ({status})"  # noqa: S608
        ).fetchone()[0]


def measure_endpoints(
    s: Stack, jobs: int, interval_s: float, video_jobs: int, rounds: int = 2
) -> dict[str, Any]:
    """Echo on ``light`` alone, then while ``video`` runs long jobs (one running, the rest
    queued behind it), in one stack, ``rounds`` times in turn (so drift in this machine's
    load falls on both): does a busy endpoint slow the other's jobs?"""
    warm, _ = s.submit()
    s.wait_terminal([warm], timeout=180)
    alone: list[float] = []
    busy: list[float] = []
    per_phase = max(1, jobs // rounds)
    for _ in range(rounds):
        alone += _echo_stream(s, per_phase, interval_s)
        videos = [s.submit(pipeline="upscale")[0] for _ in range(video_jobs)]
        # The first round waits for a video job to run; in later ones the video worker may
        # still be in the last round's cancelled job (a cancel does not stop a handler).
        later = bool(busy)
        s.worker.process.wait_until(
            lambda later=later: (
                _video_in_flight(s, "'IN_PROGRESS'")
                or (later and _video_in_flight(s) == video_jobs)
            ),
            "video jobs at the video endpoint",
            120,
        )
        busy += _echo_stream(s, per_phase, interval_s)
        assert _video_in_flight(s) == video_jobs, "the video jobs ran throughout"
        for job_id in videos:
            s.api("POST", f"/api/jobs/{job_id}/cancel")
        s.wait_terminal(videos, timeout=120)
    p_alone, p_busy = percentiles(alone), percentiles(busy)
    ratio = p_busy["p50"] / p_alone["p50"] if p_alone.get("p50") and p_busy.get("p50") else None
    return {
        "light_alone_ms": p_alone,
        "light_while_video_busy_ms": p_busy,
        "p50_ratio": round(ratio, 3) if ratio else None,
        "rounds": rounds,
        "echo_interval_s": interval_s,
    }


def measure_progress(s: Stack, jobs: int, sleep_s: float = 6.0) -> dict[str, Any]:
    """Worker-to-page progress latency, one job at a time on a warm worker, and the
    ``/status`` calls the endpoint counted meanwhile against the app's own polls."""
    warm, _ = s.submit()
    s.wait_terminal([warm], timeout=180)
    before = s.endpoint_requests().get("status", 0)
    latencies: list[float] = []
    page_reads, ids = 0, []
    session = requests.Session()
    for _ in range(jobs):
        job_id, _sent = s.submit({"sleep_s": sleep_s})
        ids.append(job_id)
        seen: set[float] = set()
        deadline = time.monotonic() + sleep_s + 120
        while time.monotonic() < deadline:
            data = session.get(s.web.url(f"/jobs/{job_id}.json"), timeout=30).json()
            now = time.time()
            page_reads += 1
            reported = (data.get("progress") or {}).get("reported_at")
            if isinstance(reported, int | float) and reported not in seen:
                seen.add(reported)
                latencies.append((now - reported) * 1000)
            if data.get("terminal"):
                break
            time.sleep(0.01)
    session.close()
    # The last poll of a job may land after its final update: let those settle first.
    time.sleep(2)
    status_calls = s.endpoint_requests().get("status", 0) - before
    marks = ",".join("?" * len(ids))
    with contextlib.closing(s.app_db()) as db:
        polls = db.execute(
            # Only "?" placeholders are formatted in; the ids are bound.
            f"SELECT COALESCE(SUM(poll_count), 0) FROM jobs WHERE id IN ({marks})",  # noqa: S608
            ids,
        ).fetchone()[0]
    return {
        "latency_ms": percentiles(latencies),
        "jobs": jobs,
        "page_data_reads": page_reads,
        "status_calls_at_endpoint": status_calls,
        # Poll tasks the app scheduled for these jobs (with webhooks the first comes 15 s in,
        # so most never run): every /status call beyond them came from following progress.
        "polls_scheduled_by_the_app": polls,
        "extra_status_calls": max(status_calls - polls, 0),
    }


def measure_eta(s: Stack, jobs: int) -> dict[str, Any]:
    """The queue estimate's error: see the module docstring (``eta``)."""
    import random

    rng = random.Random(21)
    lengths = [4.0, 5.0, 6.0, 7.0, 8.0]  # echo's sleep_s: run times that vary, as real ones do
    history = [s.submit({"sleep_s": rng.choice(lengths)})[0] for _ in range(5)]
    s.wait_terminal(history, timeout=300)
    batch = [s.submit({"sleep_s": rng.choice(lengths)})[0] for _ in range(jobs)]
    readings: list[dict[str, Any]] = []
    session = requests.Session()
    deadline = time.monotonic() + 60 + jobs * 30
    while time.monotonic() < deadline:
        open_jobs = 0
        for job_id in batch:
            data = session.get(s.web.url(f"/jobs/{job_id}.json"), timeout=30).json()
            now = time.time()
            queue = data.get("queue") or {}
            if data.get("terminal"):
                continue
            open_jobs += 1
            if data["status"] == "IN_QUEUE" and queue.get("eta_s") is not None:
                readings.append({"job": job_id, "at": now, **queue})
        if not open_jobs:
            break
        time.sleep(1.0)
    session.close()
    with contextlib.closing(s.app_db()) as db:
        rows = {
            row[0]: (_wall(row[1]), _wall(row[2]))
            for row in db.execute(
                # Only "?" placeholders are formatted in; the ids are bound.
                f"SELECT id, started_at, finished_at FROM jobs WHERE id IN ({','.join('?' * len(batch))})"  # noqa: S608, E501
                " AND started_at IS NOT NULL AND finished_at IS NOT NULL",
                batch,
            ).fetchall()
        }
    end_errors, start_errors, inside = [], [], 0
    behind = [r for r in readings if r["ahead"] >= 1 and r["job"] in rows]
    for r in behind:
        started, finished = rows[r["job"]]
        left = finished - r["at"]
        end_errors.append(abs(r["eta_s"] - left) / left * 100)
        wait = started - r["at"]
        if wait > 1 and r.get("starts_s") is not None:
            start_errors.append(abs(r["starts_s"] - wait) / wait * 100)
        low, high = r["done_in_s"]
        inside += low <= left <= high
    return {
        "jobs": jobs,
        "readings_behind_others": len(behind),
        "done_error_pct": percentiles(end_errors) | {"p90": _pick(end_errors, 0.9)},
        "start_error_pct": percentiles(start_errors) | {"p90": _pick(start_errors, 0.9)},
        "truth_inside_range_pct": round(100 * inside / len(behind), 1) if behind else None,
    }


def _pick(values: list[float], q: float) -> float | None:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1) if ordered else None


def _wall(value: str | datetime) -> float:
    """A SQLAlchemy DateTime(timezone=True) as SQLite stores it, in epoch seconds."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


def measure_burst(s: Stack, count: int) -> dict[str, Any]:
    before = s.endpoint_requests()
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=16) as pool:
        job_ids = [job for job, _ in pool.map(lambda _: s.submit(), range(count))]
    submitted = time.monotonic() - started
    statuses = s.wait_terminal(job_ids, timeout=max(300, count * 2))
    elapsed = time.monotonic() - started
    # Completion polls may still be in flight for a moment: let the counts settle.
    time.sleep(2)
    after = s.endpoint_requests()
    # The job API as the app uses it; the benchmark's own /stats reads are not the app's.
    calls = {
        k: after.get(k, 0) - before.get(k, 0)
        for k in after
        if k not in MEASUREMENT_ROUTES and after.get(k, 0) != before.get(k, 0)
    }
    outcome: dict[str, int] = {}
    for status in statuses.values():
        outcome[status] = outcome.get(status, 0) + 1
    return {
        "jobs": count,
        "outcome": outcome,
        "all_completed": outcome.get("COMPLETED", 0) == count,
        "submit_s": round(submitted, 2),
        "total_s": round(elapsed, 2),
        "endpoint_calls": calls,
        "endpoint_calls_per_job": round(sum(calls.values()) / count, 2),
    }


class MultipartStream(io.RawIOBase):
    """A multipart/form-data body of ``size`` bytes of file content, generated on the fly."""

    CHUNK = 1024 * 1024

    def __init__(self, fields: dict[str, str], filename: str, content_type: str, size: int):
        self.boundary = "bench" + uuid.uuid4().hex
        part = '--{b}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
        head = b"".join(part.format(b=self.boundary, k=k, v=v).encode() for k, v in fields.items())
        head += (
            f'--{self.boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="{filename}"\r\nContent-Type: {content_type}\r\n\r\n'
        ).encode()
        self.parts = [head, None, f"\r\n--{self.boundary}--\r\n".encode()]
        self.size = size
        self.total = len(head) + size + len(self.parts[2])
        self.sent = 0
        self.zeros = bytes(self.CHUNK)

    def __len__(self) -> int:
        return self.total

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        head, _, tail = self.parts
        pos = self.sent
        if pos < len(head):
            out = head[pos:]
        elif pos < len(head) + self.size:
            out = self.zeros[: min(self.CHUNK, len(head) + self.size - pos)]
        elif pos < self.total:
            out = tail[pos - len(head) - self.size :]
        else:
            return b""
        if n is not None and n >= 0:
            out = out[:n]
        self.sent += len(out)
        return out


def rss_kib(pid: int) -> int:
    """Resident memory of ``pid`` in KiB (0 once it is gone)."""
    import psutil

    try:
        return psutil.Process(pid).memory_info().rss // 1024
    except psutil.Error:
        return 0


def measure_upload(s: Stack, mib: int) -> dict[str, Any]:
    from deploy.stack.processes import descendants

    session = requests.Session()
    form = session.get(s.web.url("/"), timeout=30)
    match = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', form.text) or re.search(
        r'value="([^"]+)"[^>]*name="csrf_token"', form.text
    )
    if not match:
        raise RuntimeError("no csrf_token in the upload form")
    workers = sorted(descendants(s.web.process.pid))
    baseline = {pid: rss_kib(pid) for pid in workers}
    peak = dict(baseline)
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            for pid in workers:
                with contextlib.suppress(OSError):
                    peak[pid] = max(peak[pid], rss_kib(pid))
            stop.wait(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    body = MultipartStream(
        {"csrf_token": match.group(1), "pipeline": "echo"},
        "big.mp4",
        "video/mp4",
        mib * 1024 * 1024,
    )
    started = time.monotonic()
    answer = session.post(
        s.web.url("/jobs"),
        data=body,
        headers={"Content-Type": body.content_type},  # requests sets Content-Length
        allow_redirects=False,
        timeout=600,
    )
    seconds = time.monotonic() - started
    stop.set()
    sampler.join()
    growth = max(peak[pid] - baseline[pid] for pid in workers) / 1024
    stored = None
    job_id = answer.headers.get("Location", "").rstrip("/").rsplit("/", 1)[-1]
    if job_id:
        with contextlib.closing(s.app_db()) as db:
            row = db.execute("SELECT input_size FROM jobs WHERE id = ?", (job_id,)).fetchone()
        stored = row[0] if row else None
    return {
        "mib": mib,
        "status": answer.status_code,
        "accepted": answer.status_code in (302, 303),
        "stored_bytes": stored,
        "seconds": round(seconds, 2),
        "mib_per_s": round(mib / seconds, 1),
        "web_peak_rss_growth_mib": round(growth, 1),
        "target_mib": 64,
    }


def measure_inflight(s: Stack, count: int, seconds: float | None) -> dict[str, Any]:
    """``count`` jobs queued at the endpoint (its workers never take any), each with an app
    job row IN_QUEUE whose poll message was lost; reconcile re-enqueues the polls. The
    endpoint must never see more ``/status`` requests in any 10 s than the budget, and every
    job must be polled within its effective cap (``app.lifecycle.polling.effective_cap``): observed
    for one whole cap plus a margin, so every job's first poll and the next ones fall in."""
    from app.lifecycle.polling import budget_pace, effective_cap
    from app.settings import Settings

    settings = Settings.from_env(s.env)
    api = s.endpoint.api()
    created = time.monotonic()
    with ThreadPoolExecutor(max_workers=8) as pool:
        runpod_ids = list(pool.map(lambda _: api.run({"pipeline": "echo"})["id"], range(count)))
    rows_added = _insert_inflight_jobs(s, runpod_ids)
    _progress(f"inflight: {rows_added} jobs queued in {time.monotonic() - created:.0f} s")
    budget = settings.status_budget_per_10s
    cap = effective_cap(settings, count)
    margin = max(30.0, 0.1 * cap)
    observe = seconds if seconds is not None else cap + margin
    if observe > MAX_OBSERVE_S:
        raise SystemExit(f"inflight: the effective cap is {cap:.0f} s; raise the budget")
    before = s.endpoint_requests().get("status", 0)
    started = time.time()
    _send_task(s, "tasks.reconcile")
    samples: list[tuple[float, int]] = [(started, before)]
    worst_age, next_scan, next_report = 0.0, 0.0, started + 30
    while time.time() - started < observe:
        time.sleep(0.25)
        samples.append((time.time(), s.endpoint_requests().get("status", 0)))
        if time.time() >= next_scan:
            worst_age = max(worst_age, _oldest_poll_age(s, started))
            next_scan = time.time() + 2.0
        if time.time() >= next_report:
            next_report += 30
            _progress(
                f"inflight: {time.time() - started:.0f}/{observe:.0f} s, "
                f"{samples[-1][1] - before} /status, worst 10 s {_worst_10s(samples)} of "
                f"{budget}, oldest poll {worst_age:.0f} s of cap {cap:.0f} s"
            )
    worst_age = max(worst_age, _oldest_poll_age(s, started))
    with contextlib.closing(s.app_db()) as db:
        polled, fewest, most = db.execute(
            "SELECT sum(last_polled_at IS NOT NULL), min(poll_count), max(poll_count) "
            "FROM jobs WHERE id LIKE 'bench-%'"
        ).fetchone()
    worst_10s = _worst_10s(samples)
    return {
        "jobs": rows_added,
        "observed_s": round(samples[-1][0] - started, 1),
        "budget_per_10s": budget,
        "planned_polls_per_s": round(budget_pace(settings), 1),
        "status_calls": samples[-1][1] - before,
        "status_per_1s_max": _worst_span(samples, 1.0),
        "status_per_10s_max": worst_10s,
        "within_budget": worst_10s <= budget,
        "poll_cap_s": settings.poll_cap_s,
        "effective_cap_s": round(cap, 1),
        "jobs_polled": polled,
        "polls_per_job_min_max": [fewest, most],
        "longest_wait_for_a_poll_s": round(worst_age, 1),
        "every_job_polled_within_cap": polled == rows_added and worst_age <= cap,
    }


MAX_OBSERVE_S = 1800.0  # keeps the run bounded


def _progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _worst_10s(samples: list[tuple[float, int]]) -> int:
    return _worst_span(samples, 10.0)


def _worst_span(samples: list[tuple[float, int]], span: float) -> int:
    """The most requests the endpoint counted in a sliding ``span`` seconds, from its counter
    sampled every 0.25 s: each span starts at a sample and ends at the first sample ``span``
    or more seconds later, so it errs on the high side."""
    worst, j = 0, 0
    for t0, n0 in samples:
        while j < len(samples) and samples[j][0] - t0 < span:
            j += 1
        if j == len(samples):
            break
        worst = max(worst, samples[j][1] - n0)
    return worst


def _oldest_poll_age(s: Stack, started: float) -> float:
    """Seconds since the least recently polled job's latest poll (since ``started`` for a
    job not polled yet): sampled every 2 s, its maximum is the longest any job waited."""
    with contextlib.closing(s.app_db()) as db:
        oldest, never = db.execute(
            "SELECT min(last_polled_at), sum(last_polled_at IS NULL) "
            "FROM jobs WHERE id LIKE 'bench-%'"
        ).fetchone()
    now = time.time()
    if never:
        return now - started
    return now - _wall(oldest) if oldest is not None else 0.0


def _insert_inflight_jobs(s: Stack, runpod_ids: list[str]) -> int:
    """Job rows IN_QUEUE, each with its sent attempt, as submit would have left them."""
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    from app.models import Attempt, AttemptState, Job, Status

    engine = create_engine(s.env["DATABASE_URL"])
    now = datetime.now(UTC)
    with Session(engine) as session:
        for i, runpod_id in enumerate(runpod_ids):
            job = Job(
                id=f"bench-{i:08d}-{uuid.uuid4().hex[:16]}",
                status=Status.IN_QUEUE,
                pipeline="echo",
                params={},
                runpod_id=runpod_id,
                submitted_at=now,
                # Their poll messages are gone (as after a Redis flush): reconcile must
                # bring every one back, at the budget's pace.
                next_poll_at=now - timedelta(hours=1),
            )
            job.attempts.append(Attempt(number=1, state=AttemptState.SENT, runpod_id=runpod_id))
            session.add(job)
        session.commit()
    engine.dispose()
    return len(runpod_ids)


def _send_task(s: Stack, name: str) -> None:
    """Enqueue a task by name, as beat does."""
    from celery import Celery

    client = Celery("bench", broker=s.env["REDIS_URL"])
    try:
        client.send_task(name)
    finally:
        client.close()


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    only = {name.strip() for name in args.only.split(",") if name.strip()}
    unknown = only - set(SECTIONS)
    if unknown:
        print(f"unknown section(s): {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    results: dict[str, Any] = {"machine": {"cpus": _cpus()}}
    workdir = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    try:
        for mode, webhooks in (("webhooks", "true"), ("polling", "false")):
            mine = {"latency", "burst"} | ({"upload", "progress"} if mode == "webhooks" else set())
            if not only & mine:
                continue
            with stack(workdir / mode, args, USE_WEBHOOKS=webhooks) as s:
                section: dict[str, Any] = {}
                if "latency" in only:
                    section["latency_ms"] = measure_latency(s, args.samples)
                if "burst" in only:
                    section["burst"] = measure_burst(s, args.burst)
                if mode == "webhooks" and "upload" in only:
                    results["upload"] = measure_upload(s, args.upload_mib)
                if mode == "webhooks" and "progress" in only:
                    results["progress"] = measure_progress(s, args.progress_jobs)
                if section:
                    results[mode] = section
        if "webhooks" in only:
            with stack(workdir / "client-webhooks", args, deliveries=True) as s:
                results["webhooks"] = client_webhooks.measure(s, args.samples, percentiles, _wall)
        if "inflight" in only:
            with stack(
                workdir / "inflight",
                args,
                # Workers that never connect: every job stays IN_QUEUE at the endpoint.
                endpoint_options={"worker_command": "sleep 3600", "workers_max": 1},
            ) as s:
                results["inflight"] = measure_inflight(s, args.inflight, args.inflight_seconds)
        if "endpoints" in only:
            with stack(
                workdir / "endpoints",
                args,
                endpoints=bench_endpoints(args),
                PIPELINES="echo,video_enhance,upscale",
            ) as s:
                results["endpoints"] = measure_endpoints(
                    s,
                    args.endpoint_jobs,
                    args.endpoint_interval,
                    video_jobs=3,
                    rounds=args.endpoint_rounds,
                )
        if "eta" in only:
            with stack(workdir / "eta", args, endpoint_options={"workers_max": 1}) as s:
                results["eta"] = measure_eta(s, args.eta_jobs)
    finally:
        if args.keep:
            print(f"logs and state kept in {workdir}", file=sys.stderr)
        else:
            import shutil

            shutil.rmtree(workdir, ignore_errors=True)
    results["targets"] = {
        "completion_p50_ms_with_webhooks": 100,
        "endpoint_calls_per_job_with_webhooks": 3,
        "upload_rss_growth_mib": 64,
        "progress_p50_ms": 1000,
        "extra_status_calls_for_progress": 0,
        "endpoints_light_p50_ratio": 1.1,
        "eta_done_error_median_pct": 25,
        "webhook_delivery_p50_ms": 100,
        "job_latency_ratio_with_200_hanging_deliveries": 1.1,
    }
    print(json.dumps(results, indent=2))
    return 0


def bench_endpoints(args: argparse.Namespace) -> list[Any]:
    """``make run``'s two endpoints; ``video``'s worker stands in for a long model."""
    from deploy.stack.local_endpoint import LONG_WORKER_COMMAND, endpoint_spec

    return [
        endpoint_spec(
            "video",
            workers_max=1,
            idle_timeout=30,
            worker_command=LONG_WORKER_COMMAND,
            env={"LONG_WORKER_S": str(args.video_job_s)},
        ),
        endpoint_spec("light", workers_max=2, idle_timeout=30),
    ]


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0))
