"""Pipeline registry: each pipeline is a module that registers itself by name."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Progress = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class Pipeline:
    name: str
    run: Callable[..., dict[str, Any]]
    params: dict[str, Any] = field(default_factory=dict)
    models: tuple = ()
    description: str = ""


# name -> module path; modules are imported on first use so torch stays off the echo path.
_MODULES: dict[str, str] = {
    "echo": "gpu_worker.pipelines.echo",
}


def names() -> list[str]:
    return sorted(_MODULES)


def get(name: str) -> Pipeline:
    """Return the pipeline called ``name``; ``KeyError`` names the known ones."""
    if name not in _MODULES:
        raise KeyError(f"unknown pipeline {name!r}; known pipelines: {', '.join(names())}")
    return importlib.import_module(_MODULES[name]).PIPELINE
