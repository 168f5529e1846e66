"""Progress sent straight to the app, beside RunPod's ``progress_update``.

The app learns a job's progress from the worker within about a second this way, without
spending its ``/status`` budget (DESIGN invariant 9). The URL comes in the job input
(``callbacks.progress``), signed by the app for this attempt.

Sending never blocks or fails the job: updates go to one background thread that posts the
newest one with short timeouts and drops any it could not deliver; a 410 answer (the app
says this attempt is superseded or the job is over) stops the sending.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import requests

from gpu_worker.redaction import redact_url
from gpu_worker.settings import Platform

log = logging.getLogger("gpu_worker")

TIMEOUT = (2.0, 3.0)  # connect, read: a slow app delays only the next update, never the job


class ProgressSender:
    """Posts the latest progress update to ``url`` from a daemon thread; newest wins."""

    def __init__(self, url: str, runpod_job_id: str | None) -> None:
        self.url = url
        self.runpod_job_id = runpod_job_id
        self.worker_id = Platform.from_env().runpod_pod_id or None
        self._pending: dict[str, Any] | None = None
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._warned = False
        self._session = requests.Session()
        self._thread = threading.Thread(target=self._loop, name="progress-callback", daemon=True)
        self._thread.start()

    def send(self, update: dict[str, Any]) -> None:
        """Queue ``update`` for sending; replaces one not yet sent. Returns at once."""
        if self._stopped.is_set():
            return
        with self._lock:
            self._pending = dict(update)
        self._wake.set()

    def close(self, wait_s: float = 1.0) -> None:
        """Send what is queued if it goes quickly, then stop."""
        self._stopped.set()
        self._wake.set()
        self._thread.join(wait_s)

    def _loop(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            with self._lock:
                update, self._pending = self._pending, None
            if update is not None and not self._post(update):
                self._stopped.set()
            if self._stopped.is_set():
                self._session.close()
                return

    def _post(self, update: dict[str, Any]) -> bool:
        """Deliver one update; False when the app wants no more of them."""
        body = {
            "progress": update,
            "worker_id": self.worker_id,
            "job_id": self.runpod_job_id,
            "sent_at": time.time(),  # lets the page say how fresh it is (and bench measure it)
        }
        try:
            response = self._session.post(self.url, json=body, timeout=TIMEOUT)
        except requests.RequestException as exc:
            self._warn(f"{type(exc).__name__}")
            return True
        if response.status_code == 410:
            log.info("progress callback: the app no longer follows this attempt; stopping")
            return False
        if response.status_code >= 400:
            self._warn(f"HTTP {response.status_code}")
        return True

    def _warn(self, what: str) -> None:
        # Once per job: a down app must not flood the worker's log once a second.
        if not self._warned:
            self._warned = True
            log.warning(
                "progress callback to %s failed (%s); the job goes on", redact_url(self.url), what
            )
