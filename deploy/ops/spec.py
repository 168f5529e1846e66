"""An endpoint spec file (``deploy/endpoints/<name>.toml``): one file describes one endpoint.

The file's name is the endpoint's name in the app and on the command line (``--endpoint
video``); ``[endpoint].name`` is the endpoint's name on RunPod. ``pipelines`` lists the
pipelines the endpoint serves and ``image_pipelines`` those its image carries (the
``PIPELINES`` build argument of ``Dockerfile.gpu``; default: the same list). ``[pricing]``
overrides the price book for this endpoint (``flex_per_s``, ``active_per_s``, USD per
GPU-second per GPU). Which pipelines are served where is checked across all specs by
``deploy.ops.fleet``.

Parsing only checks shape and types (a typo fails here with the key's name); whether the
values make a working endpoint is ``deploy.ops.check``'s job. Secrets are never inline:
an env value is either a plain string or a reference, ``{ from_env = "NAME" }`` (read from
this machine's environment at apply time) or ``{ runpod_secret = "name" }`` (RunPod resolves
``{{ RUNPOD_SECRET_name }}`` on the worker, so the value never leaves RunPod).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploy.runpod.vocabulary import QUEUE_DELAY, SCALER_TYPES

REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")


class SpecError(ValueError):
    """The spec file is missing, not TOML, or has a wrong key or type (exit code 2)."""


@dataclass(frozen=True)
class EnvValue:
    """One environment variable: a literal, or a reference to a secret kept elsewhere."""

    literal: str | None = None
    from_env: str | None = None
    runpod_secret: str | None = None

    def describe(self) -> str:
        if self.from_env:
            return f"from_env {self.from_env}"
        if self.runpod_secret:
            return f"runpod_secret {self.runpod_secret}"
        return "literal"

    def resolve(self, environ: Mapping[str, str]) -> str | None:
        """The value RunPod should receive; ``None`` when a ``from_env`` variable is unset in
        ``environ`` (the operator's settings' copy of the environment)."""
        if self.literal is not None:
            return self.literal
        if self.runpod_secret:
            return "{{ RUNPOD_SECRET_" + self.runpod_secret + " }}"
        value = environ.get(self.from_env or "")
        return value or None


@dataclass(frozen=True)
class Volume:
    name: str
    size_gb: int
    datacenter: str


@dataclass(frozen=True)
class Model:
    repo: str
    revision: str = "main"
    # Glob patterns of the files the worker downloads (empty: the whole repo).
    files: tuple[str, ...] = ()


@dataclass(frozen=True)
class Pricing:
    """Per-GPU-second prices for this endpoint, overriding the price book when set."""

    flex_per_s: float | None = None
    active_per_s: float | None = None


@dataclass
class EndpointSpec:
    name: str
    image: str
    gpu_tiers: list[str]
    image_compressed_gb: float | None = None
    args: str = ""
    gpu_count: int = 1
    workers_min: int = 0
    workers_max: int = 1
    idle_timeout_s: int = 5
    scaler_type: str = QUEUE_DELAY
    scaler_value: float = 4
    execution_timeout_s: int = 600
    expected_job_s: float | None = None
    flashboot: bool = True
    container_disk_gb: int = 20
    volume: Volume | None = None
    env: dict[str, EnvValue] = field(default_factory=dict)
    models: list[Model] = field(default_factory=list)
    download_overhead: float = 2.0
    # None: every pipeline (a lone spec, as before several endpoints existed).
    pipelines: list[str] | None = None
    image_pipelines: list[str] | None = None
    pricing: Pricing = field(default_factory=Pricing)
    path: Path | None = None

    @property
    def key(self) -> str:
        """The endpoint's name in the app and the CLI: the spec file's name."""
        return self.path.stem if self.path else self.name

    @property
    def image_carries(self) -> list[str] | None:
        """The pipelines the image is built with (``--build-arg PIPELINES=...``)."""
        return self.image_pipelines if self.image_pipelines is not None else self.pipelines

    @property
    def template_name(self) -> str:
        return f"{self.name}-template"

    def resolved_env(self, environ: Mapping[str, str]) -> dict[str, str | None]:
        return {k: v.resolve(environ) for k, v in self.env.items()}

    def missing_secrets(self, environ: Mapping[str, str]) -> list[str]:
        """``from_env`` variables that are not set here (apply refuses to send empty ones)."""
        return [v.from_env for v in self.env.values() if v.from_env and v.resolve(environ) is None]


_ENDPOINT_KEYS: dict[str, tuple[type, ...]] = {
    "name": (str,),
    "image": (str,),
    "image_compressed_gb": (int, float),
    "args": (str,),
    "gpu_tiers": (list,),
    "gpu_count": (int,),
    "workers_min": (int,),
    "workers_max": (int,),
    "idle_timeout_s": (int,),
    "scaler": (dict,),
    "execution_timeout_s": (int,),
    "expected_job_s": (int, float),
    "flashboot": (bool,),
    "container_disk_gb": (int,),
    "pipelines": (list,),
    "image_pipelines": (list,),
}
_REQUIRED = ("name", "image", "gpu_tiers")


def _typed(table: dict[str, Any], key: str, types: tuple[type, ...], where: str) -> Any:
    value = table[key]
    # bool is an int in Python; a flag is never a number and a number never a flag here.
    if isinstance(value, bool) and bool not in types:
        raise SpecError(f"{where}.{key} must be {types[0].__name__}, not a boolean")
    if not isinstance(value, types):
        names = " or ".join(t.__name__ for t in types)
        raise SpecError(f"{where}.{key} must be {names}, got {type(value).__name__} {value!r}")
    return value


def _unknown(table: dict[str, Any], allowed: set[str], where: str) -> None:
    extra = sorted(set(table) - allowed)
    if extra:
        allowed_text = ", ".join(sorted(allowed))
        raise SpecError(
            f"unknown key(s) in [{where}]: {', '.join(extra)} (allowed: {allowed_text})"
        )


def _env_value(key: str, raw: Any) -> EnvValue:
    if isinstance(raw, str):
        return EnvValue(literal=raw)
    if isinstance(raw, dict) and len(raw) == 1:
        (kind, name), *_ = raw.items()
        if kind in ("from_env", "runpod_secret") and isinstance(name, str) and name:
            return EnvValue(**{kind: name})
    raise SpecError(
        f'env.{key} must be a string, {{ from_env = "NAME" }} or {{ runpod_secret = "name" }}'
    )


def parse_spec(data: dict[str, Any], path: Path | None = None) -> EndpointSpec:
    """Build an ``EndpointSpec`` from parsed TOML; ``SpecError`` names the offending key."""
    _unknown(data, {"endpoint", "volume", "env", "models", "sizing", "pricing"}, "top level")
    values = _endpoint_values(data)
    tiers = _gpu_tiers(values)
    scaler_type, scaler_value = _scaler(values)
    volume = _volume(data)
    env = _env(data)
    models = _models(data)
    overhead = _download_overhead(data)
    return EndpointSpec(
        pricing=_pricing(data),
        gpu_tiers=tiers,
        scaler_type=scaler_type,
        scaler_value=scaler_value,
        volume=volume,
        env=env,
        models=models,
        download_overhead=overhead,
        path=path,
        **values,
    )


def _endpoint_values(data: dict[str, Any]) -> dict[str, Any]:
    """The ``[endpoint]`` table's keys, each checked for its type."""
    endpoint = data.get("endpoint")
    if not isinstance(endpoint, dict):
        raise SpecError("the spec needs an [endpoint] table")
    _unknown(endpoint, set(_ENDPOINT_KEYS), "endpoint")
    for key in _REQUIRED:
        if key not in endpoint:
            raise SpecError(f"[endpoint] needs {key!r}")
    values = {
        key: _typed(endpoint, key, t, "endpoint")
        for key, t in _ENDPOINT_KEYS.items()
        if key in endpoint
    }
    for key in ("pipelines", "image_pipelines"):
        if key in values and not all(isinstance(n, str) and n for n in values[key]):
            raise SpecError(f'endpoint.{key} must be a list of pipeline names, e.g. ["echo"]')
    return values


def _gpu_tiers(values: dict[str, Any]) -> list[str]:
    """``endpoint.gpu_tiers``, taken out of ``values``."""
    tiers = values.pop("gpu_tiers")
    if not tiers or not all(isinstance(t, str) and t for t in tiers):
        raise SpecError("endpoint.gpu_tiers must be a non-empty list of GPU pool ids")
    return list(tiers)


def _scaler(values: dict[str, Any]) -> tuple[str, int | float]:
    """``endpoint.scaler``'s type and value, taken out of ``values``."""
    scaler = values.pop("scaler", {"type": "QUEUE_DELAY", "value": 4})
    _unknown(scaler, {"type", "value"}, "endpoint.scaler")
    if scaler.get("type") not in SCALER_TYPES:
        raise SpecError(f"endpoint.scaler.type must be one of {', '.join(SCALER_TYPES)}")
    scaler_value = scaler.get("value", 4)
    if isinstance(scaler_value, bool) or not isinstance(scaler_value, int | float):
        raise SpecError("endpoint.scaler.value must be a number")
    return scaler["type"], scaler_value


def _volume(data: dict[str, Any]) -> Volume | None:
    if "volume" not in data:
        return None
    raw = data["volume"]
    if not isinstance(raw, dict):
        raise SpecError("[volume] must be a table")
    _unknown(raw, {"name", "size_gb", "datacenter"}, "volume")
    for key in ("name", "size_gb", "datacenter"):
        if key not in raw:
            raise SpecError(f"[volume] needs {key!r}")
    return Volume(
        name=_typed(raw, "name", (str,), "volume"),
        size_gb=_typed(raw, "size_gb", (int,), "volume"),
        datacenter=_typed(raw, "datacenter", (str,), "volume"),
    )


def _env(data: dict[str, Any]) -> dict[str, EnvValue]:
    env_table = data.get("env", {})
    if not isinstance(env_table, dict):
        raise SpecError("[env] must be a table")
    return {str(k): _env_value(k, v) for k, v in env_table.items()}


def _models(data: dict[str, Any]) -> list[Model]:
    return [_model(i, raw) for i, raw in enumerate(data.get("models", []))]


def _model(i: int, raw: Any) -> Model:
    """``[[models]]`` entry ``i``."""
    if not isinstance(raw, dict) or not REPO_ID.fullmatch(str(raw.get("repo", ""))):
        raise SpecError(f'models[{i}] needs repo = "org/name" (a hub repo id)')
    _unknown(raw, {"repo", "revision", "files"}, f"models[{i}]")
    files = raw.get("files", [])
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        raise SpecError(f'models[{i}].files must be a list of file names, e.g. ["x.pth"]')
    return Model(repo=raw["repo"], revision=str(raw.get("revision", "main")), files=tuple(files))


def _download_overhead(data: dict[str, Any]) -> float:
    sizing = data.get("sizing", {})
    _unknown(sizing, {"download_overhead"}, "sizing")
    overhead = sizing.get("download_overhead", 2.0)
    if isinstance(overhead, bool) or not isinstance(overhead, int | float) or overhead < 1:
        raise SpecError("sizing.download_overhead must be a number >= 1")
    return float(overhead)


def _pricing(data: dict[str, Any]) -> Pricing:
    pricing_table = data.get("pricing", {})
    if not isinstance(pricing_table, dict):
        raise SpecError("[pricing] must be a table")
    _unknown(pricing_table, {"flex_per_s", "active_per_s"}, "pricing")
    prices = {}
    for key, value in pricing_table.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise SpecError(f"pricing.{key} must be a positive number of USD per GPU-second")
        prices[key] = float(value)
    return Pricing(**prices)


def load_spec(path: str | Path) -> EndpointSpec:
    """Read and parse a spec file; ``SpecError`` says what is wrong and where."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SpecError(f"spec file {path} not found (pass --spec PATH)") from None
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{path} is not valid TOML: {exc}") from None
    return parse_spec(data, path)
