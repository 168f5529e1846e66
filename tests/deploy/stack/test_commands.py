"""``Procfile`` and ``Procfile.dev`` spell exactly the command lines ``deploy.stack.commands``
builds, so the processes the tests and benchmarks start are the ones that run in production
and under ``make run``."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from deploy.stack import commands

ROOT = Path(__file__).resolve().parents[3]
GUNICORN, CELERY = ["gunicorn"], ["celery"]


def procfile(name: str) -> dict[str, list[list[str]]]:
    """Each entry's commands (split on ``&&``), as the shell would split their words."""
    entries = {}
    for line in (ROOT / name).read_text().splitlines():
        entry, sep, command = line.partition(":")
        if sep and entry.strip() and not line.lstrip().startswith("#"):
            steps = [shlex.split(step) for step in command.split("&&")]
            entries[entry.strip()] = [s[1:] if s[:1] == ["exec"] else s for s in steps]
    return entries


PRODUCTION = {
    "web": [
        commands.migrate_argv(python="python"),
        commands.gunicorn_argv(
            "0.0.0.0:${PORT:-8000}",
            workers="${WEB_CONCURRENCY:-2}",
            graceful_timeout=None,
            program=GUNICORN,
        ),
    ],
    "worker": [commands.celery_worker_argv(concurrency="${CELERY_CONCURRENCY:-4}", program=CELERY)],
    "deliveries": [
        commands.celery_worker_argv(
            concurrency="${DELIVERY_CONCURRENCY:-32}",
            pool="threads",
            hostname="deliveries@%h",
            queues="webhooks",
            program=CELERY,
        )
    ],
    "beat": [
        commands.celery_beat_argv("${BEAT_SCHEDULE_FILE:-/tmp/celerybeat-schedule}", program=CELERY)
    ],
}

DEVELOPMENT = {
    "redis": [
        commands.redis_argv("$REDIS_PORT", "$DEV_STATE_DIR/redis", binary="$REDIS_SERVER"),
    ],
    "endpoint": [
        commands.local_endpoint_argv(
            "$ENDPOINT_PORT",
            "$DEV_STATE_DIR/endpoint",
            None,
            "$LOCAL_ENDPOINT_ARGS",  # app.devserver builds it with commands.endpoints_flags
            program=commands.python_module("deploy", "python"),
        )
    ],
    "worker": [commands.celery_worker_argv(concurrency=2, program=CELERY)],
    "deliveries": [
        commands.celery_worker_argv(
            concurrency=8,
            pool="threads",
            hostname="deliveries@%h",
            queues="webhooks",
            program=CELERY,
        )
    ],
    "beat": [commands.celery_beat_argv("$DEV_STATE_DIR/celerybeat-schedule", program=CELERY)],
    "web": [commands.gunicorn_argv("127.0.0.1:$WEB_PORT", workers=1, program=GUNICORN)],
}


@pytest.mark.parametrize(
    ("name", "expected"), [("Procfile", PRODUCTION), ("Procfile.dev", DEVELOPMENT)]
)
def test_procfile_entries_are_the_builders_command_lines(name, expected):
    assert procfile(name) == expected


def test_the_starters_differ_from_make_run_only_in_the_flags_a_test_needs():
    """The test worker names its pool and host and drops heartbeats; the rest is the same."""
    dev = DEVELOPMENT["worker"][0][1:]
    test = commands.celery_worker_argv(
        concurrency=2, pool="prefork", hostname="w@%h", heartbeat=False
    )[3:]
    assert [flag for flag in test if flag not in dev] == [
        "--pool",
        "prefork",
        "--hostname",
        "w@%h",
        "--without-heartbeat",
    ]


@pytest.mark.parametrize("name", ["Procfile", "Procfile.dev"])
def test_no_entry_puts_a_secret_on_its_command_line(name):
    """A command line is world-readable (``ps``, /proc/PID/cmdline): keys go by environment."""
    for entry, steps in procfile(name).items():
        for word in (w for step in steps for w in step):
            for secret in ("API_KEY", "SECRET", "PASSWORD", "TOKEN"):
                assert secret not in word.upper(), f"{name} {entry}: {word}"
