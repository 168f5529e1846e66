"""Every knob of the local endpoint, declared once.

Two dataclasses hold them: ``ServerOptions`` for the process (address, key, state dir,
GPUs) and ``EndpointOptions`` for each endpoint it serves (id, policy, scaler, worker
command and environment). Each field carries its help text in ``metadata``; the command
line (``add_arguments``), the configuration file (``config_from_mapping``) and the test
stack (``deploy.stack.local_endpoint``) are all built from these declarations, so a
default is written in one place and the help shows it without repeating it.

Several endpoints in one process: ``--endpoint ID`` opens an endpoint, and the
per-endpoint flags after it apply to that endpoint only; the ones before the first
``--endpoint`` are defaults for every endpoint. Without ``--endpoint`` the process serves
one endpoint, ``--endpoint-id`` (``local``), as it always has.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import sys
import tomllib
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from deploy.runpod.vocabulary import QUEUE_DELAY, REQUEST_COUNT

DEFAULT_WORKER_COMMAND = f"{sys.executable} -u -m gpu_worker"
ENDPOINT_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
DEPARTURES = "departures from RunPod"


def knob(default: Any, help: str, **meta: Any) -> Any:  # noqa: A002 - argparse's word
    """A dataclass field with its help text (and flag details) beside its default."""
    meta["help"] = help
    if isinstance(default, list | dict):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class ServerOptions:
    """The local endpoint process: where it listens, its key, its state, its GPUs."""

    state_dir: Path = knob(Path("var/local-endpoint"), "where jobs (SQLite) and worker logs live")
    api_key: str = knob(
        "",
        "key clients must send as 'Authorization: Bearer KEY' "
        "(default: $RUNPOD_API_KEY, else a generated key that is printed)",
    )
    host: str = knob("127.0.0.1", "address to listen on")
    port: int = knob(8765, "port to listen on")
    gpus: str = knob("auto", "auto (nvidia-smi), none, or a list: 0,1; shared by all endpoints")
    log_level: str = knob("INFO", "endpoint log level")

    def __post_init__(self) -> None:
        self.state_dir = Path(self.state_dir)
        if not 0 <= int(self.port) <= 65535:
            raise ValueError(f"--port must be 0-65535, not {self.port}")


@dataclass
class EndpointOptions:
    """One endpoint: its id in the URLs, its scaling policy and its worker."""

    endpoint_id: str = knob("local", "endpoint id in the URLs (/v2/ID/...)")
    workers_min: int = knob(0, "workers kept warm")
    workers_max: int = knob(1, "most workers")
    idle_timeout: float = knob(5.0, "seconds an idle worker lives before it is stopped")
    execution_timeout: float = knob(
        600.0, "default per-job execution timeout in seconds; policy.executionTimeout wins"
    )
    scaler: str = knob(QUEUE_DELAY, "scaler type", choices=(QUEUE_DELAY, REQUEST_COUNT))
    scaler_value: float = knob(
        4.0,
        "QUEUE_DELAY: seconds a job may wait before another worker starts; "
        "REQUEST_COUNT: jobs per worker",
    )
    worker_command: str = knob(
        DEFAULT_WORKER_COMMAND, "command that starts one worker (split like a shell line)"
    )
    worker_env: dict[str, str] = knob(
        {}, "extra environment for workers (repeatable)", metavar="NAME=VALUE"
    )
    retention: float = knob(1800.0, "seconds results are kept after a job ends, then 404")
    runsync_retention: float = knob(60.0, "seconds /runsync results are kept, then 404")
    webhook_retry_delay: float = knob(10.0, "seconds between the 3 webhook attempts")
    stop_grace: float = knob(5.0, "seconds between SIGTERM and SIGKILL when stopping a worker")
    crash_loop_threshold: int = knob(
        3,
        "workers in a row dying before taking a job that make a crash loop, reported by /workers",
    )
    take_timeout: float = knob(30.0, "seconds a worker's job-take long-poll is held before 204")
    fail_fast_crash_loop: bool = knob(
        False,
        "fail every queued job once workers crash-loop (RunPod keeps them IN_QUEUE "
        "and keeps restarting unhealthy workers with a back-off)",
        group=DEPARTURES,
    )
    rate_limits: bool = knob(
        True,
        "never answer 429 (RunPod limits e.g. /run to 1000 and /purge-queue to 2 "
        "requests per 10 s per endpoint)",
        group=DEPARTURES,
        flag="--no-rate-limits",
    )
    min_execution_timeout: float = knob(
        5.0, "shortest policy.executionTimeout accepted, in seconds", group=DEPARTURES
    )
    min_ttl: float = knob(10.0, "shortest policy.ttl accepted, in seconds", group=DEPARTURES)
    disabled: bool = knob(
        False,
        "answer Not Found to everything, like RunPod does for an endpoint whose balance "
        "went negative (for tests)",
        group=DEPARTURES,
    )

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, int | float) and not isinstance(value, bool) and value < 0:
                raise ValueError(f"{_flag(f)} must not be negative: {value}")
        if not ENDPOINT_ID_RE.match(self.endpoint_id):
            raise ValueError(f"endpoint id {self.endpoint_id!r}: 1-64 letters, digits, '-' or '_'")
        if self.workers_max < 1:
            raise ValueError(f"{self.endpoint_id}: --workers-max must be at least 1")
        if self.workers_min > self.workers_max:
            raise ValueError(f"{self.endpoint_id}: --workers-min cannot be more than --workers-max")
        if self.crash_loop_threshold < 1:
            raise ValueError(f"{self.endpoint_id}: --crash-loop-threshold must be at least 1")
        if self.scaler not in (QUEUE_DELAY, REQUEST_COUNT):
            raise ValueError(
                f"{self.endpoint_id}: --scaler must be {QUEUE_DELAY} or {REQUEST_COUNT}"
            )
        if self.scaler == REQUEST_COUNT and self.scaler_value < 1:
            raise ValueError(
                f"{self.endpoint_id}: --scaler-value must be at least 1 job per worker "
                "with REQUEST_COUNT"
            )
        if not self.command():
            raise ValueError(f"{self.endpoint_id}: --worker-command is empty")

    def command(self) -> list[str]:
        return shlex.split(self.worker_command)


@dataclass
class Config:
    """What one local endpoint process serves."""

    server: ServerOptions
    endpoints: list[EndpointOptions]

    def __post_init__(self) -> None:
        ids = [e.endpoint_id for e in self.endpoints]
        if not ids:
            raise ValueError("no endpoint to serve")
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"endpoint {', '.join(dupes)} is given twice")

    def to_json(self) -> str:
        server = asdict(self.server) | {"state_dir": str(self.server.state_dir)}
        return json.dumps({"server": server, "endpoints": [asdict(e) for e in self.endpoints]})


# ---- the command line, built from the declarations -----------------------------------


def _flag(f: Any) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def _default(f: Any) -> Any:
    return f.default_factory() if f.default is MISSING else f.default  # type: ignore[misc]


def _env_pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def _number(kind: type):
    def parse(text: str):
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a {kind.__name__}: {text!r}") from None

    parse.__name__ = kind.__name__
    return parse


class _Scoped(argparse.Action):
    """A per-endpoint flag: after ``--endpoint ID`` it sets that endpoint's value, before
    any ``--endpoint`` the default for all of them."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        groups = _groups(namespace)
        if self.dest == "endpoint":
            groups.append({"endpoint_id": values})
            return
        target = groups[-1]
        if self.dest == "worker_env":
            target.setdefault("worker_env", {})[values[0]] = values[1]
        elif self.const is not None:
            target[self.dest] = self.const
        else:
            target[self.dest] = values


def _groups(namespace: argparse.Namespace) -> list[dict[str, Any]]:
    if getattr(namespace, "endpoint_groups", None) is None:
        namespace.endpoint_groups = [{}]
    return namespace.endpoint_groups


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags for every field of both declarations (defaults shown from the fields)."""
    parser.set_defaults(endpoint_groups=None)
    for f in fields(ServerOptions):
        default = _default(f)
        parser.add_argument(
            _flag(f),
            dest=f.name,
            type=_number(int) if isinstance(default, int) else type(default),
            default=argparse.SUPPRESS,
            help=f"{f.metadata['help']}" + (f" (default: {default})" if default else ""),
        )
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help="a TOML or JSON file naming the endpoints to serve (see docs/local-endpoint.md); "
        "flags given on the command line win over its server settings",
    )
    parser.add_argument(
        "--endpoint",
        action=_Scoped,
        dest="endpoint",
        metavar="ID",
        help="serve an endpoint with this id; the per-endpoint flags after it are its own, "
        "those before the first --endpoint apply to every endpoint (repeatable)",
    )
    groups: dict[str, argparse._ArgumentGroup] = {}
    for f in fields(EndpointOptions):
        target = parser
        if "group" in f.metadata:
            name = f.metadata["group"]
            if name not in groups:
                groups[name] = parser.add_argument_group(
                    name,
                    "RunPod's behaviour is the default; these flags change it, for tests "
                    "and local use",
                )
            target = groups[name]
        default = _default(f)
        kwargs: dict[str, Any] = {"dest": f.name, "action": _Scoped}
        shown = "" if isinstance(default, bool) or default == {} else f" (default: {default})"
        if isinstance(default, bool):
            kwargs.update(nargs=0, const=not default)
        elif f.name == "worker_env":
            kwargs.update(type=_env_pair, metavar=f.metadata["metavar"])
        else:
            kwargs["type"] = _number(type(default)) if isinstance(default, int | float) else str
            if "choices" in f.metadata:
                kwargs["choices"] = f.metadata["choices"]
        target.add_argument(_flag(f), help=f.metadata["help"] + shown, **kwargs)


def config_from_args(args: argparse.Namespace) -> Config:
    """The configuration the flags (and ``--config``) describe; ``ValueError`` if invalid."""
    data: dict[str, Any] = {}
    if args.config is not None:
        data = read_config_file(args.config)
    server = dict(data.get("server", {}))
    server.update(
        {f.name: getattr(args, f.name) for f in fields(ServerOptions) if hasattr(args, f.name)}
    )
    groups = args.endpoint_groups or [{}]
    defaults, own = groups[0], groups[1:]
    if own and "endpoint_id" in defaults:
        raise ValueError("--endpoint-id before the first --endpoint: give each endpoint its id")
    from_file = _endpoint_list(data.get("endpoints"))
    if from_file and own:
        raise ValueError("endpoints come from --config or from --endpoint flags, not both")
    specs = from_file or own or [{}]
    return Config(
        server=ServerOptions(**server),
        endpoints=[_endpoint(defaults, spec) for spec in specs],
    )


def _endpoint(defaults: dict[str, Any], spec: dict[str, Any]) -> EndpointOptions:
    known = {f.name for f in fields(EndpointOptions)}
    unknown = sorted(set(spec) - known)
    if unknown:
        raise ValueError(f"unknown endpoint setting(s): {', '.join(unknown)}")
    env = {**defaults.get("worker_env", {}), **spec.get("worker_env", {})}
    return EndpointOptions(**{**defaults, **spec, "worker_env": env})


def _endpoint_list(value: Any) -> list[dict[str, Any]]:
    """``endpoints`` as a list of tables, or a table of tables keyed by endpoint id."""
    if value is None:
        return []
    if isinstance(value, dict):
        return [{"endpoint_id": key, **spec} for key, spec in value.items()]
    if isinstance(value, list) and all(isinstance(v, dict) for v in value):
        return value
    raise ValueError("'endpoints' must be a table of endpoint tables or a list of them")


def read_config_file(path: Path) -> dict[str, Any]:
    """A TOML (``.toml``) or JSON file: ``[server]`` and ``[endpoints.<id>]`` tables."""
    try:
        text = path.read_text()
        data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict) or not set(data) <= {"server", "endpoints"}:
        raise ValueError(f"{path}: expected only [server] and [endpoints.<id>] tables")
    return data
