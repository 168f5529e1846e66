"""`deploy cost --history`: past jobs (a CSV trace or the app's database, read by SQL) billed
at idle timeouts 1-60 s and 0-2 active workers, per endpoint, from the price book."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta

import pytest

from deploy.ops.cost import ACTIVE_GRID, IDLE_GRID, PastLoad, bill, simulate
from tests.deploy.ops.test_endpoints import _spec


def test_an_active_worker_takes_jobs_without_cold_starts_and_bills_the_window():
    replay = simulate([(0, 30), (100, 30)], 5, 10, workers_max=1, active=1, window=(0, 200))
    assert (replay.cold_starts, replay.flex_s, replay.active_s) == (0, 0, 200)


def test_a_busy_active_worker_brings_up_a_flex_one_and_the_bill_splits_by_hand():
    # Active worker: job A 0-30. Job B at 5 finds it busy: a flex worker starts 5-15 (cold),
    # runs B 15-45, idles until 50. Flex billed 45 s (10 start, 30 run, 5 idle); active 200 s
    # (30 run, 170 idle). At $0.001 flex and $0.0005 active: 0.045 + 0.1 = $0.145.
    jobs = [(0, 30), (5, 30)]
    replay = simulate(jobs, 5, 10, workers_max=2, active=1, window=(0, 200))
    assert (replay.flex_s, replay.start_s, replay.cold_starts) == (45, 10, 1)
    b = bill(PastLoad(jobs, (0, 200), 10, 2, 0.001, 0.0005), idle_timeout_s=5, active=1)
    assert b.dollars == pytest.approx(0.145)
    assert b.cold_fraction == 0.5
    assert b.start_share == pytest.approx(0.010 / 0.145)
    assert b.idle_share == pytest.approx((0.005 + 0.085) / 0.145)


@pytest.fixture
def two_endpoints(tmp_path, monkeypatch):
    folder = tmp_path / "endpoints"
    folder.mkdir()
    (folder / "video.toml").write_text(_spec("video", ["video_enhance", "upscale"]))
    (folder / "light.toml").write_text(_spec("light", ["echo"], '["AMPERE_16"]'))
    monkeypatch.setenv("DEPLOY_ENDPOINTS_DIR", str(folder))
    return folder


def _csv(tmp_path, rows: list[str]) -> str:
    path = tmp_path / "jobs.csv"
    head = "submitted_at,started_at,finished_at,endpoint,pipeline,cold_start_s\n"
    path.write_text(head + "\n".join(rows) + "\n")
    return str(path)


def test_cost_bills_each_endpoints_jobs_over_the_grid(cli, tmp_path, two_endpoints):
    history = _csv(
        tmp_path,
        [
            "2026-12-01T10:00:00Z,2026-12-01T10:00:20Z,2026-12-01T10:10:20Z,video,upscale,20",
            "2026-12-01T11:00:00Z,2026-12-01T11:00:00Z,2026-12-01T11:10:00Z,,video_enhance,",
            "2026-12-01T10:00:00Z,2026-12-01T10:00:04Z,2026-12-01T10:00:05Z,,echo,4",
            "2026-12-01T10:00:30Z,2026-12-01T10:00:30Z,2026-12-01T10:00:31Z,light,echo,",
            "2026-12-01T12:00:00Z,,,light,echo,",  # never ran: not billed
        ],
    )
    result = cli("cost", "--all", "--history", history, "--json")
    assert result.code == 0, result.text
    data = json.loads(result.out)["endpoints"]
    assert (data["video"]["jobs"], data["light"]["jobs"]) == (2, 2)
    assert data["video"]["coldStartS"] == 20 and data["video"]["coldStartMeasured"] is True
    grid = {(b["active"], b["idle_timeout_s"]) for b in data["light"]["bills"]}
    assert grid == {(a, t) for a in ACTIVE_GRID for t in IDLE_GRID}
    light = {(b["active"], b["idle_timeout_s"]): b for b in data["light"]["bills"]}
    # Two echo jobs 30 s apart: with a 30 s idle timeout the second finds the worker warm.
    assert light[(0, 1)]["cold_fraction"] == 1.0 and light[(0, 30)]["cold_fraction"] == 0.5
    assert light[(1, 5)]["cold_fraction"] == 0.0  # an active worker never cold-starts
    # One day of one AMPERE_16 active worker at $0.00011/s, plus nothing flex.
    assert light[(1, 5)]["dollars"] == pytest.approx(86400 * 0.00011, rel=1e-3)
    assert data["light"]["current"]["idle_timeout_s"] == 5  # the spec's own setting
    assert 0 < light[(0, 5)]["start_share"] < 1

    text = cli("cost", "--endpoint", "video", "--history", history)
    assert text.code == 0
    assert "endpoint video: 2 job(s) over 1 day(s); cold start 20 s (measured median)" in text.out
    assert "$0.00053/s flex, $0.00037/s active" in text.out
    assert "start share" in text.out and "cheapest: idle" in text.out


def test_cost_from_the_apps_database_by_sql(cli, tmp_path, two_endpoints, monkeypatch):
    db = tmp_path / "app.db"
    now = datetime.now(UTC).replace(tzinfo=None)
    with sqlite3.connect(db) as conn:
        # The columns the app's jobs table has (before it recorded each job's endpoint).
        conn.execute(
            "CREATE TABLE jobs (id TEXT PRIMARY KEY, pipeline TEXT, submitted_at DATETIME, "
            "started_at DATETIME, finished_at DATETIME, cold_start_ms INTEGER)"
        )
        rows = [
            ("a", "echo", now - timedelta(days=1), 5, 2, 4000),
            ("b", "echo", now - timedelta(days=2), 0, 1, None),
            ("c", "upscale", now - timedelta(days=1), 0, 60, None),
            ("d", "echo", now - timedelta(days=30), 0, 1, None),  # older than --days
            ("e", "echo", now - timedelta(hours=1), None, None, None),  # still queued
        ]
        for job_id, pipeline, sent, start, run, cold in rows:
            started = None if start is None else sent + timedelta(seconds=start)
            finished = None if run is None else started + timedelta(seconds=run)
            conn.execute(
                "INSERT INTO jobs VALUES (?, ?, ?, ?, ?, ?)",
                (job_id, pipeline, sent, started, finished, cold),
            )
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{db}")
    result = cli("cost", "--endpoint", "light", "--history-db", "--days", "7", "--json")
    assert result.code == 0, result.text
    data = json.loads(result.out)
    assert data["jobs"] == 2 and data["days"] == 7
    assert data["coldStartS"] == 4 and data["coldStartMeasured"] is True
    assert len(data["bills"]) == len(ACTIVE_GRID) * len(IDLE_GRID)


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--history-db"], {}, "--history-db reads DATABASE_URL, which is not set"),
        (
            ["--history-db"],
            {"DATABASE_URL": "sqlite:////nonexistent/dir/x.db"},
            "check DATABASE_URL",
        ),
        (["--history", "/nonexistent.csv"], {}, "cannot read trace"),
        (["--history", "h.csv", "--days", "0"], {}, "--days must be a positive number"),
    ],
)
def test_history_errors_are_one_line(cli, two_endpoints, monkeypatch, argv, env, message):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    result = cli("cost", "--endpoint", "light", *argv)
    assert result.code == 2, result.text
    assert message in result.err and "Traceback" not in result.err


def test_a_trace_without_the_columns_says_which(cli, tmp_path, two_endpoints):
    trace = tmp_path / "t.csv"
    trace.write_text("submitted_at,finished_at\n1,2\n")
    result = cli("cost", "--endpoint", "light", "--history", str(trace))
    assert result.code == 2
    assert "needs columns submitted_at,started_at,finished_at (missing started_at)" in result.err
