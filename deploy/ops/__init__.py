"""Operator commands for RunPod Serverless endpoints, one spec each in ``deploy/endpoints``.

Commands that act on an endpoint take ``--endpoint NAME`` (the spec file's name) or
``--spec PATH``; with one spec they act on it, with several they list them and do nothing
until told which (``--all`` where acting on each in turn makes sense: check, plan, apply,
doctor, workers, cost). ``check`` looks at every endpoint by default.

``plan``/``apply``/``destroy`` manage it through RunPod's REST v2 API; ``check`` runs the
preflight rules; ``doctor``, ``logs``, ``workers``, ``purge`` and ``cancel`` work against
RunPod or the local endpoint; ``gpus``, ``sizes`` and ``cost`` help choose tiers and sizes.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from functools import partial


def _spec(p: argparse.ArgumentParser, *, every: bool = False) -> None:
    p.add_argument(
        "--endpoint",
        metavar="NAME",
        help="the endpoint: deploy/endpoints/NAME.toml (DEPLOY_ENDPOINTS_DIR); needed when "
        "there are several",
    )
    if every:
        p.add_argument("--all", action="store_true", help="every endpoint, one after another")
    p.add_argument("--spec", metavar="PATH", help="one spec file outside the endpoints folder")


def _json(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="machine-readable output on stdout")


def _target(p: argparse.ArgumentParser, *, every: bool = False) -> None:
    p.add_argument(
        "--local",
        metavar="URL",
        help="the local endpoint's base URL ending in /v2 (default: RUNPOD_ENDPOINT_BASE_URL; "
        "RunPod when unset)",
    )
    p.add_argument(
        "--endpoint-id",
        help="endpoint id (default: RUNPOD_ENDPOINT_IDS / RUNPOD_ENDPOINT_ID, or the spec's "
        "endpoint looked up by name)",
    )
    _spec(p, every=every)


def _check(p: argparse.ArgumentParser) -> None:
    _spec(p)
    p.add_argument("--list", action="store_true", help="list every rule and exit")
    p.add_argument("--offline", action="store_true", help="do not ask the hub for model sizes")


def _apply(p: argparse.ArgumentParser) -> None:
    _spec(p, every=True)
    p.add_argument(
        "--recreate",
        action="store_true",
        help="delete and recreate the endpoint (after a negative balance)",
    )
    p.add_argument("--offline", action="store_true", help="do not ask the hub for model sizes")
    p.add_argument(
        "--release-wait",
        type=float,
        default=120.0,
        help="seconds to wait for the new release to appear (120)",
    )


def _destroy(p: argparse.ArgumentParser) -> None:
    _spec(p)
    p.add_argument("--yes", action="store_true", help="really delete")
    p.add_argument(
        "--include-volume", action="store_true", help="also delete the network volume and its data"
    )


def _doctor(p: argparse.ArgumentParser) -> None:
    _target(p, every=True)
    p.add_argument("--lines", type=int, default=20, help="log lines per worker (20)")
    p.add_argument(
        "--startup-grace",
        type=float,
        default=120.0,
        help="seconds a worker may start up before queued jobs look stuck (120)",
    )


def _logs(p: argparse.ArgumentParser) -> None:
    _target(p)
    p.add_argument("--worker", help="worker id (default: the crashed or newest one)")
    p.add_argument("--lines", type=int, default=50, help="lines (50)")


def _cancel(p: argparse.ArgumentParser) -> None:
    _target(p)
    p.add_argument("job_ids", nargs="+", metavar="JOB_ID")


def _gpus(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tier", action="append", help="only these pools (repeatable)")
    p.add_argument("--count", type=int, default=1, help="GPUs per worker (1)")


def _sizes(p: argparse.ArgumentParser) -> None:
    _spec(p)
    p.add_argument("repos", nargs="*", metavar="REPO[@REV]", help="default: the spec's models")
    p.add_argument("--image-gb", type=float, help="compressed image size (without a spec)")


def _cost_history(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--history",
        metavar="CSV",
        help="past jobs: submitted_at,started_at,finished_at[,endpoint,pipeline,cold_start_s]",
    )
    p.add_argument(
        "--history-db", action="store_true", help="past jobs from the app's DATABASE_URL (SQL)"
    )
    p.add_argument("--days", type=float, help="the last N days of the history (database: 7)")


def _cost_pricing(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tier", help="GPU pool to price (default: the spec's tiers, or ADA_48_PRO)")
    p.add_argument(
        "--price-per-s", type=float, help="USD per GPU-second, flex and active (overrides all)"
    )
    p.add_argument("--gpu-count", type=int, help="GPUs per worker (default: the spec's, or 1)")
    p.add_argument("--idle-timeout", type=float, help="seconds (default: the spec's, or 5)")
    p.add_argument(
        "--cold-start-s",
        type=float,
        help="cold start, billed, in seconds (default: the history's measured median, or 30)",
    )


def _cost_load(p: argparse.ArgumentParser) -> None:
    p.add_argument("--trace", help="CSV with arrival_s,duration_s per job")
    p.add_argument("--trace-days", type=float, help="days the trace covers (default: spanned)")
    p.add_argument(
        "--workers-max", type=int, help="most workers at once (default: the spec's, or 1)"
    )
    p.add_argument("--jobs-per-hour", type=float, help="mean arrival rate")
    p.add_argument("--job-s", type=float, help="mean job length in seconds")
    p.add_argument(
        "--cold-budget",
        type=float,
        default=0.1,
        help="largest share of jobs that may wait for a cold start (0.1)",
    )


def _cost(p: argparse.ArgumentParser) -> None:
    _spec(p, every=True)
    _cost_history(p)
    _cost_pricing(p)
    _cost_load(p)


# Each subcommand in the order ``--help`` lists them: its name, its handler as
# "module.function" in deploy.ops (imported only when the parser is built, as before), its
# help line, and what adds its arguments after --json.
COMMANDS: list[tuple[str, str, str, Callable[[argparse.ArgumentParser], None]]] = [
    (
        "check",
        "commands.cmd_check",
        "preflight rules on the specs (every endpoint unless --endpoint): every known silent "
        "failure, and each pipeline on exactly one endpoint whose image carries it",
        _check,
    ),
    (
        "plan",
        "commands.cmd_plan",
        "what apply would change (exit 1 when something would)",
        partial(_spec, every=True),
    ),
    (
        "apply",
        "commands.cmd_apply",
        "create or update volume, template and endpoint (idempotent)",
        _apply,
    ),
    ("destroy", "commands.cmd_destroy", "delete the endpoint and its template", _destroy),
    (
        "doctor",
        "endpoint_commands.cmd_doctor",
        "diagnose the endpoint in plain words",
        _doctor,
    ),
    (
        "workers",
        "endpoint_commands.cmd_workers",
        "list the endpoint's workers",
        partial(_target, every=True),
    ),
    ("logs", "endpoint_commands.cmd_logs", "a worker's log tail", _logs),
    (
        "purge",
        "endpoint_commands.cmd_purge",
        "remove every queued job (running jobs are untouched)",
        _target,
    ),
    ("cancel", "endpoint_commands.cmd_cancel", "cancel jobs by id", _cancel),
    ("gpus", "commands.cmd_gpus", "GPU pools: cards, memory, serverless price and stock", _gpus),
    (
        "sizes",
        "commands.cmd_sizes",
        "models' real sizes from the hub and the disk they need",
        _sizes,
    ),
    (
        "cost",
        "cost_command.cmd_cost",
        "what past jobs would have billed at idle timeouts 1-60 s and 0-2 active workers "
        "(--history); or monthly cost vs an always-on worker and the best idle timeout",
        _cost,
    ),
]


def _handler(dotted: str) -> Callable:
    # Imported here, not at the top, so that importing one deploy.ops module (deploy.runpod
    # and deploy.redaction do) does not load every command and its dependencies.
    module, function = dotted.rsplit(".", 1)
    return getattr(importlib.import_module(f"deploy.ops.{module}"), function)


def register(sub) -> None:
    """Add the operator subcommands to ``python -m deploy``."""
    from deploy.ops import commands as c

    for name, handler, summary, arguments in COMMANDS:
        p = sub.add_parser(name, help=summary, description=summary)
        p.set_defaults(func=c.run(_handler(handler)))
        _json(p)
        arguments(p)
