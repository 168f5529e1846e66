"""A real local endpoint (``python -m deploy local``) in a child process, for tests and benchmarks.

    with local_endpoint(tmp_path, workers_max=2, idle_timeout=1) as ep:
        job = ep.api().run({"pipeline": "echo", "params": {"x": 1}})

Options map to the CLI flags (``workers_max=2`` -> ``--workers-max 2``; ``True`` -> a bare
flag such as ``--disabled``); ``env=`` adds worker environment. Workers are real
``runpod`` SDK processes started by the endpoint. Every process is stopped on exit.

The endpoint behaves like RunPod unless told otherwise: a test that needs a departure
names it (``fail_fast_crash_loop=True``, ``no_rate_limits=True``, ``min_ttl=1``,
``min_execution_timeout=1``, ``runsync_retention=2``), as docs/local-endpoint.md's table lists.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests

from deploy.runpod.jobapi import JobAPI
from deploy.runpod.vocabulary import TERMINAL
from deploy.stack.commands import local_endpoint_argv
from deploy.stack.net import free_port, wait_for_port

ROOT = Path(__file__).resolve().parents[2]


class LocalEndpoint:
    """Handle on a running local endpoint process."""

    def __init__(
        self,
        state_dir: Path,
        *,
        endpoint_id: str = "local",
        api_key: str | None = None,
        port: int | None = None,
        env: dict[str, str] | None = None,
        **options: Any,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.endpoint_id = endpoint_id
        self.api_key = api_key or f"test-{secrets.token_hex(8)}"
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v2"
        self.worker_env = dict(env or {})
        self.options = options
        self.process: subprocess.Popen | None = None
        self.log_path = self.state_dir / "endpoint.log"

    def command(self) -> list[str]:
        cmd = local_endpoint_argv(
            self.port,
            self.state_dir,
            self.api_key,
            self.endpoint_id,
            "--gpus",
            str(self.options.get("gpus", "none")),
        )
        for name, value in self.options.items():
            if name == "gpus" or value is None or value is False:
                continue
            flag = "--" + name.replace("_", "-")
            if value is True:
                cmd.append(flag)
            else:
                cmd += [flag, str(value)]
        for name, value in self.worker_env.items():
            cmd += ["--worker-env", f"{name}={value}"]
        return cmd

    def start(self, timeout: float = 20.0) -> None:
        env = dict(os.environ)
        env.update(
            {
                "RUNPOD_SKIP_AUTO_SYSTEM_CHECKS": "true",
                "RUNPOD_SKIP_GPU_CHECK": "true",
                "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
            }
        )
        env.pop("RUNPOD_API_KEY", None)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command(),
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"local endpoint exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            try:
                wait_for_port(self.port, timeout=0.2)
                return
            except TimeoutError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise TimeoutError(
                        f"local endpoint did not start:\n{self.log_tail()}"
                    ) from None

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def url(self, route: str) -> str:
        """Full URL of ``route`` under this endpoint, e.g. ``url("health")``."""
        return f"{self.base_url}/{self.endpoint_id}/{route.lstrip('/')}"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    def api(self, **kwargs: Any) -> JobAPI:
        """The project's job-API client pointed at this endpoint."""
        return JobAPI(self.endpoint_id, self.api_key, self.base_url, **kwargs)

    def get(self, route: str, **kwargs: Any) -> requests.Response:
        return requests.get(self.url(route), headers=self.headers, timeout=30, **kwargs)

    def post(self, route: str, **kwargs: Any) -> requests.Response:
        return requests.post(self.url(route), headers=self.headers, timeout=30, **kwargs)

    def workers(self) -> dict[str, Any]:
        return self.get("workers").json()

    def wait_for(self, predicate, timeout: float = 30.0, interval: float = 0.05, what: str = ""):
        """Poll ``predicate()`` until it returns something truthy; ``TimeoutError`` if not."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout}s waiting for {what or predicate}")
            time.sleep(interval)

    def wait_status(self, job_id: str, statuses=None, timeout: float = 30.0) -> dict[str, Any]:
        """Poll ``status`` until the job reaches one of ``statuses`` (default: terminal)."""
        wanted = set(statuses or TERMINAL)
        last: dict[str, Any] = {}

        def reached():
            nonlocal last
            last = self.get(f"status/{job_id}").json()
            return last if last.get("status") in wanted else None

        try:
            return self.wait_for(reached, timeout, what=f"job {job_id} in {sorted(wanted)}")
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}; last status {last}") from None

    def kill(self) -> None:
        """SIGKILL the endpoint (its workers die with it through PR_SET_PDEATHSIG)."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the endpoint and wait; it stops its workers first."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def restart(self) -> None:
        """Start again on the same port and state dir (after ``kill()`` or ``stop()``)."""
        self.stop()
        self.start()


@contextlib.contextmanager
def local_endpoint(state_dir: Path | str, **options: Any) -> Iterator[LocalEndpoint]:
    """Start a local endpoint for the ``with`` block; it and its workers stop afterwards."""
    ep = LocalEndpoint(Path(state_dir), **options)
    ep.start()
    try:
        yield ep
    finally:
        ep.stop()
