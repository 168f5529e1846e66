"""A real local endpoint (``python -m deploy local``) in a child process, for tests and benchmarks.

    with local_endpoint(tmp_path, workers_max=2, idle_timeout=1) as ep:
        job = ep.api().run({"pipeline": "echo", "params": {"x": 1}})

Keyword options are the fields of ``deploy.local.options.EndpointOptions`` (a name that
is not one fails at once); ``env=`` adds worker environment, ``gpus=`` picks GPUs
(``none`` by default). Several endpoints in one process:

    with local_endpoints(tmp_path, [endpoint_spec("video", workers_max=1),
                                    endpoint_spec("light", workers_max=2)]) as ep:
        ep.api("light").run(...)

The options travel to the child as the declared dataclasses written to a JSON file
(``--config``), not as flags to parse back. Workers are real ``runpod`` SDK processes
started by the endpoint. Every process is stopped on exit.

The endpoint behaves like RunPod unless told otherwise: a test that needs a departure
names it (``fail_fast_crash_loop=True``, ``rate_limits=False``, ``min_ttl=1``,
``min_execution_timeout=1``, ``runsync_retention=2``), as docs/local-endpoint.md lists.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import requests

from deploy.local.options import Config, EndpointOptions, ServerOptions
from deploy.runpod.jobapi import JobAPI
from deploy.runpod.vocabulary import TERMINAL
from deploy.stack.commands import python_module
from deploy.stack.net import free_port, wait_for_port

ROOT = Path(__file__).resolve().parents[2]
# A worker whose every job takes LONG_WORKER_S seconds (deploy/stack/long_worker.py).
LONG_WORKER_COMMAND = f"{sys.executable} -u {Path(__file__).with_name('long_worker.py')}"


def endpoint_spec(
    endpoint_id: str = "local", *, env: dict[str, str] | None = None, **options: Any
) -> EndpointOptions:
    """One endpoint's options; ``env`` is its workers' extra environment."""
    if options.get("worker_command") is None:
        options.pop("worker_command", None)
    return EndpointOptions(endpoint_id=endpoint_id, worker_env=dict(env or {}), **options)


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
        gpus: str = "none",
        endpoints: Sequence[EndpointOptions] | None = None,
        **options: Any,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.api_key = api_key or f"test-{secrets.token_hex(8)}"
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v2"
        if endpoints is None:
            endpoints = [endpoint_spec(endpoint_id, env=env, **options)]
        elif options or env:
            raise TypeError("give each endpoint's options in its endpoint_spec(...)")
        self.config = Config(
            server=ServerOptions(
                state_dir=self.state_dir.resolve(), api_key=self.api_key, port=self.port, gpus=gpus
            ),
            endpoints=list(endpoints),
        )
        self.endpoint_id = self.config.endpoints[0].endpoint_id
        self.process: subprocess.Popen | None = None
        self.log_path = self.state_dir / "endpoint.log"
        self.config_path = self.state_dir / "endpoint.json"

    def command(self) -> list[str]:
        return [*python_module("deploy"), "local", "--config", str(self.config_path)]

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
        # The file holds the API key: readable by this user only.
        fd = os.open(self.config_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(self.config.to_json())
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

    def url(self, route: str, endpoint: str | None = None) -> str:
        """Full URL of ``route`` under an endpoint (the first), e.g. ``url("health")``."""
        return f"{self.base_url}/{endpoint or self.endpoint_id}/{route.lstrip('/')}"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    def api(self, endpoint: str | None = None, **kwargs: Any) -> JobAPI:
        """The project's job-API client pointed at an endpoint (the first by default)."""
        return JobAPI(endpoint or self.endpoint_id, self.api_key, self.base_url, **kwargs)

    def get(self, route: str, endpoint: str | None = None, **kwargs: Any) -> requests.Response:
        url = self.url(route, endpoint)
        return requests.get(url, headers=self.headers, timeout=30, **kwargs)

    def post(self, route: str, endpoint: str | None = None, **kwargs: Any) -> requests.Response:
        url = self.url(route, endpoint)
        return requests.post(url, headers=self.headers, timeout=30, **kwargs)

    def workers(self, endpoint: str | None = None) -> dict[str, Any]:
        return self.get("workers", endpoint).json()

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

    def wait_status(
        self, job_id: str, statuses=None, timeout: float = 30.0, endpoint: str | None = None
    ) -> dict[str, Any]:
        """Poll ``status`` until the job reaches one of ``statuses`` (default: terminal)."""
        wanted = set(statuses or TERMINAL)
        last: dict[str, Any] = {}

        def reached():
            nonlocal last
            last = self.get(f"status/{job_id}", endpoint).json()
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


@contextlib.contextmanager
def local_endpoints(
    state_dir: Path | str, endpoints: Sequence[EndpointOptions], **server: Any
) -> Iterator[LocalEndpoint]:
    """One local endpoint process serving several endpoints (``endpoint_spec`` each);
    ``server``: ``api_key``, ``port``, ``gpus``."""
    with local_endpoint(state_dir, endpoints=endpoints, **server) as ep:
        yield ep
