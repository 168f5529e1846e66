"""``python -m deploy COMMAND``: one tool for the local endpoint and the RunPod endpoint."""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    from deploy import ops
    from deploy.local import cli as local_cli

    parser = argparse.ArgumentParser(
        prog="python -m deploy",
        description="Deploy, inspect, diagnose, purge and cost a RunPod Serverless endpoint, "
        "or run a local one.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    local_cli.register(sub)
    ops.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from deploy import devenv

    devenv.load()  # a running `make run` stack's settings, in development only
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except SystemExit:
        raise
    except Exception as exc:  # noqa: BLE001 - the CLI's last word: one clear line, no traceback
        from deploy.runpod.jobapi import JobAPIError

        if isinstance(exc, JobAPIError | ValueError | OSError):
            print(f"error: {exc}", file=sys.stderr)
            return 2
        raise
