"""``python -m bench endpoint``: the local endpoint's figures, printed as one JSON object.

- overhead: sequential ``runsync`` echo jobs on one warm worker; the endpoint stamps each
  job (received, enqueued, the worker's take request, handed, result, answered) so its own
  time is told apart from the SDK worker's and from waiting for the worker to ask.
- rp_serve_api: the same handler under the SDK's own in-process test server.
- cold start: zero workers, one ``runsync``; beside it ``python -c pass`` and the imports.
- scale-down: last job's end to the worker's exit, against ``idleTimeout``.
- idle: CPU seconds over ``--idle-seconds`` of the endpoint and of two idle warm workers.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from tests.support.local_endpoint import ROOT, local_endpoint
from tests.support.net import free_port, wait_for_port

ECHO = {"input": {"pipeline": "echo", "params": {"bench": True}}}
TICK = os.sysconf("SC_CLK_TCK")


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return round(ordered[k], 3)


def _summary(values: list[float]) -> dict[str, float]:
    return {"p50": _pct(values, 50), "p99": _pct(values, 99), "n": len(values)}


def _time_command(args: list[str], repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(args, cwd=ROOT, check=True, capture_output=True)
        best = min(best, time.perf_counter() - start)
    return round(best, 3)


def overhead(state: Path, jobs: int) -> dict:
    with local_endpoint(state, workers_min=1, idle_timeout=60) as ep:
        ep.wait_for(lambda: ep.workers()["summary"]["idle"] == 1, 30, what="a warm worker")
        session = requests.Session()
        e2e, endpoint_ms, worker_ms, wait_ms = [], [], [], []
        for _ in range(jobs + 2):
            start = time.perf_counter()
            body = session.post(ep.url("runsync"), json=ECHO, headers=ep.headers).json()
            e2e.append((time.perf_counter() - start) * 1000)
            t = body["timings"]
            endpoint_ms.append(t["endpointMs"])
            worker_ms.append(t["workerMs"])
            wait_ms.append(t["queueWaitMs"])
        cut = slice(2, None)  # the first jobs warm up connections and imports
        return {
            "endpoint_overhead_ms": _summary(endpoint_ms[cut]),
            "worker_ms": _summary(worker_ms[cut]),
            "waiting_for_worker_poll_ms": _summary(wait_ms[cut]),
            "e2e_runsync_ms": _summary(e2e[cut]),
        }


def serve_api(jobs: int) -> dict:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-u", "-m", "gpu_worker", "--rp_serve_api", "--rp_api_port", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=os.environ | {"RUNPOD_LOG_LEVEL": "ERROR"},
    )
    try:
        wait_for_port(port, timeout=30)
        session = requests.Session()
        times = []
        for _ in range(jobs + 2):
            start = time.perf_counter()
            body = session.post(f"http://127.0.0.1:{port}/runsync", json=ECHO, timeout=30).json()
            times.append((time.perf_counter() - start) * 1000)
            assert body["status"] == "COMPLETED", body
        return {"e2e_runsync_ms": _summary(times[2:])}
    finally:
        proc.terminate()
        proc.wait(10)


def cold_and_scale_down(state: Path, idle_timeout: float) -> dict:
    bare = _time_command([sys.executable, "-c", "pass"])
    imports_plain = _time_command([sys.executable, "-c", "import runpod, gpu_worker"])
    imports_boot = _time_command(
        [sys.executable, "-c", "import gpu_worker.boot, runpod, gpu_worker.handler"]
    )
    with local_endpoint(state, idle_timeout=idle_timeout, stop_grace=5) as ep:
        start = time.perf_counter()
        body = ep.post("runsync", json=ECHO).json()
        cold = time.perf_counter() - start
        done_wall = time.time()
        assert body["status"] == "COMPLETED", body
        exited = ep.wait_for(
            lambda: [w["exitedAt"] for w in ep.workers()["workers"] if w["exitedAt"]],
            timeout=idle_timeout + 30,
            interval=0.02,
            what="the worker to exit",
        )[0]
    return {
        "cold_start": {
            "runsync_from_zero_workers_s": round(cold, 3),
            "python_c_pass_s": bare,
            "python_import_runpod_gpu_worker_s": imports_plain,
            "python_import_with_gpu_worker_boot_s": imports_boot,
            "endpoint_added_over_worker_imports_ms": round((cold - imports_boot) * 1000, 1),
        },
        "scale_down": {
            "idle_timeout_s": idle_timeout,
            "last_job_end_to_worker_exit_s": round(exited - done_wall, 3),
        },
    }


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def _group_pids(pgid: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid:
                pids.append(int(entry.name))
    return pids


def idle_cost(state: Path, seconds: float) -> dict:
    with local_endpoint(state, workers_min=2, workers_max=2, idle_timeout=5) as ep:
        ep.wait_for(lambda: ep.workers()["summary"]["idle"] == 2, 60, what="two idle workers")
        time.sleep(1)
        worker_pids = [p for w in ep.workers()["workers"] for p in _group_pids(w["pid"])]
        ep_before = _cpu_seconds(ep.process.pid)
        workers_before = sum(_cpu_seconds(p) for p in worker_pids)
        time.sleep(seconds)
        ep_cpu = _cpu_seconds(ep.process.pid) - ep_before
        workers_cpu = sum(_cpu_seconds(p) for p in worker_pids) - workers_before
        stats = ep.get("stats").json()
    return {
        "seconds": seconds,
        "endpoint_cpu_s": round(ep_cpu, 3),
        "workers_cpu_s": round(workers_cpu, 3),
        "worker_processes": len(worker_pids),
        "worker_requests": stats["workerRequests"],
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench endpoint")
    parser.add_argument("--jobs", type=int, default=20, help="sequential runsync jobs (20)")
    parser.add_argument("--idle-seconds", type=float, default=30.0, help="idle window (30)")
    parser.add_argument("--idle-timeout", type=float, default=2.0, help="scale-down test (2)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-endpoint-") as tmp:
        root = Path(tmp)
        figures = {
            "overhead": overhead(root / "overhead", args.jobs),
            "rp_serve_api": serve_api(args.jobs),
            **cold_and_scale_down(root / "cold", args.idle_timeout),
            "idle": idle_cost(root / "idle", args.idle_seconds),
        }
    figures["notes"] = {
        "e2e_vs_rp_serve_api": "the SDK worker asks for its next job only after a fixed 1 s "
        "sleep once its one slot is busy (rp_scale.get_jobs), so sequential runsync through "
        "a queue costs about 1 s per job; --rp_serve_api runs the handler inside the HTTP "
        "request with no queue, no worker round trips and no job-done post",
    }
    print(json.dumps(figures, indent=2))
    return 0
