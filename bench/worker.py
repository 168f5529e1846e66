"""``python -m bench worker``: the GPU worker's figures from one run, as JSON.

- ``job``: the phases of one ``video_enhance`` job on a generated clip (10 s of 720p by
  default) on CPU, through the handler: download, model load, inference, upload seconds, from
  a local server standing in for the app's signed URLs (GET with Range, PUT).
- ``download``: throughput of the worker's downloader against ``curl`` fetching the same
  file from the same server (``ratio`` = ours / curl; target >= 0.8). ``--url`` measures a
  real signed URL instead.
- ``startup``: seconds from starting ``python -u -m gpu_worker`` to its first job taken from
  a minimal job server speaking the worker protocol, with a model loading in the background
  (``PRELOAD_PIPELINES=upscale``, a full-size Real-ESRGAN x2 checkpoint on the volume),
  against ``python -c "import runpod, gpu_worker"``
  (target: at most 0.2 s more).
- ``gap``: back-to-back jobs on one warm worker, from a job server speaking the worker
  protocol: the idle time between one job's result arriving and the worker taking the next
  job, p50/p99, for our worker (``python -m gpu_worker``, echo jobs) and for an unmodified
  SDK worker (``runpod.serverless.start`` with a handler doing the same sleep). Job lengths
  are spread over a second so every phase of the SDK's 1 s loop is seen (target: ours p50
  <= 20 ms). From the mean gaps: billed seconds saved per 1,000 jobs of 3 s.
- ``fps``: frames per second on CPU, 360p -> 720p, for ``upscale`` (a full-size Real-ESRGAN
  x2 checkpoint, made here) beside ``video_enhance``, through ``bench.gpu_check``'s runner.
- ``hostile``: each hostile file (``hostile_files``: an MKV that turns from 64×64 to
  12000×12000 MJPEG, one that declares 12000×12000, a 31 KB 16000×16000 PNG, a 16000×16000
  JPEG) through its pipeline in a fresh worker process on CPU: the error the job gets and the
  process's peak RSS (``ru_maxrss``), beside the same pipeline on a small honest clip, and
  the default memory ceiling (``MEMORY_LIMIT_BYTES``) of this machine.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from deploy.stack.net import free_port

ROOT = Path(__file__).resolve().parents[1]


class _Files(BaseHTTPRequestHandler):
    """GET /<name> with Range from ``root``; PUT /<name> is read and dropped."""

    root: Path
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        path = self.root / self.path.split("?", 1)[0].lstrip("/")
        if not path.is_file():
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        size = path.stat().st_size
        m = re.match(r"bytes=(\d+)-$", self.headers.get("Range") or "")
        start = int(m.group(1)) if m else 0
        self.send_response(206 if m else 200)
        self.send_header("Content-Length", str(size - start))
        self.send_header("Accept-Ranges", "bytes")
        if m:
            self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        self.end_headers()
        with open(path, "rb") as fh:
            fh.seek(start)
            shutil.copyfileobj(fh, self.wfile, 1 << 20)

    def do_PUT(self) -> None:  # noqa: N802
        left = int(self.headers.get("Content-Length") or 0)
        while left:
            left -= len(self.rfile.read(min(left, 1 << 20)))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()


# Hostile media: small on disk, huge once decoded. The tests and the ``hostile`` section
# share these makers.


def _jpeg_segment(marker: int, body: bytes) -> bytes:
    return b"\xff" + bytes([marker]) + struct.pack(">H", len(body) + 2) + body


def flat_jpeg(width: int, height: int) -> bytes:
    """A grey baseline JPEG of one flat colour: each 8×8 block is a DC difference of 0 and an
    end-of-block, both one bit under one-symbol Huffman tables, so 12000×12000 is ~560 KB."""
    one_code = b"\x01" + b"\x00" * 15 + b"\x00"  # one code, of length 1, for symbol 0
    blocks = ((width + 7) // 8) * ((height + 7) // 8)
    bits = 2 * blocks
    scan = b"\x00" * (bits // 8) + (bytes([0xFF >> (bits % 8)]) if bits % 8 else b"")
    return (
        b"\xff\xd8"
        + _jpeg_segment(0xDB, b"\x00" + b"\x01" * 64)
        + _jpeg_segment(0xC0, struct.pack(">BHHB", 8, height, width, 1) + b"\x01\x11\x00")
        + _jpeg_segment(0xC4, b"\x00" + one_code)
        + _jpeg_segment(0xC4, b"\x10" + one_code)
        + _jpeg_segment(0xDA, b"\x01\x01\x00\x00\x3f\x00")
        + scan
        + b"\xff\xd9"
    )


def mjpeg_mkv(path: Path, sizes: list[tuple[int, int]], declared: tuple[int, int]) -> Path:
    """An MKV of MJPEG frames of ``sizes`` whose stream header says ``declared``."""
    from fractions import Fraction

    import av

    with av.open(str(path), "w", format="matroska") as out:
        stream = out.add_stream("mjpeg", rate=10)
        stream.width, stream.height = declared
        stream.pix_fmt = "yuvj420p"
        for i, (width, height) in enumerate(sizes):
            packet = av.Packet(flat_jpeg(width, height))
            packet.stream = stream
            packet.pts = packet.dts = i
            packet.time_base = Fraction(1, 10)
            out.mux(packet)
    return path


def png_bomb(path: Path, width: int = 16000, height: int = 16000) -> Path:
    """A 1-bit grey PNG of zeros: 31 KB on disk for 16000×16000."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    packer = zlib.compressobj(9)
    row = b"\x00" * (1 + (width + 7) // 8)
    data = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
    )
    return path


def hostile_files(folder: Path) -> dict[str, tuple[str, Path]]:
    """name -> (pipeline, file) for each hostile input the worker must refuse cheaply."""
    folder.mkdir(parents=True, exist_ok=True)
    small, big = (64, 64), (12000, 12000)
    return {
        "mkv_64_then_12000": (
            "video_enhance",
            mjpeg_mkv(folder / "grows.mkv", [small] * 3 + [big] * 2, declared=small),
        ),
        "mkv_declares_12000": (
            "video_enhance",
            mjpeg_mkv(folder / "declared.mkv", [big] * 2, declared=big),
        ),
        "png_1bit_16000": ("upscale", png_bomb(folder / "bomb.png")),
        "jpeg_16000": ("upscale", _write(folder / "bomb.jpg", flat_jpeg(16000, 16000))),
    }


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def serve_files(root: Path, port: int) -> None:
    """Run the file server in this process (the benchmark starts it as a child)."""
    handler = type("Files", (_Files,), {"root": root})
    ThreadingHTTPServer(("127.0.0.1", port), handler).serve_forever()


def _wait_port(port: int) -> None:
    import socket

    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing on port {port}")


def _stop(worker: subprocess.Popen, server: ThreadingHTTPServer) -> None:
    """Stop the SDK worker (SIGTERM, then SIGKILL) and the stand-in it talked to."""
    worker.terminate()
    try:
        worker.wait(10)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait(5)
    server.shutdown()
    server.server_close()


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.update(extra)
    return env


def bench_job(base: str, clip_name: str, scratch: Path) -> dict:
    os.environ.update(
        TORCH_DEVICE="cpu",
        WORK_DIR=str(scratch / "work"),
        MODEL_DIR=str(scratch / "models"),
        PROGRESS_INTERVAL_S="5",
    )
    from gpu_worker.handler import reset_runtime, run_job

    reset_runtime()
    t = time.perf_counter()
    result = run_job(
        {
            "id": "bench",
            "input": {
                "pipeline": "video_enhance",
                "inputs": {"video": f"{base}/{clip_name}?sig=bench"},
                "output": {"put_url": f"{base}/out.mp4?sig=bench", "content_type": "video/mp4"},
            },
        }
    )
    if "error" in result:
        return {"error": result["error"]}
    return {
        "wall_s": round(time.perf_counter() - t, 3),
        **result["metrics"],
        "output_bytes": result["output"]["size"],
        "result": result["result"],
    }


def bench_download(url: str, scratch: Path, runs: int) -> dict:
    from gpu_worker.transfer import TransferPolicy, download

    ours, curl = [], []
    size = 0
    for _ in range(runs):
        dest = scratch / "dl-ours.bin"
        t = time.perf_counter()
        size = download(url, dest, field="bench", max_bytes=1 << 40, policy=TransferPolicy())
        ours.append(time.perf_counter() - t)
        dest.unlink()
        dest = scratch / "dl-curl.bin"
        t = time.perf_counter()
        subprocess.run(["curl", "-sf", "-o", str(dest), url], check=True)
        curl.append(time.perf_counter() - t)
        dest.unlink()
    best_ours, best_curl = min(ours), min(curl)
    return {
        "bytes": size,
        "ours_mb_s": round(size / best_ours / 1e6, 1),
        "curl_mb_s": round(size / best_curl / 1e6, 1),
        "ratio": round(best_curl / best_ours, 3),
        "target_ratio": 0.8,
        "runs": runs,
    }


class _ProtocolServer(BaseHTTPRequestHandler):
    """What both stand-ins for the endpoint's worker protocol share: JSON replies, no log."""

    protocol_version = "HTTP/1.1"
    state: dict

    def log_message(self, *args: object) -> None:
        pass

    def _reply(self, status: int, body: bytes = b"") -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _serve_protocol(
    handler: type[_ProtocolServer], state: dict
) -> tuple[ThreadingHTTPServer, dict[str, str]]:
    """Serve ``handler`` (with ``state``) on a free port; returns the server and the
    environment that points an SDK worker's protocol at it."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("Jobs", (handler,), {"state": state}))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    return server, {
        "RUNPOD_WEBHOOK_GET_JOB": f"{base}/job-take/$ID?gpu=bench",
        "RUNPOD_WEBHOOK_POST_OUTPUT": f"{base}/job-done/$RUNPOD_POD_ID/$ID?gpu=bench",
        "RUNPOD_WEBHOOK_POST_STREAM": f"{base}/job-stream/$RUNPOD_POD_ID/$ID?gpu=bench",
        "RUNPOD_WEBHOOK_PING": f"{base}/ping/$RUNPOD_POD_ID?gpu=bench",
        "RUNPOD_POD_ID": "bench-worker",
        "RUNPOD_AI_API_KEY": "bench",
        "RUNPOD_SKIP_AUTO_SYSTEM_CHECKS": "true",
        "RUNPOD_SKIP_GPU_CHECK": "true",
    }


class _JobServer(_ProtocolServer):
    """The worker protocol, minimally: one echo job on the first job-take, then nothing."""

    def do_GET(self) -> None:  # noqa: N802
        if "/job-take/" in self.path and not self.state.get("taken"):
            self.state["taken"] = time.time()
            job = {"id": "bench-job", "input": {"pipeline": "echo", "params": {"n": 1}}}
            return self._reply(200, json.dumps(job).encode())
        time.sleep(0.2)  # a short long-poll, so the SDK does not spin
        self._reply(204)

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if "/job-done/" in self.path and b"IN_PROGRESS" not in body:
            self.state["done"] = time.time()
        self._reply(200, b"{}")


def bench_startup(scratch: Path, runs: int) -> dict:
    from bench.gpu_check import REPO, WEIGHTS, seed_weights

    seed_weights(scratch / "models")
    takes, baseline, baseline_boot = [], [], []
    for _ in range(runs):
        state: dict = {}
        server, protocol = _serve_protocol(_JobServer, state)
        env = _env(
            **protocol,
            MODEL_DIR=str(scratch / "models"),
            UPSCALE_MODEL=f"{REPO}:{WEIGHTS}",
            PRELOAD_PIPELINES="upscale",
            HF_HUB_OFFLINE="1",
            WORK_DIR=str(scratch / "work"),
        )
        started = time.time()
        worker = subprocess.Popen(
            [sys.executable, "-u", "-m", "gpu_worker"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 60
            while "done" not in state and time.monotonic() < deadline:
                time.sleep(0.01)
        finally:
            _stop(worker, server)
        if "taken" in state:
            takes.append(state["taken"] - started)
        for argv, into in (
            ([sys.executable, "-c", "import runpod, gpu_worker"], baseline),
            ([sys.executable, "-c", "import gpu_worker.boot, runpod, gpu_worker"], baseline_boot),
        ):
            t = time.time()
            subprocess.run(argv, cwd=ROOT, env=_env(), check=True)
            into.append(time.time() - t)
    take, base_s = statistics.median(takes), statistics.median(baseline)
    boot_s = statistics.median(baseline_boot)
    return {
        "first_job_taken_s": round(take, 3),
        "import_runpod_gpu_worker_s": round(base_s, 3),
        "import_with_boot_shim_s": round(boot_s, 3),
        "extra_vs_plain_import_s": round(take - base_s, 3),
        "extra_vs_boot_shim_import_s": round(take - boot_s, 3),
        "target_extra_s": 0.2,
        "runs": runs,
        "background_model": "upscale (Real-ESRGAN x2 layout checkpoint already on the volume)",
    }


class _BackToBack(_ProtocolServer):
    """The worker protocol for a queue of jobs: records when each is taken and when its
    result arrives (server clock, as a billing system sees it)."""

    def do_GET(self) -> None:  # noqa: N802
        if "/job-take/" in self.path:
            with self.state["lock"]:
                job = self.state["waiting"].pop(0) if self.state["waiting"] else None
                if job is not None:
                    self.state["taken"][job["id"]] = time.perf_counter()
            if job is not None:
                return self._reply(200, json.dumps(job).encode())
        time.sleep(0.2)  # a short long-poll when there is nothing to hand out
        self._reply(204)

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if "/job-done/" in self.path and b"IN_PROGRESS" not in body:
            job_id = self.path.split("?")[0].rstrip("/").rsplit("/", 1)[-1]
            self.state["done"].setdefault(job_id, time.perf_counter())
        self._reply(200, b"{}")


# An unmodified runpod SDK worker doing what echo's sleep_s does.
PLAIN_SDK_WORKER = """
import time, runpod
def handler(job):
    time.sleep(job["input"]["params"]["sleep_s"])
    return {"ok": True}
runpod.serverless.start({"handler": handler})
"""


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def back_to_back(argv: list[str], scratch: Path, jobs: int, warmup: int = 2) -> dict:
    """Queue ``jobs`` echo jobs (0.05 to 0.95 s long), start the worker, time the gaps."""
    durations = [0.05 + 0.1 * (i % 10) for i in range(jobs)]
    state: dict = {
        "lock": threading.Lock(),
        "waiting": [
            {"id": f"j{i:03d}", "input": {"pipeline": "echo", "params": {"sleep_s": d}}}
            for i, d in enumerate(durations)
        ],
        "taken": {},
        "done": {},
    }
    server, protocol = _serve_protocol(_BackToBack, state)
    env = _env(
        **protocol,
        RUNPOD_LOG_LEVEL="WARN",
        MODEL_DIR=str(scratch / "models"),
        WORK_DIR=str(scratch / "work"),
        PROGRESS_INTERVAL_S="60",
    )
    worker = subprocess.Popen(
        argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 30 + 2.5 * jobs
        while len(state["done"]) < jobs and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        _stop(worker, server)
    ids = [f"j{i:03d}" for i in range(jobs)]
    gaps = [
        (state["taken"][b] - state["done"][a]) * 1000
        for a, b in zip(ids[warmup:], ids[warmup + 1 :], strict=False)
        if a in state["done"] and b in state["taken"]
    ]
    if not gaps:
        return {"error": f"only {len(state['done'])} of {jobs} jobs finished"}
    return {
        "jobs": jobs,
        "gaps_measured": len(gaps),
        "gap_p50_ms": round(_percentile(gaps, 0.5), 1),
        "gap_p99_ms": round(_percentile(gaps, 0.99), 1),
        "gap_mean_ms": round(statistics.fmean(gaps), 1),
    }


def bench_gap(scratch: Path, jobs: int) -> dict:
    ours = back_to_back([sys.executable, "-u", "-m", "gpu_worker"], scratch, jobs)
    sdk = back_to_back([sys.executable, "-u", "-c", PLAIN_SDK_WORKER], scratch, jobs)
    report: dict = {"ours": ours, "unmodified_sdk": sdk, "target_ours_p50_ms": 20}
    if "error" not in ours and "error" not in sdk:
        job_s = 3.0
        ours_s, sdk_s = ours["gap_mean_ms"] / 1000, sdk["gap_mean_ms"] / 1000
        report["per_1000_jobs_of_3s"] = {
            "billed_s_unmodified_sdk": round(1000 * (job_s + sdk_s), 1),
            "billed_s_ours": round(1000 * (job_s + ours_s), 1),
            "billed_s_saved": round(1000 * (sdk_s - ours_s), 1),
            "share_of_sdk_bill_saved_pct": round(100 * (sdk_s - ours_s) / (job_s + sdk_s), 1),
        }
    return report


def bench_fps(scratch: Path, seconds: float, upscale_frames: int) -> dict:
    """upscale and video_enhance frames per second on CPU, 360p -> 720p."""
    from bench.gpu_check import make_clip, seed_weights

    clip = make_clip(scratch / "clip360.mp4", 640, 360, seconds, 30)
    seed_weights(scratch / "fps-models")
    (scratch / "work").mkdir(exist_ok=True)
    report: dict = {"clip": f"640x360, {seconds:g} s, 30 fps, CPU"}
    for name, frames in (("video_enhance", 0), ("upscale", upscale_frames)):
        from bench.gpu_check import REPO, WEIGHTS, run_child

        env = _env(
            TORCH_DEVICE="cpu",
            MODEL_DIR=str(scratch / "fps-models"),
            UPSCALE_MODEL=f"{REPO}:{WEIGHTS}",
            WORK_DIR=str(scratch / "work"),
            HF_HUB_OFFLINE="1",
        )
        child = run_child(name, clip, env, 8 if name == "video_enhance" else 1, frames)
        keep = ("frames", "output", "fps_end_to_end", "fps_torch_only", "model_load_s")
        report[name] = child if "error" in child else {k: child[k] for k in keep}
    return report


def hostile_child(pipeline: str, url: str) -> dict:
    """Runs in a fresh process: one job on ``url``; its error and this process's peak RSS."""
    import resource

    from gpu_worker import pipelines
    from gpu_worker.handler import run_job

    key = pipelines.get(pipeline).inputs[0].name
    result = run_job(
        {"id": "hostile", "input": {"pipeline": pipeline, "inputs": {key: url}}},
    )
    return {
        "error": result.get("error"),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def run_hostile_child(pipeline: str, url: str, env: dict[str, str]) -> dict:
    argv = [sys.executable, "-m", "bench", "worker", "--hostile-child", pipeline, "--url", url]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        return {"exit": done.returncode, "stderr": done.stderr.strip().splitlines()[-3:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def bench_hostile(base: str, scratch: Path) -> dict:
    """Each hostile file through its pipeline in a fresh worker process on CPU: the error it
    gets and the process's peak RSS, beside the same pipeline on a small honest input."""
    from bench.gpu_check import REPO, WEIGHTS, make_clip, seed_weights
    from gpu_worker.memory import default_ceiling

    seed_weights(scratch / "hostile-models")
    (scratch / "work").mkdir(exist_ok=True)
    env = _env(
        TORCH_DEVICE="cpu",
        MODEL_DIR=str(scratch / "hostile-models"),
        UPSCALE_MODEL=f"{REPO}:{WEIGHTS}",
        WORK_DIR=str(scratch / "work"),
        INLINE_OUTPUT_MAX_BYTES=str(10 * 1024 * 1024),
    )
    make_clip(scratch / "honest.mp4", 64, 48, 0.5, 10)
    report: dict = {
        "memory_ceiling_default_mb": round(default_ceiling() / 2**20),
        "honest": {
            name: run_hostile_child(name, f"{base}/honest.mp4?sig=bench", env)
            for name in ("video_enhance", "upscale")
        },
    }
    for name, (pipeline, path) in hostile_files(scratch / "hostile").items():
        child = run_hostile_child(pipeline, f"{base}/hostile/{path.name}?sig=bench", env)
        report[name] = {"pipeline": pipeline, "file_kb": round(path.stat().st_size / 1024)}
        report[name].update(child)
    return report


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench worker", description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0, help="clip length (10)")
    parser.add_argument("--size", default="1280x720", help="clip size (1280x720)")
    parser.add_argument("--download-mb", type=int, default=256)
    parser.add_argument("--url", help="measure downloads from this URL instead")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--skip", default="", help="comma list of job,download,startup,gap,fps,hostile"
    )
    parser.add_argument("--gap-jobs", type=int, default=30, help="back-to-back jobs (30)")
    parser.add_argument("--fps-seconds", type=float, default=1.0, help="360p clip length (1)")
    parser.add_argument(
        "--upscale-frames", type=int, default=4, help="frames upscale runs on CPU (4; 0: all)"
    )
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--hostile-child", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve_files(Path(args.serve), args.port)
        return 0
    if args.hostile_child:
        print(json.dumps(hostile_child(args.hostile_child, args.url)))
        return 0
    skip = set(filter(None, args.skip.split(",")))
    scratch = Path(tempfile.mkdtemp(prefix="bench-worker-"))
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "bench", "worker", "--serve", str(scratch), "--port", str(port)],
        cwd=ROOT,
        env=_env(),
    )
    report: dict = {"machine": {"cpus": os.cpu_count()}}
    try:
        _wait_port(port)
        base = f"http://127.0.0.1:{port}"
        if "job" not in skip:
            from bench.gpu_check import make_clip

            width, height = (int(v) for v in args.size.split("x"))
            t = time.perf_counter()
            make_clip(scratch / "clip.mp4", width, height, args.seconds, 30)
            report["job"] = {
                "clip": f"{args.size}, {args.seconds:g} s, 30 fps",
                "clip_made_in_s": round(time.perf_counter() - t, 2),
                **bench_job(base, "clip.mp4", scratch),
            }
        if "download" not in skip:
            url = args.url
            if not url:
                with open(scratch / "big.bin", "wb") as fh:
                    block = os.urandom(1 << 20)
                    for _ in range(args.download_mb):
                        fh.write(block)
                url = f"{base}/big.bin?sig=bench"
            report["download"] = bench_download(url, scratch, args.runs)
        if "startup" not in skip:
            report["startup"] = bench_startup(scratch, args.runs)
        if "gap" not in skip:
            report["gap"] = bench_gap(scratch, args.gap_jobs)
        if "fps" not in skip:
            report["fps"] = bench_fps(scratch, args.fps_seconds, args.upscale_frames)
        if "hostile" not in skip:
            report["hostile"] = bench_hostile(base, scratch)
    finally:
        server.terminate()
        server.wait(10)
        shutil.rmtree(scratch, ignore_errors=True)
    print(json.dumps(report, indent=2))
    return 0
