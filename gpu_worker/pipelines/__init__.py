"""Pipeline registry: each pipeline is a module exposing ``PIPELINE``.

A pipeline declares the models it needs (``ModelSpec``), its parameter schema (``Param``), the
input files it expects, a ``load(model_dirs, device)`` that turns downloaded files into
something runnable, and ``run(inputs, params, progress, ctx)``. Modules are imported on first
use so torch stays off the echo path; to add a pipeline, add a module and a line to
``_MODULES`` (see the README, "The GPU worker").
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpu_worker.errors import InputError
from gpu_worker.model_cache import ModelSpec

# progress(update: dict, force: bool = False): report to the job status (throttled unless forced).
Progress = Callable[..., None]


@dataclass(frozen=True)
class Param:
    """One parameter: its type (int, float, str or bool), default, bounds or choices."""

    type: type
    default: Any = None
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[Any, ...] = ()
    help: str = ""

    def expected(self) -> str:
        if self.choices:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        kind = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
        text = kind.get(self.type, self.type.__name__)
        if self.minimum is not None and self.maximum is not None:
            text += f" from {self.minimum:g} to {self.maximum:g}"
        elif self.minimum is not None:
            text += f" of at least {self.minimum:g}"
        return text

    def coerce(self, name: str, value: Any) -> Any:
        ok = isinstance(value, self.type) and not (
            self.type is not bool and isinstance(value, bool)
        )
        if self.type is float and isinstance(value, int) and not isinstance(value, bool):
            value, ok = float(value), True
        if not ok or (self.choices and value not in self.choices):
            raise InputError(f"params.{name}: expected {self.expected()}, got {value!r}")
        if self.minimum is not None and value < self.minimum:
            raise InputError(f"params.{name}: expected {self.expected()}, got {value!r}")
        if self.maximum is not None and value > self.maximum:
            raise InputError(f"params.{name}: expected {self.expected()}, got {value!r}")
        return value


@dataclass
class RunContext:
    """What a pipeline run gets besides its inputs: a scratch folder, the device, its models."""

    workdir: Path
    device: str
    loaded: Any = None
    cancel: threading.Event = field(default_factory=threading.Event)

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


@dataclass(frozen=True)
class Pipeline:
    name: str
    run: Callable[[dict[str, Path], dict[str, Any], Progress, RunContext], PipelineResult]
    params: Mapping[str, Param] | None = field(default_factory=dict)
    inputs: tuple[str, ...] = ()
    optional_inputs: tuple[str, ...] = ()
    models: Callable[[], tuple[ModelSpec, ...]] = tuple
    load: Callable[[dict[str, Path], str], Any] | None = None
    description: str = ""

    def validate_params(self, params: dict[str, Any]) -> dict[str, Any]:
        """Params with defaults filled in; ``InputError`` naming the first bad one."""
        if self.params is None:
            return dict(params)
        unknown = sorted(set(params) - set(self.params))
        if unknown:
            raise InputError(
                f"params.{unknown[0]}: pipeline {self.name} has no such parameter; it takes "
                f"{', '.join(sorted(self.params)) or 'none'}"
            )
        out = {}
        for name, spec in self.params.items():
            value = params.get(name)
            out[name] = spec.default if value is None else spec.coerce(name, value)
        return out


# name -> module path; modules are imported on first use so torch stays off the echo path.
_MODULES: dict[str, str] = {
    "echo": "gpu_worker.pipelines.echo",
    "video_enhance": "gpu_worker.pipelines.video_enhance",
    "sr_learned": "gpu_worker.pipelines.sr_learned",
}


def names() -> list[str]:
    return sorted(_MODULES)


def get(name: str) -> Pipeline:
    """Return the pipeline called ``name``; ``KeyError`` names the known ones."""
    if name not in _MODULES:
        raise KeyError(f"unknown pipeline {name!r}; known pipelines: {', '.join(names())}")
    return importlib.import_module(_MODULES[name]).PIPELINE
