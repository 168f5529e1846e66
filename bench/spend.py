"""``python -m bench spend``: GPU-seconds a crash-looping image bills, with the breaker and
without it, in the same run; and the time from its first crash to the breaker tripping.

One local endpoint process serves two endpoints with the same image, whose workers die at
import (``ModuleNotFoundError``) and are restarted with the local endpoint's RunPod-like
back-off. Both get a job at once and another every ``--every`` seconds, as users keep
submitting, for ``--window`` seconds. On "breaker", the app's breaker
(``app.endpoints.breaker.observe``, on the same snapshot shape reconcile stores: ``/health``
and ``/workers``) is asked every ``--check`` seconds; once it trips, the jobs still queued
there are taken back (cancelled; ``app.lifecycle.spend.take_back`` does that for the app's
rows) and nothing more is sent. The bill is each endpoint's own record (``/billing``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from app.endpoints import breaker
from app.migrate import upgrade
from app.settings import Settings
from deploy.stack.local_endpoint import endpoint_spec, local_endpoints

# The SDK imports (as a real handler's start does), then the module the image lacks.
CRASHES_AT_IMPORT = f'{sys.executable} -u -c "import runpod, cv2"'


def billed(ep, name: str) -> tuple[float, int, float | None]:
    """(GPU-seconds billed so far, workers started, first crash's exit time)."""
    bill = ep.get("billing", name).json()
    exits = [w["exitedAt"] for w in bill["workers"] if w.get("exitCode") not in (None, 0)]
    return bill["billedSeconds"], len(bill["workers"]), min(exits, default=None)


def run(window: float, every: float, check: float, crashes: int) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="bench-spend-"))
    specs = [
        endpoint_spec(name, worker_command=CRASHES_AT_IMPORT, crash_loop_threshold=10**6)
        for name in ("without", "breaker")
    ]
    database = f"sqlite:///{tmp}/app.db"
    upgrade(database)
    engine = create_engine(database)
    with local_endpoints(tmp / "endpoint", specs) as ep:
        settings = Settings(
            app_env="test",
            database_url=database,
            runpod_endpoint_base_url=ep.base_url,
            breaker_crashes=crashes,
        )
        apis = {name: ep.api(name) for name in ("without", "breaker")}
        sent = {"without": [], "breaker": []}
        start = time.monotonic()
        next_job = start
        tripped_at: float | None = None
        with Session(engine) as session:
            while (now := time.monotonic()) < start + window:
                if now >= next_job:
                    for name, api in apis.items():
                        if name == "breaker" and tripped_at is not None:
                            continue  # held by the breaker: never sent
                        sent[name].append(api.run({"pipeline": "echo", "params": {}})["id"])
                    next_job += every
                if tripped_at is None:
                    api = apis["breaker"]
                    snapshot = {"health": api.health(), "workers": api.workers()}
                    if breaker.observe(session, settings, snapshot, "breaker"):
                        tripped_at = time.time()
                        for job_id in sent["breaker"]:  # take back what is still queued
                            if api.status(job_id).get("status") == "IN_QUEUE":
                                api.cancel(job_id)
                time.sleep(check)
        out = {"window_s": window, "job_every_s": every, "breaker_crashes": crashes}
        for name in ("without", "breaker"):
            seconds, workers, first_crash = billed(ep, name)
            out[name] = {
                "gpu_seconds_billed": round(seconds, 2),
                "workers_started": workers,
                "jobs_sent": len(sent[name]),
            }
            if name == "breaker" and first_crash and tripped_at:
                out[name]["first_crash_to_trip_s"] = round(tripped_at - first_crash, 2)
        saved = out["without"]["gpu_seconds_billed"] - out["breaker"]["gpu_seconds_billed"]
        out["gpu_seconds_saved"] = round(saved, 2)
    engine.dispose()
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench spend", description=__doc__)
    parser.add_argument("--window", type=float, default=90.0, help="seconds (default 90)")
    parser.add_argument("--every", type=float, default=10.0, help="a new job every N s")
    parser.add_argument("--check", type=float, default=1.0, help="breaker checks every N s")
    parser.add_argument("--crashes", type=int, default=3, help="BREAKER_CRASHES")
    args = parser.parse_args(argv)
    print(json.dumps(run(args.window, args.every, args.check, args.crashes), indent=2))
    return 0
