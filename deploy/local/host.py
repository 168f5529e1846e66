"""One local endpoint process serving one or more endpoints.

What the endpoints share lives here: the job store (one SQLite file, each job row naming
its endpoint), the worker log directory, the machine's GPUs, the HTTP session for
webhooks and the job sequence. Everything else (queue, workers, policy, timer) is each
``Endpoint``'s own.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time

import aiohttp

from deploy.local import workers as wk
from deploy.local.endpoint import Endpoint
from deploy.local.fleet import GpuPool
from deploy.local.options import Config
from deploy.local.store import Store

log = logging.getLogger("deploy.local")

# How long each worker's billed life is kept for /billing: long enough for the app to
# read it (it polls every few minutes) and for a day's report.
LIVES_KEPT_S = 7 * 24 * 3600


class Host:
    def __init__(self, config: Config, gpus: list[str]) -> None:
        self.server = config.server
        state_dir = config.server.state_dir
        self.store = Store(state_dir / "jobs.sqlite3")
        self.log_dir = state_dir / "workers"
        self.base_url = f"http://127.0.0.1:{config.server.port}"
        self.gpus = GpuPool(gpus)
        self._seq = itertools.count(self.store.max_seq() + 1)
        self._http: aiohttp.ClientSession | None = None
        self.endpoints: dict[str, Endpoint] = {
            opts.endpoint_id: Endpoint(opts, self) for opts in config.endpoints
        }

    def next_seq(self) -> int:
        return next(self._seq)

    def http(self) -> aiohttp.ClientSession:
        assert self._http is not None, "start() first"
        return self._http

    async def start(self) -> None:
        killed = wk.kill_leftovers(self.store.recorded_workers())
        if killed:
            log.warning("killed %d worker(s) a previous endpoint process left behind", killed)
        self.store.forget_all_workers()
        self._close_lost_lives()
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        for i, endpoint in enumerate(self.endpoints.values()):
            # Jobs stored before rows named their endpoint belong to the first one.
            await endpoint.start(adopt_unnamed=i == 0)

    def _close_lost_lives(self) -> None:
        """Workers of a previous process that died with it: their record ends at the last
        instant it knows of; records older than LIVES_KEPT_S go."""
        now = time.time()
        self.store.forget_lives_before(now - LIVES_KEPT_S)
        for endpoint in self.endpoints:
            for life in self.store.load_lives(endpoint):
                if life.exited_at is None:
                    life.exited_at = life.last_seen()
                    life.stop_reason = life.stop_reason or "the endpoint process died"
                    self.store.save_life(life)

    async def shutdown(self) -> None:
        await asyncio.gather(*(e.shutdown() for e in self.endpoints.values()))
        if self._http:
            await self._http.close()
        self.store.close()
