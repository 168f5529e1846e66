"""Which GPU endpoint serves each pipeline: the app's view of its endpoints (issue 18).

Two configurations, both read by ``app.settings``:

- one endpoint (today's): ``RUNPOD_ENDPOINT_ID=<id>``. It is named ``default`` and serves
  every pipeline in ``PIPELINES``.
- several: ``RUNPOD_ENDPOINTS="video=<id>,light=<id>"``. Each name is a spec in
  ``deploy/endpoints/<name>.toml`` (``ENDPOINT_SPECS_DIR`` to read another folder), whose
  ``[endpoint] pipelines`` say what that endpoint serves: the operator tool deploys from
  the same files, so the app and RunPod cannot disagree about where a pipeline runs.

Every offered pipeline is on exactly one endpoint; ``build_fleet`` refuses anything else
with the fix in its message. Job rows record the endpoint's *name* (``Job.endpoint``), so
an endpoint recreated under a new id keeps its jobs.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT = "default"
# Short enough for a snapshot row's name ("endpoint:<name>", 64 characters).
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,47}$")


class RoutingError(ValueError):
    """The endpoints configuration cannot route every pipeline; the message says the fix."""


class UnknownEndpoint(KeyError):
    """A name that is not one of the configured endpoints."""


@dataclass(frozen=True)
class Endpoint:
    name: str  # the spec's file name, or "default"
    endpoint_id: str  # RunPod's id (the local endpoint's id under make run)
    pipelines: tuple[str, ...]


@dataclass(frozen=True)
class Fleet:
    """The configured endpoints, in configuration order."""

    endpoints: tuple[Endpoint, ...]

    @property
    def names(self) -> list[str]:
        return [e.name for e in self.endpoints]

    @property
    def several(self) -> bool:
        return len(self.endpoints) > 1

    def get(self, name: str) -> Endpoint:
        for endpoint in self.endpoints:
            if endpoint.name == name:
                return endpoint
        raise UnknownEndpoint(name)

    def __contains__(self, name: object) -> bool:
        return name in self.names

    def for_pipeline(self, pipeline: str) -> Endpoint:
        for endpoint in self.endpoints:
            if pipeline in endpoint.pipelines:
                return endpoint
        raise UnknownEndpoint(pipeline)

    def route(self, name: str | None, pipeline: str) -> Endpoint:
        """The endpoint a job's calls go to: the one it records, or, for a row whose
        endpoint is no longer configured (made before a move to several endpoints), the one
        serving its pipeline now (the first endpoint when none does)."""
        if name in self:
            return self.get(name)
        for endpoint in self.endpoints:
            if pipeline in endpoint.pipelines:
                return endpoint
        return self.endpoints[0]

    def unknown_words(self, name: str) -> str:
        """What a page or command says about an endpoint name that is not configured."""
        return f"no endpoint is named {name!r}: the endpoints are {', '.join(self.names)}"


def parse_pairs(raw: str) -> list[tuple[str, str]]:
    """``"video=abc,light=def"`` as ``[("video", "abc"), ("light", "def")]``."""
    pairs = []
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        name, sep, endpoint_id = (s.strip() for s in item.partition("="))
        if not sep or not name or not endpoint_id:
            raise RoutingError(
                f"RUNPOD_ENDPOINTS item {item!r} is not NAME=ID: write e.g. "
                '"video=abc123,light=def456" (one spec deploy/endpoints/NAME.toml each)'
            )
        if not NAME_RE.match(name):
            raise RoutingError(
                f"RUNPOD_ENDPOINTS: endpoint name {name!r} must be lower-case letters, digits, "
                "'-' or '_' (the spec file's name)"
            )
        pairs.append((name, endpoint_id))
    return pairs


def read_spec(specs_dir: Path | str, name: str) -> dict[str, Any]:
    """The TOML of ``specs_dir/<name>.toml``, the one place the app reads an endpoint's spec
    (its pipelines here, its GPU tiers and pricing in ``app.endpoints.billing``)."""
    path = Path(specs_dir) / f"{name}.toml"
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RoutingError(
            f"RUNPOD_ENDPOINTS names {name!r} but {path} does not exist: add the spec "
            "(docs/operations.md, Several endpoints) or set ENDPOINT_SPECS_DIR"
        ) from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise RoutingError(f"cannot read {path}: {exc}") from None


def spec_pipelines(specs_dir: Path, name: str) -> tuple[str, ...]:
    """``[endpoint] pipelines`` of ``specs_dir/<name>.toml``."""
    pipelines = (read_spec(specs_dir, name).get("endpoint") or {}).get("pipelines")
    if not isinstance(pipelines, list) or not all(isinstance(p, str) for p in pipelines):
        raise RoutingError(
            f"{Path(specs_dir) / f'{name}.toml'}: [endpoint] pipelines must list the pipelines "
            'it serves, e.g. ["echo"]'
        )
    return tuple(pipelines)


def build_fleet(
    *,
    pairs: str,
    single_id: str,
    offered: Iterable[str],
    specs_dir: Path,
) -> Fleet:
    """The endpoints from the settings; ``RoutingError`` unless every offered pipeline is
    served by exactly one of them."""
    offered = tuple(offered)
    if not pairs.strip():
        return Fleet((Endpoint(DEFAULT, single_id, offered),))
    if single_id:
        raise RoutingError(
            "RUNPOD_ENDPOINT_ID and RUNPOD_ENDPOINTS are both set: keep RUNPOD_ENDPOINTS "
            "(NAME=ID for each endpoint) and unset RUNPOD_ENDPOINT_ID"
        )
    parsed = parse_pairs(pairs)
    names = [name for name, _ in parsed]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise RoutingError(f"RUNPOD_ENDPOINTS names {', '.join(twice)} twice: name each once")
    endpoints = []
    for name, endpoint_id in parsed:
        served = tuple(p for p in spec_pipelines(specs_dir, name) if p in offered)
        endpoints.append(Endpoint(name, endpoint_id, served))
    for pipeline in offered:
        on = [e.name for e in endpoints if pipeline in e.pipelines]
        if len(on) > 1:
            raise RoutingError(
                f"pipeline {pipeline} is on two endpoints ({', '.join(on)}): remove it from "
                f"all but one spec's pipelines in {specs_dir}"
            )
        if not on:
            raise RoutingError(
                f"pipeline {pipeline} is on no endpoint of RUNPOD_ENDPOINTS "
                f"({', '.join(names)}): add it to one spec's pipelines in {specs_dir}, add "
                "that endpoint to RUNPOD_ENDPOINTS, or drop it from PIPELINES"
            )
    return Fleet(tuple(endpoints))
