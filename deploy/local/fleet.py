"""The worker processes: start them, stop them (SIGTERM, then SIGKILL after the grace),
watch them exit, and remember the last ones for ``/workers``.

What an exit means for the jobs a worker held is the endpoint's business: the fleet
calls ``on_exit(worker, code)`` once the process is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import signal
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from deploy.local import workers as wk
from deploy.local.store import Store

log = logging.getLogger("deploy.local")

# A crashed worker counts as unhealthy in /health for this long after it exited, unless
# a new worker takes its place first.
UNHEALTHY_FOR_S = 300
KEEP_EXITED = 20


class GpuPool:
    """The machine's GPUs, shared by every endpoint the process serves."""

    def __init__(self, gpus: list[str]) -> None:
        self.gpus = list(gpus)
        self.in_use: set[str] = set()

    def claim(self, n: int) -> list[str | None]:
        """Up to ``n`` free GPUs (``n`` CPU-only slots when the machine has none)."""
        if not self.gpus:
            return [None] * n
        free = [g for g in self.gpus if g not in self.in_use][:n]
        self.in_use.update(free)
        return list(free)

    def release(self, gpu: str | None) -> None:
        self.in_use.discard(gpu or "")


class Fleet:
    def __init__(
        self,
        *,
        endpoint_id: str,
        command: list[str],
        env: Callable[[wk.Worker], dict[str, str]],
        gpus: GpuPool,
        stop_grace: float,
        workers_max: int,
        log_dir: Path,
        store: Store,
        on_exit: Callable[[wk.Worker, int], None],
        spawn_task: Callable[[Coroutine[Any, Any, None]], asyncio.Task],
        poke: Callable[[], None],
    ) -> None:
        self.endpoint_id = endpoint_id
        self.command = wk.absolute_command(command, Path.cwd())
        self.workers_max = workers_max
        self.env = env
        self.gpus = gpus
        self.stop_grace = stop_grace
        self.log_dir = log_dir
        self.store = store
        self.on_exit = on_exit
        self.spawn_task = spawn_task
        self.poke = poke
        self.workers: dict[str, wk.Worker] = {}
        self.started = 0
        self.peak = 0
        self.throttled = 0
        self.last_start_at: float | None = None
        # Crashed workers not yet replaced: RunPod reports each as one unhealthy worker.
        self.unhealthy: list[wk.Worker] = []

    def get(self, worker_id: str) -> wk.Worker | None:
        return self.workers.get(worker_id)

    def alive(self) -> list[wk.Worker]:
        return [w for w in self.workers.values() if w.alive]

    def serving(self) -> list[wk.Worker]:
        """Live workers that are not being stopped: the ones scaling counts."""
        return [w for w in self.workers.values() if w.alive and not w.stopping]

    def start(self, n: int) -> None:
        """Start up to ``n`` workers; those that get no free GPU count as throttled."""
        started = 0
        for gpu in self.gpus.claim(n):
            if self.unhealthy:
                self.unhealthy.pop(0)  # the new worker takes the crashed one's place
            w = wk.new_worker(self.log_dir, gpu)
            w.life.endpoint = self.endpoint_id
            self.save_life(w)
            self.workers[w.id] = w
            self.spawn_task(self._run(w))
            started += 1
        if started:
            self.last_start_at = time.monotonic()
        self.started += started
        self.peak = max(self.peak, len(self.alive()))
        self.throttled = n - started

    async def _run(self, w: wk.Worker) -> None:
        try:
            await wk.spawn(w, self.command, self.env(w))
        except OSError as exc:
            code = 126 if isinstance(exc, PermissionError) else 127
            with w.log_path.open("a") as fh:
                fh.write(f"cannot start {self.command[0]!r}: {exc}\n")
            self._exited(w, code)
            return
        assert w.proc is not None
        self.store.record_worker(w.id, w.proc.pid, w.started_at)
        rc = await w.proc.wait()
        # The SDK's heartbeat runs in a child process: take the whole group down with it.
        wk.signal_group(w.proc.pid, signal.SIGKILL)
        self._exited(w, wk.shell_exit_code(rc))

    def stop(self, w: wk.Worker, why: str) -> None:
        if w.stopping or not w.alive:
            return
        log.info("stopping worker %s: %s", w.id, why)
        w.stopping = True
        w.stop_reason = why
        w.state = "stopping"
        w.life.stop_requested_at = time.time()
        w.life.stop_reason = why
        self.save_life(w)
        w.kill_at = time.monotonic() + self.stop_grace
        # SIGTERM first, so the SDK knows it is shutting down when its long-polls return.
        wk.signal_group(w.pid, signal.SIGTERM)
        _release_polls(w)
        self.poke()

    def save_life(self, w: wk.Worker) -> None:
        """Write the worker's billed life through at each change (start, ready, each job,
        stop, exit), so it survives the endpoint."""
        with contextlib.suppress(Exception):  # a closed store at shutdown loses nothing billed
            self.store.save_life(w.life)

    def kill_overdue(self, now: float) -> list[float]:
        """SIGKILL stopping workers past their grace; returns the next kill times."""
        wake = []
        for w in self.alive():
            if w.stopping and w.kill_at is not None:
                if w.kill_at <= now:
                    wk.signal_group(w.pid, signal.SIGKILL)
                    w.kill_at = None
                else:
                    wake.append(w.kill_at)
        return wake

    async def stop_all(self, why: str) -> None:
        """Stop every worker and wait for them, SIGKILLing any left after the grace."""
        live = self.alive()
        for w in live:
            self.stop(w, why)
        deadline = time.monotonic() + self.stop_grace
        while any(w.alive for w in live) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for w in live:
            if w.alive:
                wk.signal_group(w.pid, signal.SIGKILL)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(_until_exited(live), 2)

    def _exited(self, w: wk.Worker, code: int) -> None:
        w.exited_at = time.time()
        w.exit_code = code
        w.life.exited(code, w.exited_at)
        self.save_life(w)
        w.kill_at = None
        self.gpus.release(w.gpu)
        _release_polls(w)
        # Its container disk goes with it, as on RunPod; the log stays for /workers.
        shutil.rmtree(w.work_dir, ignore_errors=True)
        with contextlib.suppress(Exception):
            self.store.forget_worker(w.id)
        self.on_exit(w, code)
        if w.crashed:
            self.unhealthy.append(w)
        exited = sorted((x for x in self.workers.values() if not x.alive), key=_exit_time)
        for old in exited[:-KEEP_EXITED]:
            self.workers.pop(old.id, None)

    def summary(self) -> dict[str, int]:
        now = time.time()
        states = Counter(w.state for w in self.alive())
        self.unhealthy = [
            w for w in self.unhealthy if w.exited_at and now - w.exited_at < UNHEALTHY_FOR_S
        ]
        # Current workers only: never more than the endpoint's workersMax in all.
        room = max(0, self.workers_max - sum(states.values()))
        unhealthy = min(len(self.unhealthy), room)
        return {
            "running": states["running"],
            "idle": states["idle"],
            "initializing": states["initializing"],
            "stopping": states["stopping"],
            "throttled": self.throttled,
            "unhealthy": unhealthy,
            "total": sum(states.values()),
        }

    def port_collision(self, w: wk.Worker) -> str | None:
        """If ``w`` died unable to bind a port, which one (held by a sibling) and why."""
        siblings: set[int] = set()
        for other in self.alive():
            if other is not w:
                siblings |= wk.listening_ports(other.pid)
        return wk.port_collision(wk.tail(w.log_path, 40), siblings)

    def describe(self) -> list[dict[str, Any]]:
        return [w.describe() for w in sorted(self.workers.values(), key=lambda w: w.started_at)]


def _exit_time(w: wk.Worker) -> float:
    return w.exited_at or 0.0


def _release_polls(w: wk.Worker) -> None:
    """Answer the worker's pending long-polls at once (no job, nothing to stop)."""
    if w.take_waiter is not None and not w.take_waiter.done():
        w.take_waiter.set_result([])
    if w.stop_waiter is not None and not w.stop_waiter.done():
        w.stop_waiter.set_result(None)


async def _until_exited(live: list[wk.Worker]) -> None:
    while any(w.alive for w in live):
        await asyncio.sleep(0.02)
