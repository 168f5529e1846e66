"""``python -m deploy local``: a RunPod-compatible, scale-to-zero endpoint on this machine."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import shlex
import signal
import sys
from pathlib import Path

from deploy.local.endpoint import QUEUE_DELAY, REQUEST_COUNT, Endpoint, Options


def _positive(kind):
    def parse(text: str):
        value = kind(text)
        if value < 0:
            raise argparse.ArgumentTypeError(f"must not be negative: {text}")
        return value

    return parse


def _env_pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def register(sub) -> None:
    p = sub.add_parser(
        "local",
        help="run the local scale-to-zero endpoint (RunPod's job API on this machine)",
        description="Serve RunPod's job API under /v2/<endpoint-id>/ and start "
        "`python -u -m gpu_worker` workers when jobs wait; stop them when idle.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    p.add_argument("--port", type=int, default=8765, help="port to listen on (8765)")
    p.add_argument("--endpoint-id", default="local", help="endpoint id in the URLs (local)")
    p.add_argument(
        "--api-key",
        default=None,
        help="key clients must send as 'Authorization: Bearer KEY' "
        "(default: $RUNPOD_API_KEY, else a generated key that is printed)",
    )
    p.add_argument("--workers-min", type=_positive(int), default=0, help="workers kept warm (0)")
    p.add_argument("--workers-max", type=_positive(int), default=1, help="most workers (1)")
    p.add_argument(
        "--idle-timeout", type=_positive(float), default=5.0, help="stop idle workers after (5 s)"
    )
    p.add_argument(
        "--execution-timeout",
        type=_positive(float),
        default=600.0,
        help="default per-job execution timeout in seconds (600); policy.executionTimeout wins",
    )
    p.add_argument("--scaler", choices=[QUEUE_DELAY, REQUEST_COUNT], default=QUEUE_DELAY)
    p.add_argument(
        "--scaler-value",
        type=_positive(float),
        default=4.0,
        help="QUEUE_DELAY: seconds a job may wait before another worker starts; "
        "REQUEST_COUNT: jobs per worker (4)",
    )
    p.add_argument("--gpus", default="auto", help="auto (nvidia-smi), none, or a list: 0,1")
    p.add_argument(
        "--worker-command",
        default=None,
        help=f"command that starts one worker (default: {sys.executable} -u -m gpu_worker)",
    )
    p.add_argument(
        "--worker-env",
        type=_env_pair,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for workers (repeatable)",
    )
    p.add_argument(
        "--state-dir",
        type=Path,
        default=Path("var/local-endpoint"),
        help="where jobs (SQLite) and worker logs live (var/local-endpoint)",
    )
    p.add_argument(
        "--retention",
        type=_positive(float),
        default=1800.0,
        help="seconds results are kept after a job ends, then 404 (1800)",
    )
    p.add_argument(
        "--runsync-retention",
        type=_positive(float),
        default=60.0,
        help="seconds /runsync results are kept, then 404 (60, as on RunPod)",
    )
    p.add_argument(
        "--webhook-retry-delay",
        type=_positive(float),
        default=10.0,
        help="seconds between the 3 webhook attempts (10)",
    )
    p.add_argument(
        "--stop-grace",
        type=_positive(float),
        default=5.0,
        help="seconds between SIGTERM and SIGKILL when stopping a worker (5)",
    )
    p.add_argument(
        "--crash-loop-threshold",
        type=int,
        default=3,
        help="workers in a row dying before taking a job that make a crash loop, "
        "reported by /workers (3)",
    )
    p.add_argument(
        "--take-timeout",
        type=_positive(float),
        default=30.0,
        help="seconds a worker's job-take long-poll is held before 204 (30)",
    )
    departures = p.add_argument_group(
        "departures from RunPod",
        "RunPod's behaviour is the default; these flags change it, for tests and local use",
    )
    departures.add_argument(
        "--fail-fast-crash-loop",
        action="store_true",
        help="fail every queued job once workers crash-loop (RunPod keeps them IN_QUEUE "
        "and keeps restarting unhealthy workers with a backoff)",
    )
    departures.add_argument(
        "--no-rate-limits",
        dest="rate_limits",
        action="store_false",
        help="never answer 429 (RunPod limits e.g. /run to 1000 and /purge-queue to 2 "
        "requests per 10 s per endpoint)",
    )
    departures.add_argument(
        "--min-execution-timeout",
        type=_positive(float),
        default=5.0,
        help="shortest policy.executionTimeout accepted, in seconds (5, as on RunPod)",
    )
    departures.add_argument(
        "--min-ttl",
        type=_positive(float),
        default=10.0,
        help="shortest policy.ttl accepted, in seconds (10, as on RunPod)",
    )
    departures.add_argument(
        "--disabled",
        action="store_true",
        help="answer Not Found to everything, like RunPod does for an endpoint whose "
        "balance went negative (for tests)",
    )
    p.add_argument("--log-level", default="INFO", help="endpoint log level (INFO)")
    p.set_defaults(func=run)


def options_from_args(args: argparse.Namespace) -> tuple[Options, bool]:
    """Options from parsed flags; the flag says whether the key was generated."""
    from deploy.local.workers import detect_gpus

    generated = False
    api_key = args.api_key or os.environ.get("RUNPOD_API_KEY")
    if not api_key:
        api_key = secrets.token_urlsafe(24)
        generated = True
    if args.workers_max < 1:
        raise ValueError("--workers-max must be at least 1")
    if args.workers_min > args.workers_max:
        raise ValueError("--workers-min cannot be more than --workers-max")
    if args.crash_loop_threshold < 1:
        raise ValueError("--crash-loop-threshold must be at least 1")
    if args.scaler == REQUEST_COUNT and args.scaler_value < 1:
        raise ValueError("--scaler-value must be at least 1 job per worker with REQUEST_COUNT")
    command = (
        shlex.split(args.worker_command)
        if args.worker_command
        else [sys.executable, "-u", "-m", "gpu_worker"]
    )
    if not command:
        raise ValueError("--worker-command is empty")
    opts = Options(
        state_dir=args.state_dir.resolve(),
        api_key=api_key,
        host=args.host,
        port=args.port,
        endpoint_id=args.endpoint_id,
        workers_min=args.workers_min,
        workers_max=args.workers_max,
        idle_timeout=args.idle_timeout,
        execution_timeout=args.execution_timeout,
        scaler=args.scaler,
        scaler_value=args.scaler_value,
        gpus=detect_gpus(args.gpus),
        worker_command=command,
        retention=args.retention,
        runsync_retention=args.runsync_retention,
        webhook_retry_delay=args.webhook_retry_delay,
        stop_grace=args.stop_grace,
        crash_loop_threshold=args.crash_loop_threshold,
        fail_fast_crash_loop=args.fail_fast_crash_loop,
        rate_limits=args.rate_limits,
        min_execution_timeout=args.min_execution_timeout,
        min_ttl=args.min_ttl,
        take_timeout=args.take_timeout,
        disabled=args.disabled,
        worker_env=dict(args.worker_env),
    )
    return opts, generated


async def serve(opts: Options, *, announce=print) -> None:
    """Run the endpoint until SIGTERM or SIGINT, then stop every worker."""
    from aiohttp import web

    from deploy.local.server import build_app

    endpoint = Endpoint(opts)
    runner = web.AppRunner(build_app(endpoint), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, opts.host, opts.port, reuse_address=True)
    await site.start()
    await endpoint.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    announce(
        f"local endpoint {opts.endpoint_id} listening on "
        f"http://{opts.host}:{opts.port}/v2/{opts.endpoint_id} "
        f"(workers {opts.workers_min}-{opts.workers_max}, idle timeout {opts.idle_timeout:g}s, "
        f"GPUs: {','.join(opts.gpus) or 'none'}, state in {opts.state_dir})"
    )
    try:
        await stop.wait()
    finally:
        await endpoint.shutdown()
        await runner.cleanup()


def run(args: argparse.Namespace) -> int:
    opts, generated = options_from_args(args)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if generated:
        print(f"generated API key (pass --api-key or set RUNPOD_API_KEY to choose): {opts.api_key}")
    asyncio.run(serve(opts, announce=lambda line: print(line, flush=True)))
    return 0
