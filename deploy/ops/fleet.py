"""Several endpoints as data: the folder of specs, choosing one for a command, and the rules
that hold across specs (each pipeline the app offers is served by exactly one endpoint whose
image carries it).

What the app offers is read from ``app/pipelines.json`` (the catalogue generated from the
worker's declarations; the operator tool never imports the app). What an image can carry is
what ``Dockerfile.gpu`` can install: a pipeline with a requirement set in
``deploy/image/requirements/<pipeline>.txt``. A spec's image carries its ``image_pipelines``
(the ``PIPELINES`` build argument; default: its ``pipelines``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from deploy.findings import ERROR, WARNING, Finding, Rules
from deploy.ops.spec import EndpointSpec, SpecError, load_spec

ROOT = Path(__file__).resolve().parents[2]
CATALOGUE = ROOT / "app" / "pipelines.json"
REQUIREMENTS = ROOT / "deploy" / "image" / "requirements"
BASE_REQUIREMENTS = "base"


class SelectionError(ValueError):
    """The command cannot tell which endpoint it should act on (exit code 2)."""


@dataclass
class Fleet:
    """Every endpoint spec of the deployment, by name (the spec file's name)."""

    specs: dict[str, EndpointSpec]
    # What the app offers and what an image can carry (read once, for the rules).
    offered: list[str] = field(default_factory=list)
    installable: list[str] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return sorted(self.specs)

    def served(self, spec: EndpointSpec) -> list[str]:
        """The pipelines ``spec`` serves; a spec that names none serves every offered one."""
        return list(spec.pipelines) if spec.pipelines is not None else list(self.offered)

    def carried(self, spec: EndpointSpec) -> list[str]:
        carries = spec.image_carries
        return list(carries) if carries is not None else list(self.installable)

    def endpoint_of(self, pipeline: str) -> list[str]:
        return [name for name in self.names if pipeline in self.served(self.specs[name])]


def offered_pipelines(path: Path = CATALOGUE) -> list[str]:
    """The pipelines the app offers, from its catalogue file (JSON, never an import)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return sorted(data["pipelines"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SpecError(
            f"cannot read the app's pipelines from {path} ({type(exc).__name__}): "
            "run `make catalogue`"
        ) from None


def installable_pipelines(folder: Path = REQUIREMENTS) -> list[str]:
    """Pipelines Dockerfile.gpu can install: those with a requirement set."""
    return sorted(p.stem for p in folder.glob("*.txt") if p.stem != BASE_REQUIREMENTS)


def load_fleet(folder: Path) -> Fleet:
    """Every ``*.toml`` spec in ``folder``; ``SpecError`` names a bad file."""
    if not folder.is_dir():
        raise SpecError(
            f"no endpoint specs: {folder} is not a folder (set DEPLOY_ENDPOINTS_DIR or pass "
            "--spec PATH)"
        )
    specs = {p.stem: load_spec(p) for p in sorted(folder.glob("*.toml"))}
    if not specs:
        raise SpecError(f"no endpoint specs in {folder}: add <name>.toml (see docs/operations.md)")
    return Fleet(specs, offered_pipelines(), installable_pipelines())


def single(path: Path) -> Fleet:
    """A fleet of one spec file given with ``--spec`` (it acts as the one endpoint)."""
    spec = load_spec(path)
    return Fleet({spec.key: spec}, offered_pipelines(), installable_pipelines())


def choose(fleet: Fleet, name: str | None, every: bool, *, allow_all: bool) -> list[EndpointSpec]:
    """The specs a command acts on: ``--endpoint NAME``, ``--all``, or the only one.

    With several specs and neither flag, nothing is chosen: the error lists the endpoints,
    so no command acts on all of them (or on a guess) by default."""
    if name and every:
        raise SelectionError("give --endpoint NAME or --all, not both")
    if every:
        if not allow_all:
            raise SelectionError("this command acts on one endpoint: give --endpoint NAME")
        return [fleet.specs[n] for n in fleet.names]
    if name:
        if name not in fleet.specs:
            raise SelectionError(
                f"no endpoint {name!r}; the endpoints are {', '.join(fleet.names)}"
            )
        return [fleet.specs[name]]
    if len(fleet.specs) == 1:
        return list(fleet.specs.values())
    also = " (or --all)" if allow_all else ""
    raise SelectionError(
        f"{len(fleet.specs)} endpoints: {', '.join(fleet.names)}; "
        f"give --endpoint NAME{also}; nothing was done"
    )


FLEET_RULES = Rules()
rule = FLEET_RULES.rule


@rule(
    "pipelines-unnamed",
    ERROR,
    "With several endpoints, each spec names its pipelines",
    "A spec without `pipelines` serves every pipeline; beside another endpoint that means "
    "two endpoints for the same jobs.",
)
def _unnamed(fleet: Fleet) -> Iterable[tuple[str, str]]:
    if len(fleet.specs) < 2:
        return
    for name in fleet.names:
        if fleet.specs[name].pipelines is None:
            yield (
                f"endpoint {name} names no pipelines",
                f'add pipelines = ["..."] to [endpoint] in {fleet.specs[name].path or name}',
            )


@rule(
    "pipeline-on-two-endpoints",
    ERROR,
    "Each pipeline is served by one endpoint only",
    "The app routes a pipeline's jobs to one endpoint; a second endpoint would build, bill "
    "and scale for jobs that never reach it.",
)
def _twice(fleet: Fleet) -> Iterable[tuple[str, str]]:
    pipelines = sorted({p for s in fleet.specs.values() for p in fleet.served(s)})
    for pipeline in pipelines:
        where = fleet.endpoint_of(pipeline)
        if len(where) > 1:
            yield (
                f"pipeline {pipeline} is on endpoints {', '.join(where)}",
                f"keep {pipeline} in the pipelines of one of them only",
            )


@rule(
    "pipeline-on-no-endpoint",
    ERROR,
    "Every pipeline the app offers is served by an endpoint",
    "The upload page offers every pipeline in app/pipelines.json; one no endpoint serves "
    "takes uploads whose jobs can never run.",
)
def _nowhere(fleet: Fleet) -> Iterable[tuple[str, str]]:
    for pipeline in fleet.offered:
        if not fleet.endpoint_of(pipeline):
            yield (
                f"pipeline {pipeline} is offered by the app and served by no endpoint",
                f"add {pipeline!r} to the pipelines of one spec in deploy/endpoints "
                "(or a new spec for another GPU size)",
            )


@rule(
    "pipeline-unknown",
    ERROR,
    "Every pipeline named in a spec is one the app offers",
    "A misspelt or removed pipeline routes nothing and hides the one that was meant.",
)
def _unknown(fleet: Fleet) -> Iterable[tuple[str, str]]:
    for name in fleet.names:
        spec = fleet.specs[name]
        for pipeline in (spec.pipelines or []) + (spec.image_pipelines or []):
            if pipeline not in fleet.offered:
                yield (
                    f"endpoint {name} names pipeline {pipeline!r}, which the app does not offer",
                    f"use one of {', '.join(fleet.offered)} (app/pipelines.json)",
                )


@rule(
    "pipeline-not-in-image",
    ERROR,
    "Each endpoint's image carries the pipelines it serves",
    "The worker refuses a job for a pipeline its image was not built with: every job routed "
    "there would fail.",
)
def _not_in_image(fleet: Fleet) -> Iterable[tuple[str, str]]:
    for name in fleet.names:
        spec = fleet.specs[name]
        carried = fleet.carried(spec)
        for pipeline in fleet.served(spec):
            if pipeline not in carried:
                yield (
                    f"endpoint {name} serves {pipeline} but its image carries only "
                    f"{', '.join(carried) or 'nothing'}",
                    f"add {pipeline!r} to image_pipelines, rebuild with --build-arg "
                    f"PIPELINES={','.join([*carried, pipeline])} and push a new tag",
                )


@rule(
    "pipeline-not-installable",
    ERROR,
    "Every pipeline an image carries has a requirement set",
    "Dockerfile.gpu installs a pipeline's packages from deploy/image/requirements/<name>.txt; "
    "without one the build stops.",
)
def _not_installable(fleet: Fleet) -> Iterable[tuple[str, str]]:
    for name in fleet.names:
        for pipeline in fleet.carried(fleet.specs[name]):
            if pipeline in fleet.offered and pipeline not in fleet.installable:
                yield (
                    f"endpoint {name}'s image carries {pipeline}, which has no requirement set",
                    f"add deploy/image/requirements/{pipeline}.txt (package names; versions "
                    "are pinned in gpu_worker/requirements.txt)",
                )


@rule(
    "endpoint-name-twice",
    ERROR,
    "Each spec has its own RunPod endpoint name",
    "apply finds endpoints, templates and volumes by name: two specs with one name would "
    "overwrite each other on every apply.",
)
def _same_name(fleet: Fleet) -> Iterable[tuple[str, str]]:
    seen: dict[str, str] = {}
    for name in fleet.names:
        runpod_name = fleet.specs[name].name
        if runpod_name in seen:
            yield (
                f"endpoints {seen[runpod_name]} and {name} are both named {runpod_name!r} "
                "on RunPod",
                f"give [endpoint].name in {name}.toml a name of its own",
            )
        seen.setdefault(runpod_name, name)


@rule(
    "preload-not-carried",
    WARNING,
    "PRELOAD_PIPELINES names only pipelines the image carries",
    "The worker preloads these at start; one its image lacks is skipped with a log line and "
    "its first job pays the load.",
)
def _preload(fleet: Fleet) -> Iterable[tuple[str, str]]:
    for name in fleet.names:
        spec = fleet.specs[name]
        value = spec.env.get("PRELOAD_PIPELINES")
        if value is None or value.literal is None:
            continue
        carried = fleet.carried(spec)
        for pipeline in filter(None, (p.strip() for p in value.literal.split(","))):
            if pipeline not in carried:
                yield (
                    f"endpoint {name} preloads {pipeline}, which its image does not carry",
                    f"set PRELOAD_PIPELINES to some of {', '.join(carried) or '(none)'}",
                )


def fleet_findings(fleet: Fleet) -> list[Finding]:
    """Findings across the specs, errors first."""
    return FLEET_RULES.findings(fleet)
