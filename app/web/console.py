"""What the operator console makes of raw worker output: log lines as time, level and
message, the exception line of a traceback, the endpoint's scaling settings, and the last
24 hours of jobs as charts (``app.web.charts``)."""

from __future__ import annotations

import json
import re
import statistics
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from markupsafe import Markup
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import Job, Status, utcnow
from app.web.charts import Series, bar_chart, line_chart

# Python logging's default-ish format: "2026-12-05 20:40:19,415 INFO gpu_worker: message".
PLAIN = re.compile(
    r"^(?P<time>\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(?:[.,]\d+)?Z?)\s+"
    r"(?P<level>DEBUG|INFO|WARNING|WARN|ERROR|CRITICAL)\s+(?P<message>.*)$"
)
# The last line of a Python traceback: "ModuleNotFoundError: No module named 'cv2'".
EXCEPTION = re.compile(r"^(?:[A-Za-z_][\w]*\.)*[A-Za-z_]\w*(?:Error|Exception|Exit|Interrupt)\b.*")


@dataclass(frozen=True)
class LogLine:
    """One worker log line; a line that is neither JSON nor a logging line is all message."""

    time: str
    level: str
    message: str

    @property
    def bad(self) -> bool:
        return self.level in ("ERROR", "CRITICAL")


def parse_line(raw: str) -> LogLine:
    """The runpod SDK's JSON lines (``{"requestId", "message", "level"}``, RunPod's log API
    adds a time) and logging lines split into their parts; anything else kept whole."""
    text = raw.rstrip("\n")
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if isinstance(data, dict) and "message" in data:
            when = data.get("time") or data.get("timestamp") or data.get("dt") or ""
            return LogLine(str(when), str(data.get("level") or "").upper(), str(data["message"]))
    match = PLAIN.match(text)
    if match:
        level = match["level"].replace("WARN", "WARNING").replace("WARNINGING", "WARNING")
        return LogLine(match["time"], level, match["message"])
    return LogLine("", "", text)


def exception_line(*texts: str | None) -> str | None:
    """The exception a traceback ends with, from the first text that has one: the line an
    operator needs ("ModuleNotFoundError: No module named 'cv2'"), not its last frames."""
    for text in texts:
        if not text or "Traceback" not in text:
            continue
        tail = text[text.rindex("Traceback") :]
        found = [line.strip() for line in tail.splitlines() if EXCEPTION.match(line.strip())]
        if found:
            return found[-1]
    return None


def log_text(lines: list[LogLine]) -> str:
    """The messages as one text (a JSON line's message may hold a whole traceback)."""
    return "\n".join(line.message for line in lines)


def endpoint_settings(report: dict[str, Any] | None) -> list[tuple[str, str]]:
    """The endpoint's scaling settings as (label, words), from the ``endpoint`` its workers
    report carries in RunPod's REST v2 shape (``workers``, ``scaling``, ``gpu``, ``timeout``)."""
    found = (report or {}).get("endpoint") or {}
    workers = found.get("workers") or {}
    scaling = found.get("scaling") or {}
    rows = []
    if "min" in workers:
        rows.append(("Workers min", str(workers["min"])))
    if "max" in workers:
        rows.append(("Workers max", str(workers["max"])))
    if workers.get("idleTimeout") is not None:
        rows.append(("Idle timeout", f"{workers['idleTimeout']:g} s"))
    if scaling.get("type") == "QUEUE_DELAY":
        rows.append(("Scaler", f"QUEUE_DELAY ({scaling.get('queueDelay', 0):g} s of queue delay)"))
    elif scaling.get("type") == "REQUEST_COUNT":
        per = scaling.get("requestCount", 0)
        rows.append(("Scaler", f"REQUEST_COUNT ({per:g} requests per worker)"))
    if found.get("timeout") is not None:
        rows.append(("Execution timeout", f"{found['timeout'] / 1000:g} s"))
    if "gpu" in found:
        pools = (found.get("gpu") or {}).get("pools") or []
        rows.append(("GPU tiers", ", ".join(pools) or "none (CPU workers on this machine)"))
    return rows


OUTCOMES = (
    ("completed", (Status.COMPLETED,)),
    ("failed", (Status.FAILED, Status.TIMED_OUT)),
    ("cancelled", (Status.CANCELLED,)),
)


def _percentile(values: list[float], share: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(share * 100) - 1]


def day_charts(session: Session, endpoint: str | None = None, hours: int = 24) -> list[Markup]:
    """Jobs per hour by outcome, and queue wait and run time p50/p95 per hour, for the jobs
    that ended in the last ``hours`` hours (of ``endpoint``, or all)."""
    now = utcnow().replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    start = now - timedelta(hours=hours)
    query = select(Job.status, Job.finished_at, Job.delay_ms, Job.execution_ms).where(
        Job.finished_at >= start
    )
    if endpoint is not None:
        query = query.where(Job.endpoint == endpoint)
    buckets: list[dict[str, Any]] = [
        {"counts": dict.fromkeys([name for name, _ in OUTCOMES], 0), "wait": [], "run": []}
        for _ in range(hours)
    ]
    for status, finished, delay_ms, execution_ms in session.execute(query):
        # Naive UTC on both sides: SQLite hands back naive datetimes, PostgreSQL aware ones.
        since_start = finished.replace(tzinfo=None) - start.replace(tzinfo=None)
        index = int(since_start.total_seconds() // 3600)
        if not 0 <= index < hours:
            continue
        bucket = buckets[index]
        for name, statuses in OUTCOMES:
            if status in statuses:
                bucket["counts"][name] += 1
        if delay_ms is not None:
            bucket["wait"].append(delay_ms / 1000)
        if execution_ms is not None:
            bucket["run"].append(execution_ms / 1000)
    labels = [(start + timedelta(hours=i)).strftime("%H:00") for i in range(hours)]
    suffix = f"-{endpoint}" if endpoint else ""
    where = f" on endpoint {endpoint}" if endpoint else ""
    total = sum(sum(b["counts"].values()) for b in buckets)
    return [
        bar_chart(
            f"chart-jobs{suffix}",
            "Jobs per hour by outcome (UTC)",
            f"{total} jobs ended in the last {hours} hours{where}, per hour: completed, "
            "failed or timed out, cancelled.",
            labels,
            [Series(name, [b["counts"][name] for b in buckets]) for name, _ in OUTCOMES],
        ),
        _timing_chart(f"chart-wait{suffix}", "Queue wait", "wait", buckets, labels, where),
        _timing_chart(f"chart-run{suffix}", "Run time", "run", buckets, labels, where),
    ]


def _timing_chart(
    chart_id: str, title: str, key: str, buckets: list[dict], labels: list[str], where: str
) -> Markup:
    return line_chart(
        chart_id,
        f"{title} p50 and p95 per hour (UTC)",
        f"The median and 95th percentile {title.lower()} in seconds of the jobs that ended in "
        f"each hour{where}; gaps are hours without jobs.",
        labels,
        [
            Series("p50", [_percentile(b[key], 0.5) for b in buckets]),
            Series("p95", [_percentile(b[key], 0.95) for b in buckets]),
        ],
        unit=" s",
    )
