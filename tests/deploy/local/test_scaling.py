"""The scaling decision as a pure function: no processes, no event loop, no clock."""

from __future__ import annotations

from deploy.local.scaling import (
    IDLE,
    INITIALIZING,
    QUEUE_DELAY,
    REQUEST_COUNT,
    RUNNING,
    Observed,
    Policy,
    WorkerView,
    plan,
)

QD = Policy(QUEUE_DELAY, scaler_value=2, workers_max=3, idle_timeout=5)
RC = Policy(REQUEST_COUNT, scaler_value=2, workers_max=4, idle_timeout=5)


def workers(*states: str, idle_since: float = 0.0) -> tuple[WorkerView, ...]:
    return tuple(
        WorkerView(f"w{i}", s, idle_since if s == IDLE else None) for i, s in enumerate(states)
    )


def test_first_job_starts_a_worker_at_once():
    assert plan(Observed(now=10, queued=1, queued_any=1, oldest_queued_at=10), QD).start == 1


def test_queue_delay_counts_a_starting_worker_as_not_free():
    obs = Observed(
        now=10,
        workers=workers(INITIALIZING),
        queued=2,
        queued_any=2,
        oldest_queued_at=9,
        last_start_at=9,
    )
    early = plan(obs, QD)
    assert early.start == 0 and early.wake_at == [11]
    assert plan(Observed(**{**obs.__dict__, "now": 11}), QD).start == 1


def test_queue_delay_counts_a_busy_worker_as_not_free():
    obs = Observed(now=20, workers=workers(RUNNING), queued=1, queued_any=1, oldest_queued_at=17)
    assert plan(obs, QD).start == 1


def test_queue_delay_waits_again_after_each_start():
    obs = Observed(
        now=20,
        workers=workers(RUNNING, INITIALIZING),
        queued=1,
        queued_any=1,
        oldest_queued_at=10,
        last_start_at=19,
    )
    result = plan(obs, QD)
    assert result.start == 0 and result.wake_at == [21]


def test_an_idle_worker_means_no_new_one():
    obs = Observed(now=20, workers=workers(IDLE), queued=1, queued_any=1, oldest_queued_at=10)
    assert plan(obs, QD).start == 0


def test_never_beyond_workers_max():
    obs = Observed(
        now=99,
        workers=workers(RUNNING, RUNNING, RUNNING),
        queued=9,
        queued_any=9,
        oldest_queued_at=0,
    )
    assert plan(obs, QD).start == 0
    assert plan(Observed(now=0, queued=99, queued_any=99, oldest_queued_at=0), RC).start == 4


def test_request_count_targets_jobs_per_worker():
    obs = Observed(
        now=0, workers=workers(RUNNING), queued=3, queued_any=3, in_progress=2, oldest_queued_at=0
    )
    assert plan(obs, RC).start == 2  # ceil(5 / 2) = 3 workers


def test_low_priority_jobs_alone_start_nothing():
    obs = Observed(now=50, queued=0, queued_any=4)
    assert plan(obs, QD).start == 0 and plan(obs, RC).start == 0


def test_idle_workers_stop_after_idle_timeout_down_to_workers_min():
    obs = Observed(now=10, workers=workers(IDLE, IDLE, idle_since=4))
    assert plan(obs, QD).stop == ["w0", "w1"]
    kept = plan(obs, Policy(QUEUE_DELAY, workers_min=1, idle_timeout=5))
    assert kept.stop == ["w0"]
    early = plan(Observed(now=8, workers=workers(IDLE, idle_since=4)), QD)
    assert early.stop == [] and early.wake_at == [9]


def test_no_idle_stop_while_low_priority_jobs_wait():
    assert plan(Observed(now=99, workers=workers(IDLE), queued_any=1), QD).stop == []


def test_crash_loop_backoff_delays_the_start():
    obs = Observed(now=10, queued=1, queued_any=1, oldest_queued_at=5, spawn_blocked_until=12)
    result = plan(obs, QD)
    assert result.start == 0 and result.wake_at == [12]


def test_queue_delay_looks_again_after_starting_a_worker_while_a_job_waits():
    # The first job starts a worker; if nothing else happens (a slow start, no other
    # request), the plan must still come back after scalerValue seconds to add one.
    first = plan(Observed(now=10, queued=1, queued_any=1, oldest_queued_at=10), QD)
    assert first.start == 1 and first.next_wake == 12
    later = Observed(
        now=12,
        workers=workers(INITIALIZING),
        queued=1,
        queued_any=1,
        oldest_queued_at=10,
        last_start_at=10,
    )
    assert plan(later, QD).start == 1


def test_queue_delay_does_not_look_again_once_at_workers_max():
    one = Policy(QUEUE_DELAY, scaler_value=2, workers_max=1)
    assert plan(Observed(now=10, queued=1, queued_any=1, oldest_queued_at=10), one).wake_at == []
