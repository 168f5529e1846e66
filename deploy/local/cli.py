"""``python -m deploy local``: a RunPod-compatible, scale-to-zero endpoint on this machine.

Its flags are built from the declarations in ``deploy.local.options``; one process serves
one endpoint, or several (``--endpoint ID ...`` repeated, or ``--config FILE``).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import secrets
import signal

from deploy.local.options import Config, add_arguments, config_from_args


def register(sub) -> None:
    p = sub.add_parser(
        "local",
        help="run the local scale-to-zero endpoint (RunPod's job API on this machine)",
        description="Serve RunPod's job API under /v2/<endpoint-id>/ and start workers "
        "when jobs wait; stop them when idle. Several endpoints: repeat --endpoint ID, each "
        "followed by its own flags (see docs/local-endpoint.md).",
    )
    add_arguments(p)
    p.set_defaults(func=run, parser=p)


def with_api_key(config: Config) -> tuple[Config, bool]:
    """The key from the options, else ``$RUNPOD_API_KEY``, else a generated one (True)."""
    key = config.server.api_key or os.environ.get("RUNPOD_API_KEY", "")
    generated = not key
    server = dataclasses.replace(config.server, api_key=key or secrets.token_urlsafe(24))
    return dataclasses.replace(config, server=server), generated


async def serve(config: Config, *, announce=print) -> None:
    """Run the endpoints until SIGTERM or SIGINT, then stop every worker."""
    from aiohttp import web

    from deploy.local.host import Host
    from deploy.local.server import build_app
    from deploy.local.workers import detect_gpus

    server = config.server
    host = Host(config, detect_gpus(server.gpus))
    runner = web.AppRunner(build_app(host, server.api_key), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, server.host, server.port, reuse_address=True)
    await site.start()
    await host.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    for e in config.endpoints:
        announce(
            f"local endpoint {e.endpoint_id} listening on "
            f"http://{server.host}:{server.port}/v2/{e.endpoint_id} "
            f"(workers {e.workers_min}-{e.workers_max}, idle timeout {e.idle_timeout:g}s, "
            f"GPUs: {','.join(host.gpus.gpus) or 'none'}, state in {server.state_dir})"
        )
    try:
        await stop.wait()
    finally:
        await host.shutdown()
        await runner.cleanup()


def run(args: argparse.Namespace) -> int:
    try:
        config, generated = with_api_key(config_from_args(args))
    except ValueError as exc:
        args.parser.error(str(exc))
    config.server.state_dir = config.server.state_dir.resolve()
    logging.basicConfig(
        level=config.server.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if generated:
        print(
            "generated API key (pass --api-key or set RUNPOD_API_KEY to choose): "
            f"{config.server.api_key}"
        )
    asyncio.run(serve(config, announce=lambda line: print(line, flush=True)))
    return 0
