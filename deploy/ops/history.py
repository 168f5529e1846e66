"""Past jobs for ``deploy cost --history``: from a CSV trace, or from the app's database by SQL.

The CSV has a header and one row per job (extra columns are ignored):

==================  ========  =========================================================
column              required  meaning
==================  ========  =========================================================
``submitted_at``    yes       when the job was sent to the endpoint
``started_at``      yes       when a worker began running it
``finished_at``     yes       when it ended (completed, failed or cancelled)
``endpoint``        no        the endpoint's name (a spec file's name in deploy/endpoints)
``pipeline``        no        its pipeline; routes the job when ``endpoint`` is empty
``cold_start_s``    no        seconds it waited for a worker to start (measured)
==================  ========  =========================================================

Times are ISO 8601 (``2026-12-05T10:00:00Z``; no zone means UTC) or seconds since the epoch.
Jobs that never started or never finished are left out: they billed no run time.

The database is read with one SQL query on the ``jobs`` table (the columns above, plus
``cold_start_ms``), never by importing the app; ``endpoint`` is read when the table has it.
"""

from __future__ import annotations

import csv
import statistics
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path


class HistoryError(ValueError):
    """The trace or the database cannot be read as job history (exit code 2)."""


@dataclass(frozen=True)
class PastJob:
    submitted_at: float  # seconds since the epoch
    started_at: float
    finished_at: float
    endpoint: str | None = None
    pipeline: str | None = None
    cold_start_s: float | None = None

    @property
    def run_s(self) -> float:
        return max(self.finished_at - self.started_at, 0.0)


def parse_time(value: object) -> float:
    """Seconds since the epoch from ISO 8601 text, a datetime, or a number."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, int | float):
        return float(value)
    else:
        text = str(value).strip()
        try:
            return float(text)
        except ValueError:
            pass
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # the app stores UTC without a zone
    return moment.timestamp()


def _job(row: dict, where: str) -> PastJob | None:
    if not row.get("started_at") or not row.get("finished_at") or not row.get("submitted_at"):
        return None
    try:
        cold = row.get("cold_start_s")
        return PastJob(
            submitted_at=parse_time(row["submitted_at"]),
            started_at=parse_time(row["started_at"]),
            finished_at=parse_time(row["finished_at"]),
            endpoint=(row.get("endpoint") or None),
            pipeline=(row.get("pipeline") or None),
            cold_start_s=float(cold) if cold not in (None, "") else None,
        )
    except (TypeError, ValueError):
        raise HistoryError(
            f"{where}: times must be ISO 8601 or epoch seconds, cold_start_s a number"
        ) from None


def read_csv(path: str | Path, since: float | None = None) -> list[PastJob]:
    """The jobs of a CSV trace submitted at or after ``since``, by submission time."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            missing = {"submitted_at", "started_at", "finished_at"} - set(reader.fieldnames or ())
            if missing:
                raise HistoryError(
                    f"{path}: needs columns submitted_at,started_at,finished_at "
                    f"(missing {', '.join(sorted(missing))}); endpoint, pipeline and "
                    "cold_start_s are optional"
                )
            jobs = [_job(row, f"{path}:{n}") for n, row in enumerate(reader, start=2)]
    except OSError as exc:
        raise HistoryError(f"cannot read trace {path}: {exc.strerror}") from None
    return _window(jobs, since)


def _window(jobs: list[PastJob | None], since: float | None) -> list[PastJob]:
    kept = [j for j in jobs if j is not None and (since is None or j.submitted_at >= since)]
    return sorted(kept, key=lambda j: j.submitted_at)


JOBS_SQL = (
    "SELECT submitted_at, started_at, finished_at, pipeline, endpoint, cold_start_ms "
    "FROM jobs WHERE submitted_at >= :since "
    "AND started_at IS NOT NULL AND finished_at IS NOT NULL"
)
# Before the app recorded each job's endpoint (one endpoint served every pipeline).
JOBS_SQL_ONE_ENDPOINT = JOBS_SQL.replace("pipeline, endpoint,", "pipeline, NULL AS endpoint,")


def _engine_url(url: str) -> str:
    # The app's URLs say postgresql://; SQLAlchemy would then look for psycopg2, and the
    # project ships psycopg 3.
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def read_database(url: str, since: float) -> list[PastJob]:
    """The app's jobs submitted since ``since``, by SQL on its ``jobs`` table."""
    # Imported here: the other operator commands never load SQLAlchemy.
    from sqlalchemy import bindparam, create_engine, inspect, text
    from sqlalchemy.exc import SQLAlchemyError

    engine = create_engine(_engine_url(url))
    try:
        with engine.connect() as conn:
            columns = {c["name"] for c in inspect(conn).get_columns("jobs")}
            query = text(JOBS_SQL if "endpoint" in columns else JOBS_SQL_ONE_ENDPOINT)
            query = query.bindparams(bindparam("since"))
            since_at = datetime.fromtimestamp(since, UTC).replace(tzinfo=None)
            rows = conn.execute(query, {"since": since_at}).mappings().all()
    except SQLAlchemyError as exc:
        raise HistoryError(
            f"cannot read jobs from the database ({type(exc).__name__}): check DATABASE_URL "
            "and that the app's migrations ran"
        ) from None
    finally:
        engine.dispose()
    jobs = [
        _job(
            {
                **row,
                "cold_start_s": None
                if row["cold_start_ms"] is None
                else row["cold_start_ms"] / 1000,
            },
            "jobs table",
        )
        for row in rows
    ]
    return _window(jobs, since)


def measured_cold_start_s(jobs: list[PastJob]) -> float | None:
    """The median cold start the jobs recorded, if any did."""
    values = [j.cold_start_s for j in jobs if j.cold_start_s]
    return statistics.median(values) if values else None
