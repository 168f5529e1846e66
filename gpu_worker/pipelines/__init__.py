"""Pipeline registry: each pipeline is a module exposing ``PIPELINE``, its one declaration.

A pipeline declares, in plain data that imports nothing heavy:

- its parameters as JSON Schema (one schema per parameter: type, default, minimum/maximum,
  enum, description, title), which the worker validates every job with and the app reads to
  build the upload form, check uploads and publish the OpenAPI document;
- its inputs (``Input``: the name the worker reads it under, and the kinds it takes: video,
  image or any) and the content type of its output per input kind;
- its models (``ModelSpec``), a ``load(model_dirs, device)`` that turns downloaded files into
  something runnable, and ``run(inputs, params, progress, ctx)``. torch is imported inside
  ``load`` and ``run`` only.

The app runs on other machines and does not import this package: it reads
``app/pipelines.json``, which ``python -m gpu_worker.pipelines catalogue`` writes from these
declarations (``make catalogue``; a test fails when the file is stale). To add a pipeline,
add a module and a line to ``_MODULES``: ``python -m gpu_worker.pipelines new NAME`` does
both (docs/gpu-worker.md, "Add your model").
"""

from __future__ import annotations

import functools
import importlib
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from gpu_worker.errors import InputError

# progress(update: dict, force: bool = False): report to the job status (throttled unless forced).
Progress = Callable[..., None]

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
KINDS = ("video", "image", "any")
# An output content type of SAME means "the same type as the uploaded input".
SAME = "same"


@dataclass(frozen=True)
class ModelSpec:
    """A model a pipeline needs: which hub repo, at which revision, which files."""

    repo_id: str
    revision: str = "main"
    allow_patterns: tuple[str, ...] = ("*",)

    def folder(self) -> str:
        def safe(text: str) -> str:
            return re.sub(r"[^A-Za-z0-9._-]", "--", text)

        return f"{safe(self.repo_id)}/{safe(self.revision)}"


@dataclass(frozen=True)
class Input:
    """One input file: the key it arrives under in ``job.input.inputs`` and its kinds."""

    name: str
    kinds: tuple[str, ...]
    required: bool = True

    def __post_init__(self) -> None:
        bad = [kind for kind in self.kinds if kind not in KINDS]
        if bad or not self.kinds:
            raise ValueError(f"input {self.name!r}: kinds must be some of {KINDS}, not {bad}")


@dataclass(frozen=True)
class FrameLimit:
    """The largest frame a pipeline decodes, checked from headers and packets before the
    decoder allocates it (``gpu_worker.media``): ``side`` pixels across or down, ``pixels`` in
    all; and ``batch_pixels``, the pixels a batch of frames may hold (the batch is made
    smaller for large frames). The defaults take 4K UHD and DCI 4K video and 8 frames of
    1080p a batch."""

    side: int = 4096
    pixels: int = 4096 * 2304
    batch_pixels: int = 8 * 1920 * 1080
    owner: str = ""

    def check(self, field: str, width: int, height: int, where: str = "") -> None:
        """``InputError`` when a ``width``×``height`` frame is over the limit."""
        if max(width, height) > self.side:
            raise InputError(
                f"{field}: frame {width}×{height}{where} exceeds the {self.side}×{self.side} "
                f"limit of {self.owner}; send a file no larger than that"
            )
        if width * height > self.pixels:
            raise InputError(
                f"{field}: frame {width}×{height}{where} has {width * height / 1e6:.1f} "
                f"megapixels, over the {self.pixels / 1e6:.1f}-megapixel limit of "
                f"{self.owner}; send a smaller file"
            )

    def batch_for(self, width: int, height: int, wanted: int) -> int:
        """How many ``width``×``height`` frames a batch may hold: ``wanted``, or fewer."""
        return max(1, min(wanted, self.batch_pixels // max(1, width * height)))


@dataclass
class RunContext:
    """What a pipeline run gets besides its inputs: a scratch folder, the device, its models,
    and the largest frame it may decode (its pipeline's ``frame_limit``)."""

    workdir: Path
    device: str
    loaded: Any = None
    cancel: threading.Event = field(default_factory=threading.Event)
    frame_limit: FrameLimit = field(default_factory=FrameLimit)

    def output_path(self, suffix: str) -> Path:
        return self.workdir / f"output{suffix}"


@dataclass
class PipelineResult:
    """``result`` is the pipeline's JSON; ``output_file`` the file to deliver, if any."""

    result: dict[str, Any]
    output_file: Path | None = None
    content_type: str = "application/octet-stream"
    frames: int | None = None
    items: int | None = None


@dataclass(frozen=True, eq=False)
class Pipeline:
    """A pipeline's declaration and its code. Everything but ``run``/``load``/``models`` is
    data that ``catalogue()`` publishes to the app."""

    name: str
    run: Callable[[dict[str, Path], dict[str, Any], Progress, RunContext], PipelineResult]
    title: str = ""
    description: str = ""
    help: str = ""
    inputs: tuple[Input, ...] = ()
    # Also take inputs under names not declared (echo does: it describes whatever it gets).
    extra_inputs: bool = False
    # name -> JSON Schema of that parameter.
    params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # Accept (and pass on) parameters not declared; the app never sends undeclared ones.
    extra_params: bool = False
    # input kind -> content type of the result (SAME: the input's own type).
    output: Mapping[str, str] = field(default_factory=dict)
    models: Callable[[], tuple[ModelSpec, ...]] = tuple
    load: Callable[[dict[str, Path], str], Any] | None = None
    # The largest frame its inputs may have; decoding refuses larger ones before allocating.
    frame_limit: FrameLimit = field(default_factory=FrameLimit)

    def limit(self) -> FrameLimit:
        """``frame_limit``, naming this pipeline in its messages."""
        return replace(self.frame_limit, owner=self.name)

    def params_schema(self) -> dict[str, Any]:
        """The JSON Schema of the ``params`` object."""
        return {
            "$schema": SCHEMA_DIALECT,
            "type": "object",
            "properties": {name: dict(spec) for name, spec in self.params.items()},
            "additionalProperties": self.extra_params,
        }

    def declaration(self) -> dict[str, Any]:
        """What the app reads (``app/pipelines.json``): plain JSON, no code."""
        return {
            "name": self.name,
            "title": self.title or self.name,
            "description": self.description,
            "help": self.help,
            "inputs": [
                {"name": i.name, "kinds": list(i.kinds), "required": i.required}
                for i in self.inputs
            ],
            "extra_inputs": self.extra_inputs,
            "output": dict(self.output),
            "params": self.params_schema(),
        }

    def validate_params(self, params: dict[str, Any]) -> dict[str, Any]:
        """Params with declared defaults filled in; ``InputError`` naming the first bad one."""
        errors = sorted(_validator(self).iter_errors(params), key=lambda e: list(e.path))
        if errors:
            raise InputError(self._explain(errors[0], params))
        out = {name: spec["default"] for name, spec in self.params.items() if "default" in spec}
        out.update(params)
        for name, value in out.items():
            # A JSON number may arrive as 2 for a float parameter; pipelines get floats.
            if _type_of(self.params.get(name, {})) == "number" and isinstance(value, int):
                out[name] = float(value)
        return out

    def _explain(self, error: Any, params: dict[str, Any]) -> str:
        if error.validator == "additionalProperties":
            unknown = sorted(set(params) - set(self.params))
            return (
                f"params.{unknown[0]}: pipeline {self.name} has no such parameter; it takes "
                f"{', '.join(sorted(self.params)) or 'none'}"
            )
        name = str(error.path[0]) if error.path else "?"
        spec = self.params.get(name, {})
        return f"params.{name}: expected {expected(spec)}, got {error.instance!r}"


@functools.cache
def _validator(pipeline: Pipeline) -> Any:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(pipeline.params_schema())


def _type_of(spec: Mapping[str, Any]) -> str | None:
    kind = spec.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), None)
    return kind


def expected(spec: Mapping[str, Any]) -> str:
    """What a parameter takes, in words: "one of 1, 2", "a number from 0 to 3"."""
    if "enum" in spec:
        return "one of " + ", ".join(repr(c) for c in spec["enum"])
    kind = _type_of(spec)
    text = {
        "integer": "an integer",
        "number": "a number",
        "string": "a string",
        "boolean": "true or false",
    }.get(kind or "", "a value")
    low, high = spec.get("minimum"), spec.get("maximum")
    if low is not None and high is not None:
        text += f" from {low:g} to {high:g}"
    elif low is not None:
        text += f" of at least {low:g}"
    elif high is not None:
        text += f" of at most {high:g}"
    if spec.get("maxLength") is not None:
        text += f" of at most {spec['maxLength']} characters"
    return text


# name -> module path; modules are imported on first use so torch stays off the echo path.
_MODULES: dict[str, str] = {
    "echo": "gpu_worker.pipelines.echo",
    "video_enhance": "gpu_worker.pipelines.video_enhance",
    "upscale": "gpu_worker.pipelines.upscale",
}


def names() -> list[str]:
    return sorted(_MODULES)


def get(name: str) -> Pipeline:
    """Return the pipeline called ``name``; ``KeyError`` names the known ones."""
    if name not in _MODULES:
        raise KeyError(f"unknown pipeline {name!r}; known pipelines: {', '.join(names())}")
    return importlib.import_module(_MODULES[name]).PIPELINE


def catalogue() -> dict[str, Any]:
    """Every pipeline's declaration, as ``app/pipelines.json`` holds it."""
    return {
        "generated_by": "python -m gpu_worker.pipelines catalogue --output app/pipelines.json",
        "pipelines": {name: get(name).declaration() for name in names()},
    }
