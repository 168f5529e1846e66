"""The local endpoint's job queue, job states, worker states and billed lives as plain
data: no event loop, no process.

A real ``Store`` on a temporary file stands behind it (SQLite, no server)."""

from __future__ import annotations

import pytest

from deploy.local.jobqueue import JobQueue, load
from deploy.local.jobs import Job
from deploy.local.life import WorkerLife
from deploy.local.store import Store
from deploy.local.workers import STOP_RESEND_S, new_worker
from deploy.runpod.vocabulary import CANCELLED, COMPLETED, FAILED, IN_PROGRESS, IN_QUEUE


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "jobs.sqlite3")
    yield s
    s.close()


def new_job(store: Store, queue: JobQueue, n: int, **policy) -> Job:
    job = Job(
        {
            "id": f"job-{n}",
            "endpoint": queue.endpoint_id,
            "seq": n,
            "status": IN_QUEUE,
            "input": {"n": n},
            "policy": policy,
            "created_at": 100.0 + n,
        }
    )
    store.save_job(job.record())
    queue.add(job)
    return job


def test_jobs_are_handed_out_oldest_first_and_counts_follow_the_jobs(store):
    q = JobQueue(store, "light")
    a, b, c = (new_job(store, q, n) for n in range(3))
    assert [j.id for j in q.take("w1", 2, now=200.0)] == [a.id, b.id]
    assert (a.status, a.worker_id, a.started_at, a.attempt) == (IN_PROGRESS, "w1", 200.0, 1)
    q.finish(a, COMPLETED, 201.0, output={"ok": 1})
    q.finish(c, CANCELLED, 201.0)  # cancelled while queued: leaves the queue
    assert q.counts() == {COMPLETED: 1, IN_PROGRESS: 1, CANCELLED: 1}
    assert list(q.queue) == [] and q.view().queued == 0 and q.view().in_progress == 1
    stored = {r["id"]: r for r in store.load_jobs("light")}
    assert stored[a.id]["status"] == COMPLETED and stored[a.id]["output"] == {"ok": 1}


def test_a_job_put_back_goes_first_and_a_second_worker_death_fails_it(store):
    q = JobQueue(store)
    first, second = new_job(store, q, 1), new_job(store, q, 2)
    q.take("w1", 1, now=1.0)
    assert q.may_requeue(first)
    q.put_back(first, count_requeue=True)
    assert list(q.queue) == [first.id, second.id] and first.worker_id is None
    q.take("w2", 1, now=2.0)
    assert not q.may_requeue(first) and first.attempt == 3  # taken, put back, taken


def test_retry_queues_a_failed_job_again_without_its_old_result(store):
    q = JobQueue(store)
    job = new_job(store, q, 1)
    q.take("w1", 1, now=1.0)
    q.finish(job, FAILED, 2.0, error="boom")
    assert q.retry(job) and job.status == IN_QUEUE and job.error is None
    assert not q.retry(job)  # only FAILED or TIMED_OUT jobs
    assert q.retried_total == 1 and list(q.queue) == [job.id]


def test_an_illegal_transition_is_refused(store):
    q = JobQueue(store)
    job = new_job(store, q, 1)
    q.take("w1", 1, now=1.0)
    q.finish(job, COMPLETED, 2.0)
    with pytest.raises(ValueError, match="COMPLETED -> IN_QUEUE"):
        q.put_back(job, count_requeue=False)


def test_purge_removes_queued_jobs_only_and_low_priority_ones_start_no_worker(store):
    q = JobQueue(store)
    running = new_job(store, q, 1)
    q.take("w1", 1, now=1.0)
    low = new_job(store, q, 2, lowPriority=True)
    new_job(store, q, 3)
    view = q.view()
    assert (view.queued, view.queued_any) == (1, 2)
    removed = q.purge()
    assert {j.id for j in removed} == {low.id, "job-3"} and q.get(low.id) is None
    assert q.get(running.id) is running and [r["id"] for r in store.load_jobs()] == [running.id]


def test_loading_names_the_jobs_a_worker_was_running(store):
    q = JobQueue(store, "video")
    new_job(store, q, 1)
    new_job(store, q, 2)
    q.take("w1", 1, now=1.0)
    again = JobQueue(store, "video")
    orphans = load(again, store.load_jobs("video"))
    assert [j.id for j in orphans] == ["job-1"] and list(again.queue) == ["job-2"]
    assert store.load_jobs("light", unnamed=False) == []


def test_a_workers_billed_life_splits_into_start_up_jobs_and_idle():
    life = WorkerLife(started_at=100.0)
    life.ready_at = 103.0  # start-up: 3 s
    life.job_started("a", 103.0)
    life.job_started("b", 104.0)  # two at once: the overlap is billed once
    life.job_ended("a", 106.0)
    life.job_ended("b", 107.0)
    life.exited(0, 112.0)  # idle 5 s after the last job
    billed = life.billed(now=999.0)
    assert billed == {
        "billedSeconds": 12.0,
        "startupSeconds": 3.0,
        "jobSeconds": 4.0,
        "idleSeconds": 5.0,
        "wokenBy": "a",
    }


def test_every_billed_second_goes_to_a_job_or_to_idle():
    life = WorkerLife(started_at=0.0)
    life.ready_at = 4.0  # start-up to the job that woke the worker: "a"
    life.job_started("a", 4.0)
    life.job_started("b", 5.0)  # a and b share 5..6: half each
    life.job_ended("a", 6.0)
    life.job_ended("b", 8.0)
    life.exited(0, 13.0)  # idle 8..13
    parts = life.attribute(now=99.0)
    assert parts == {"a": 4.0 + 1.0 + 0.5, "b": 0.5 + 2.0, "idle": 5.0}
    assert sum(parts.values()) == life.billed(99.0)["billedSeconds"] == 13.0


def test_a_worker_that_never_took_a_job_is_all_idle_and_a_live_one_bills_so_far():
    crashed = WorkerLife(started_at=0.0)
    crashed.exited(1, 2.5)
    assert crashed.attribute(now=50.0) == {"idle": 2.5}
    live = WorkerLife(started_at=0.0, ready_at=1.0)
    live.job_started("a", 1.0)
    assert live.attribute(now=3.0) == {"a": 3.0}


def test_a_worker_is_busy_while_it_holds_or_still_runs_a_job_and_idle_after(tmp_path):
    w = new_worker(tmp_path, None)
    w.settle(now=1.0)
    assert w.state == "initializing"  # until its first job-take
    w.took_any = True
    w.current_jobs.add("a")
    w.settle(now=2.0)
    assert (w.state, w.idle_since) == ("running", None)
    w.current_jobs.clear()
    w.stopped_jobs["a"] = 2.0  # told to stop, not yet stopped: still busy
    w.settle(now=3.0)
    assert w.state == "running"
    w.stopped_jobs.clear()
    w.settle(now=4.0)
    assert (w.state, w.idle_since) == ("idle", 4.0)


def test_stop_signals_are_sent_again_for_a_while_then_dropped(tmp_path):
    w = new_worker(tmp_path, None)
    w.pending_stops = ["a"]
    assert w.drain_stops(now=0.0) == ["a"]
    assert w.drain_stops(now=STOP_RESEND_S - 0.1) == ["a"]  # the SDK may have missed it
    assert w.drain_stops(now=STOP_RESEND_S) == []


def test_an_exit_is_a_crash_unless_the_worker_was_being_stopped(tmp_path):
    w = new_worker(tmp_path, None)
    assert w.exited(0) and w.state == "unhealthy"  # never took a job
    w = new_worker(tmp_path, None)
    w.took_any, w.current_jobs = True, {"a"}
    assert not w.exited(0) and w.state == "exited" and not w.current_jobs
    w = new_worker(tmp_path, None)
    w.stopping = True
    assert not w.exited(137) and w.state == "exited"
