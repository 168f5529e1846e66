"""``cost`` against hand-computed cases."""

from __future__ import annotations

import json

import pytest

from deploy.ops.cost import simulate


def test_single_worker_trace_by_hand():
    # idle timeout 5 s, cold start 10 s, one worker:
    #   job A arrives at 0: cold start 0-10, runs 10-40.
    #   job B arrives at 32: waits for A, runs 40-70; the worker idles until 75 and stops.
    #   job C arrives at 100: cold start 100-110, runs 110-140, idles until 145.
    # billed = (75 - 0) + (145 - 100) = 120 s; 2 cold starts out of 3 jobs.
    replay = simulate([(0, 30), (32, 30), (100, 30)], 5, 10)
    assert (replay.flex_s, replay.cold_starts, replay.jobs) == (120, 2, 3)


def test_second_worker_starts_when_the_first_is_busy():
    # With two workers, B (at 5) does not wait: a second worker cold-starts 5-15, runs 15-45.
    # billed = (40 + 5 - 0) + (45 + 5 - 5) = 90 s, both cold.
    replay = simulate([(0, 30), (5, 30)], 5, 10, workers_max=2)
    assert (replay.flex_s, replay.cold_starts, replay.jobs) == (90, 2, 2)


def test_cost_cli_with_a_trace(cli, tmp_path):
    trace = tmp_path / "trace.csv"
    trace.write_text("arrival_s,duration_s\n0,30\n32,30\n100,30\n")
    result = cli(
        "cost",
        "--trace",
        str(trace),
        "--price-per-s",
        "0.001",
        "--idle-timeout",
        "5",
        "--cold-start-s",
        "10",
        "--json",
    )
    assert result.code == 0, result.text
    data = json.loads(result.out)
    # The trace spans less than a day: a month is 730 h / 24 h = 30.4167 such days.
    now = data["current"]
    assert now["billed_s_per_month"] == pytest.approx(120 * 730 / 24)  # 3650 s
    assert now["dollars_per_month"] == pytest.approx(3.65)
    assert now["cold_fraction"] == pytest.approx(2 / 3)
    assert now["always_on_dollars_per_month"] == pytest.approx(2628.0)  # 730 h x 3600 x $0.001
    text = cli(
        "cost",
        "--trace",
        str(trace),
        "--price-per-s",
        "0.001",
        "--idle-timeout",
        "5",
        "--cold-start-s",
        "10",
    )
    assert "$3.65" in text.out and "$2,628.00" in text.out


def test_cost_cli_with_an_arrival_rate_and_the_best_idle_timeout(cli):
    # 6 jobs/h (λ = 1/600 s), 60 s jobs, idle timeout 60 s, cold start 20 s, L40S list price.
    # cold share e^-0.1 = 0.904837; idle per job 600 (1 - e^-0.1) = 57.0975 s
    # per job 60 + 57.0975 + 20 x 0.904837 = 135.1943 s; 4,380 jobs/month -> 592,151 s
    # x $0.00053 = $313.84
    result = cli(
        "cost",
        "--tier",
        "ADA_48_PRO",
        "--jobs-per-hour",
        "6",
        "--job-s",
        "60",
        "--idle-timeout",
        "60",
        "--cold-start-s",
        "20",
        "--cold-budget",
        "0.5",
        "--json",
    )
    assert result.code == 0, result.text
    data = json.loads(result.out)
    assert data["current"]["billed_s_per_month"] == pytest.approx(592_151, abs=1)
    assert data["current"]["dollars_per_month"] == pytest.approx(313.84, abs=0.01)
    assert data["current"]["cold_fraction"] == pytest.approx(0.904837, abs=1e-6)
    # Cold share e^(-T/600) <= 0.5 needs T >= 416 s; longer only costs more (λC < 1),
    # so the cheapest candidate within budget is 420 s.
    assert data["best"]["idle_timeout_s"] == 420
    assert data["bestWithinBudget"] is True


def test_cost_says_when_no_idle_timeout_meets_the_budget(cli):
    result = cli(
        "cost",
        "--price-per-s",
        "0.0005",
        "--jobs-per-hour",
        "0.1",
        "--job-s",
        "60",
        "--cold-budget",
        "0.01",
    )
    assert result.code == 0
    assert "only workers_min >= 1" in result.out


def test_cost_says_when_an_always_on_worker_is_cheaper(cli):
    # 60 jobs/h of 30 s at $0.00053/s: scale to zero bills ~$2,043 at best, one worker
    # always on 730 h x 3600 s x $0.00053 = $1,392.84.
    args = ["cost", "--price-per-s", "0.00053", "--jobs-per-hour", "60", "--job-s", "30"]
    result = cli(*args, "--idle-timeout", "600", "--cold-start-s", "20")
    assert result.code == 0, result.text
    assert "advice: an always-on worker (workers_min = 1) is the cheaper choice" in result.out
    assert "$1,392.84/month" in result.out
    data = json.loads(cli(*args, "--json").out)
    assert data["alwaysOnCheaper"] is True
    quiet = ["cost", "--price-per-s", "0.00053", "--jobs-per-hour", "2", "--job-s", "30"]
    quiet = json.loads(cli(*quiet, "--cold-budget", "0.9", "--json").out)
    assert quiet["alwaysOnCheaper"] is False and quiet["advice"].startswith("scale to zero")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tier", "BLACKWELL_96", "--jobs-per-hour", "1", "--job-s", "1"], "--price-per-s"),
        (["--price-per-s", "0.001"], "--trace CSV"),
        (["--price-per-s", "0.001", "--trace", "/nonexistent.csv"], "cannot read trace"),
        (
            [
                "--price-per-s",
                "0.001",
                "--jobs-per-hour",
                "1",
                "--job-s",
                "1",
                "--cold-budget",
                "5",
            ],
            "between 0 and 1",
        ),
        (["--price-per-s", "0.001", "--jobs-per-hour", "-1", "--job-s", "1"], "positive"),
    ],
)
def test_cost_usage_errors(cli, args, message):
    result = cli("cost", *args)
    assert result.code == 2
    assert message in result.err


def test_trace_without_the_columns(cli, tmp_path):
    trace = tmp_path / "t.csv"
    trace.write_text("when,how_long\n1,2\n")
    result = cli("cost", "--price-per-s", "0.001", "--trace", str(trace))
    assert result.code == 2 and "arrival_s,duration_s" in result.err
