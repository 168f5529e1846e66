"""Where jobs meet workers (``dispatch``) and what the timer applies (``timer``), driven as
plain objects: no event loop, no worker process. A real ``Store`` stands behind them; the
fleet is a real ``Fleet`` that is never asked to start a process."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy.local import deadlines as dl
from deploy.local.crashloop import CrashLoop
from deploy.local.dispatch import Dispatch
from deploy.local.fleet import Fleet, GpuPool
from deploy.local.jobqueue import JobQueue
from deploy.local.options import EndpointOptions
from deploy.local.store import Store
from deploy.local.timer import Timer
from deploy.local.workers import new_worker
from deploy.runpod.vocabulary import COMPLETED, FAILED, IN_PROGRESS, IN_QUEUE, TIMED_OUT
from tests.deploy.local.test_jobqueue import new_job


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "jobs.sqlite3")
    yield s
    s.close()


def parts(store: Store, tmp_path: Path, **options) -> tuple[Dispatch, list]:
    opts = EndpointOptions(endpoint_id="ep", **options)
    finished: list = []
    fleet = Fleet(
        endpoint_id="ep",
        command=["true"],
        env=lambda w: {},
        gpus=GpuPool([]),
        stop_grace=1.0,
        workers_max=2,
        log_dir=tmp_path,
        store=store,
        on_exit=lambda w, code: None,
        spawn_task=lambda coro: coro.close(),
        poke=lambda: None,
    )
    dispatch = Dispatch(
        opts=opts,
        jobs=JobQueue(store, "ep"),
        fleet=fleet,
        crash=CrashLoop(),
        on_finished=finished.append,
        poke=lambda: None,
    )
    return dispatch, finished


def ready_worker(dispatch: Dispatch, tmp_path: Path):
    w = new_worker(tmp_path, None)
    w.took_any = True
    dispatch.fleet.workers[w.id] = w
    return w


def test_a_handed_job_makes_its_worker_busy_until_it_finishes(store, tmp_path):
    dispatch, finished = parts(store, tmp_path)
    w = ready_worker(dispatch, tmp_path)
    job = new_job(store, dispatch.jobs, 1)
    assert dispatch.hand(w, 1, take_at=0.0) == [job]
    assert (job.status, w.state, w.current_jobs) == (IN_PROGRESS, "running", {job.id})
    assert len(dispatch.deadlines) == 1  # its execution timeout
    dispatch.finish(job, COMPLETED, output={"ok": True})
    assert (job.status, w.state, w.current_jobs) == (COMPLETED, "idle", set())
    assert finished == [job] and len(dispatch.deadlines) == 2  # and its result retention


def test_a_worker_that_dies_twice_under_a_job_fails_it(store, tmp_path):
    dispatch, _ = parts(store, tmp_path)
    job = new_job(store, dispatch.jobs, 1)
    for _ in range(2):
        w = ready_worker(dispatch, tmp_path)
        dispatch.hand(w, 1, take_at=0.0)
        w.exited_at = 1.0
        dispatch.worker_exited(w, 137)
    assert job.status == FAILED and "already requeued once" in job.error
    assert "exited with code 137" in job.error


def test_the_timer_times_out_a_job_and_stops_its_worker(store, tmp_path):
    dispatch, _ = parts(store, tmp_path, execution_timeout=0.0)
    w = ready_worker(dispatch, tmp_path)
    job = new_job(store, dispatch.jobs, 1)
    dispatch.hand(w, 1, take_at=0.0)
    stopped = []
    dispatch.fleet.stop = lambda worker, why: stopped.append((worker.id, why))
    dispatch.fleet.start = lambda n: None
    Timer(dispatch, "ep").tick()
    assert job.status == TIMED_OUT and job.error.startswith("execution timeout")
    assert stopped == [(w.id, f"job {job.id} ran past its execution timeout")]


def test_the_timer_forgets_a_job_past_its_ttl(store, tmp_path):
    dispatch, _ = parts(store, tmp_path)
    job = new_job(store, dispatch.jobs, 1, ttl=1000)
    dispatch.fleet.start = lambda n: None
    dispatch.push(0.0, dl.TTL, job.id, 0)
    assert job.status == IN_QUEUE
    Timer(dispatch, "ep").tick()
    assert dispatch.jobs.get(job.id) is None and list(dispatch.jobs.queue) == []
