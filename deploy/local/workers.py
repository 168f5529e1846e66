"""Worker processes: start one with the RunPod worker environment, stop it, explain its exit."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import re
import secrets
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from deploy.local.life import WorkerLife
from deploy.local.scaling import IDLE, RUNNING
from deploy.runpod.vocabulary import exit_meaning

PR_SET_PDEATHSIG = 1
# The SDK ignores a stop for a job it took but has not started yet ("No in-progress
# job"), so each stop is sent again for this long; a repeat is harmless.
STOP_RESEND_S = 5.0
# The local states as RunPod's REST v2 ``WorkerStatus`` (a stopping worker still bills).
RUNPOD_STATUS = {
    "initializing": "INITIALIZING",
    "idle": "IDLE",
    "running": "RUNNING",
    "stopping": "RUNNING",
    "unhealthy": "UNHEALTHY",
}


def shell_exit_code(returncode: int) -> int:
    """Popen reports death by signal N as -N; people know it as 128+N (137, 139)."""
    return 128 - returncode if returncode < 0 else returncode


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: if the endpoint dies (even by kill -9),
    # the kernel sends the worker SIGKILL, so no worker outlives its endpoint.
    with contextlib.suppress(OSError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def detect_gpus(spec: str) -> list[str]:
    """``auto``: the GPUs ``nvidia-smi -L`` lists; ``none``: no GPUs; else a list ``0,1``."""
    spec = spec.strip()
    if spec == "none":
        return []
    if spec != "auto":
        return [g.strip() for g in spec.split(",") if g.strip()]
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(out.splitlines()) if line.startswith("GPU ")]


def tail(path: Path, lines: int = 20, max_bytes: int = 64 * 1024) -> list[str]:
    """The last ``lines`` lines of a log file (reading at most ``max_bytes`` from its end)."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            data = fh.read()
    except OSError:
        return []
    text = data.decode("utf-8", "replace").splitlines()
    return text[-lines:] if lines > 0 else []


@dataclass
class Worker:
    """One worker process and what the endpoint knows about it."""

    id: str
    key: str
    gpu: str | None
    log_path: Path
    # Its own working and temporary directory, as a container would have; removed at exit.
    work_dir: Path
    started_at: float = field(default_factory=time.time)
    ready_at: float | None = None
    proc: asyncio.subprocess.Process | None = None
    state: str = "initializing"
    took_any: bool = False
    stopping: bool = False
    stop_reason: str = ""
    kill_at: float | None = None
    idle_since: float | None = None
    exited_at: float | None = None
    exit_code: int | None = None
    jobs_done: int = 0
    # Jobs handed to the worker and not finished.
    current_jobs: set[str] = field(default_factory=set)
    # Jobs it was told to stop (cancel, ttl) -> when; it is busy until its pings, a
    # result or a job-take with job_in_progress=0 show they ended.
    stopped_jobs: dict[str, float] = field(default_factory=dict)
    # The job ids its last heartbeat listed as running.
    reported_jobs: set[str] = field(default_factory=set)
    pending_stops: list[str] = field(default_factory=list)
    resend_stops: dict[str, float] = field(default_factory=dict)
    take_waiter: asyncio.Future | None = None
    take_batch: int = 1
    take_at: float = 0.0
    stop_waiter: asyncio.Future | None = None
    last_error: str = ""
    crashed: bool = False
    life: WorkerLife = field(init=False)

    def __post_init__(self) -> None:
        self.life = WorkerLife(self.started_at, worker_id=self.id, gpu=self.gpu)

    def settle(self, now: float) -> None:
        """initializing until its first take; then running while it holds or still runs
        jobs (those it was told to stop included), else idle since ``now``."""
        if not self.alive or self.stopping or not self.took_any:
            return
        if self.current_jobs or self.stopped_jobs:
            self.state = RUNNING
            self.idle_since = None
        elif self.state != IDLE:
            self.state = IDLE
            self.idle_since = now

    def drain_stops(self, now: float) -> list[str]:
        """The job ids to answer a job-stop poll with: new stops, and earlier ones still
        within ``STOP_RESEND_S``."""
        ids, self.pending_stops = self.pending_stops, []
        for job_id in ids:
            self.resend_stops.setdefault(job_id, now + STOP_RESEND_S)
        for job_id, until in list(self.resend_stops.items()):
            if until <= now:
                del self.resend_stops[job_id]
            elif job_id not in ids:
                ids.append(job_id)
        return ids

    def exited(self, code: int) -> bool:
        """The process is gone: what it held is no longer its; True if it crashed (it
        was not being stopped, and it failed or never took a job)."""
        self.current_jobs.clear()
        self.stopped_jobs.clear()
        self.crashed = not self.stopping and (code != 0 or not self.took_any)
        self.state = "unhealthy" if self.crashed else "exited"
        return self.crashed

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def alive(self) -> bool:
        return self.exited_at is None

    def describe(self, log_lines: int = 10) -> dict:
        now = time.time()
        return {
            "id": self.id,
            # RunPod's REST v2 worker fields where it has them (``status``, ``gpuCount``,
            # ``isStale``, ``uptimeSeconds``); ``startedAt`` stays epoch seconds here.
            "status": RUNPOD_STATUS.get(self.state) if self.alive else None,
            "gpuCount": 0 if self.gpu is None else 1,
            "isStale": False,
            "uptimeSeconds": int((self.exited_at or now) - self.started_at),
            "state": self.state,
            "pid": self.pid,
            "gpu": self.gpu,
            "startedAt": self.started_at,
            "exitedAt": self.exited_at,
            "exitCode": self.exit_code,
            # Explained only for a worker that died on its own (see stopReason otherwise).
            "exitMeaning": "" if self.stopping else exit_meaning(self.exit_code),
            "stopReason": self.stop_reason,
            "jobsDone": self.jobs_done,
            "currentJobs": sorted(self.current_jobs),
            "stoppedJobsStillRunning": sorted(self.stopped_jobs),
            "lastError": self.last_error,
            "workDir": str(self.work_dir),
            "logTail": tail(self.log_path, log_lines),
            "life": self.life.describe(now),
        }


def new_worker(log_dir: Path, gpu: str | None) -> Worker:
    worker_id = f"w{secrets.token_hex(5)}"
    return Worker(
        id=worker_id,
        key=secrets.token_urlsafe(24),
        gpu=gpu,
        log_path=log_dir / f"{worker_id}.log",
        work_dir=log_dir / worker_id,
    )


def worker_env(
    worker: Worker, base_url: str, endpoint_id: str, extra: dict[str, str]
) -> dict[str, str]:
    """The environment RunPod gives a worker (see runpod-sdk-protocol.md §1)."""
    root = f"{base_url}/v2/{endpoint_id}"
    query = f"?gpu={worker.gpu if worker.gpu is not None else 'cpu'}"
    env = dict(os.environ)
    env.update(
        {
            "RUNPOD_WEBHOOK_GET_JOB": f"{root}/job-take/$ID{query}",
            "RUNPOD_WEBHOOK_POST_OUTPUT": f"{root}/job-done/$RUNPOD_POD_ID/$ID{query}",
            "RUNPOD_WEBHOOK_POST_STREAM": f"{root}/job-stream/$RUNPOD_POD_ID/$ID{query}",
            "RUNPOD_WEBHOOK_PING": f"{root}/ping/$RUNPOD_POD_ID{query}",
            "RUNPOD_POD_ID": worker.id,
            "RUNPOD_ENDPOINT_ID": endpoint_id,
            "RUNPOD_GPU_COUNT": "1" if worker.gpu is not None else "0",
            "RUNPOD_POD_HOSTNAME": f"{worker.id}-local",
            "RUNPOD_AI_API_KEY": worker.key,
            "RUNPOD_SKIP_AUTO_SYSTEM_CHECKS": "true",
            "RUNPOD_SKIP_GPU_CHECK": "true",
            "LOCAL_ENDPOINT_WORKER": worker.id,
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.setdefault("RUNPOD_LOG_LEVEL", "INFO")
    env.setdefault("RUNPOD_PING_INTERVAL", "10000")
    if worker.gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = worker.gpu
    tmp = str(worker.work_dir / "tmp")
    env.update({"TMPDIR": tmp, "TEMP": tmp, "TMP": tmp})
    # The worker runs in its own directory: modules of the directory the endpoint was
    # started from (``-m gpu_worker``) stay importable.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [os.getcwd(), env.get("PYTHONPATH")]))
    env.update(extra)
    # The endpoint's own key must never reach a worker.
    env.pop("RUNPOD_API_KEY", None)
    return env


async def spawn(worker: Worker, command: list[str], env: dict[str, str]) -> None:
    """Start the worker in its own process group, stdout and stderr to its log file."""
    worker.log_path.parent.mkdir(parents=True, exist_ok=True)
    (worker.work_dir / "tmp").mkdir(parents=True, exist_ok=True)
    with worker.log_path.open("ab") as log:
        worker.proc = await asyncio.create_subprocess_exec(
            *command,
            cwd=worker.work_dir,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - only prctl, async-signal-safe
        )


def signal_group(pid: int | None, sig: int) -> None:
    """Signal the worker's whole process group (the SDK's heartbeat child included)."""
    if pid is None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def kill_leftovers(recorded: list[tuple[str, int]]) -> int:
    """Kill workers a previous, killed endpoint left behind (matched by their environment)."""
    killed = 0
    for worker_id, pid in recorded:
        try:
            environ = psutil.Process(pid).environ()
        except psutil.Error:
            continue
        if environ.get("LOCAL_ENDPOINT_WORKER") == worker_id:
            signal_group(pid, signal.SIGKILL)
            killed += 1
    return killed


def absolute_command(command: list[str], base: Path) -> list[str]:
    """Relative paths in a worker command that exist under ``base`` made absolute: each
    worker runs in its own directory, but ``python handler.py`` means the one here."""
    out: list[str] = []
    for arg in command:
        after_option = bool(out) and out[-1] in ("-m", "-c")  # a module name or code
        if not after_option and not os.path.isabs(arg) and (base / arg).is_file():
            arg = str(base / arg)
        out.append(arg)
    return out


ADDRESS_IN_USE = re.compile(r"EADDRINUSE|address already in use|Errno 98", re.IGNORECASE)
PORT_IN_TEXT = re.compile(r"(?:port\s*[=:]?\s*|:)(\d{2,5})\b", re.IGNORECASE)


def listening_ports(pid: int | None) -> set[int]:
    """TCP ports a worker's process group listens on (the worker and its children)."""
    if pid is None:
        return set()
    ports: set[int] = set()
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return ports
    for proc in procs:
        try:
            conns = proc.net_connections(kind="inet")
        except psutil.Error:
            continue
        ports |= {c.laddr.port for c in conns if c.status == psutil.CONN_LISTEN}
    return ports


def port_collision(log_lines: list[str], siblings: set[int]) -> str | None:
    """Why a worker died, if it could not bind a port: which port and the way out.

    Workers share this machine's network (a network namespace per worker would cut it
    off from the endpoint), so two workers binding a fixed port collide."""
    hits = [line for line in log_lines if ADDRESS_IN_USE.search(line)]
    if not hits:
        return None
    named = {int(m) for line in log_lines for m in PORT_IN_TEXT.findall(line)}
    ports = sorted((named & siblings) or siblings or named)
    which = f"port {', '.join(map(str, ports))}" if ports else "a port"
    return (
        f"{which} already in use (address already in use): workers of a local endpoint "
        "share this machine's network, so two workers binding the same fixed port "
        "collide. Run this endpoint with --workers-max 1, or make the worker's port "
        "configurable."
    )
