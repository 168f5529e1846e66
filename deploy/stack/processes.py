"""Child processes in their own process groups, and the process tree below a pid (psutil).

Every ``ManagedProcess`` runs in its own session, so a SIGKILL to its group reaches Celery's
pool children too; its output goes to a log file whose tail goes into every error.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from deploy.stack.net import wait_for_port

ROOT = Path(__file__).resolve().parents[2]

_live: set[ManagedProcess] = set()


class ServiceError(RuntimeError):
    """A service did not start or stop as expected; the message carries its log tail."""


@dataclass(eq=False)
class ManagedProcess:
    """A subprocess in its own process group, with its output in ``log_path``."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    cwd: Path = ROOT
    process: subprocess.Popen | None = field(default=None, init=False)

    def start(self) -> ManagedProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # the child keeps its own copy of the descriptor
        try:
            self.process = subprocess.Popen(
                self.argv,
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log.close()
        _live.add(self)
        return self

    @contextlib.contextmanager
    def running(self, stop_timeout: float = 10.0) -> Iterator[ManagedProcess]:
        """Start it for the ``with`` block; stop the group on the way out, even on errors."""
        self.start()
        try:
            yield self
        finally:
            self.stop(timeout=stop_timeout)

    @property
    def pid(self) -> int:
        assert self.process is not None, f"{self.name} was never started"
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def wait_for_log(self, needle: str, timeout: float = 30.0) -> None:
        """Block until ``needle`` appears in the output; fail early if the process exits."""
        self.wait_until(lambda: needle in self.log_text(), f"{needle!r} in its log", timeout)

    def wait_for_port(self, port: int, timeout: float = 30.0) -> None:
        def listening() -> bool:
            try:
                wait_for_port(port, timeout=0.2)
            except TimeoutError:
                return False
            return True

        self.wait_until(listening, f"a listener on port {port}", timeout)

    def wait_until(self, ready: Callable[[], bool], what: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready():
                return
            if not self.alive():
                raise ServiceError(
                    f"{self.name} exited with {self.process.returncode if self.process else None}"
                    f" before {what}:\n{self.log_tail()}"
                )
            time.sleep(0.1)
        raise ServiceError(f"{self.name}: no {what} after {timeout}s:\n{self.log_tail()}")

    def signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)

    def kill(self) -> None:
        """SIGKILL the process and every process in its group; reap it."""
        if self.process is None:
            return
        self.signal_group(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)
        _live.discard(self)

    def stop(self, timeout: float = 10.0, sig: int = signal.SIGTERM) -> int | None:
        """Ask the group to stop with ``sig``; SIGKILL whatever is left after ``timeout``."""
        if self.process is None:
            return None
        if self.alive():
            self.signal_group(sig)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        # Pool children or grandchildren may outlive the leader: the group goes too.
        self.signal_group(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)
        _live.discard(self)
        return self.process.returncode


@atexit.register
def _kill_leftovers() -> None:
    # Safety net for an interpreter that dies outside the context managers.
    for proc in list(_live):
        proc.kill()


def descendants(pid: int) -> set[int]:
    """Pids of every process below ``pid`` (children, their children, ...); empty if gone."""
    try:
        return {child.pid for child in psutil.Process(pid).children(recursive=True)}
    except psutil.Error:
        return set()


def alive_pids(pids: set[int]) -> set[int]:
    """Those of ``pids`` still running (zombies count as gone)."""
    alive = set()
    for pid in pids:
        try:
            status = psutil.Process(pid).status()
        except psutil.Error:
            continue
        if status not in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD):
            alive.add(pid)
    return alive


def wait_gone(pids: set[int], timeout: float = 10.0) -> set[int]:
    """Wait until none of ``pids`` runs; return those still running at the deadline."""
    deadline = time.monotonic() + timeout
    while (left := alive_pids(pids)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def command_line(pid: int) -> str:
    """The process's command line joined by spaces, or "" once it is gone."""
    try:
        return " ".join(psutil.Process(pid).cmdline())
    except psutil.Error:
        return ""


def child_env(env: Mapping[str, str] | None) -> dict[str, str]:
    """This process's environment with ``env`` over it, unbuffered, the repo importable."""
    merged = {**os.environ, **(env or {})}
    merged["PYTHONUNBUFFERED"] = "1"
    merged["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), merged.get("PYTHONPATH", "")) if p
    )
    return merged


def subfolder(base: Path | str | None, name: str) -> Path:
    """``base/name``, created; a fresh temporary folder stands in for a missing ``base``."""
    root = Path(base) if base is not None else Path(tempfile.mkdtemp(prefix="svc-"))
    path = root / name
    path.mkdir(parents=True, exist_ok=True)
    return path
