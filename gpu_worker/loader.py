"""Loads pipelines' models in a background thread, so the runpod job loop starts at once.

Jobs for a pipeline whose models are still loading wait here and report what is happening
("downloading model org/name: 3.2 of 28.0 GB"). A failed load is kept: every later job for
that pipeline fails at once with the loading error and asks for the worker to be replaced,
so the cause shows in the job's status rather than in a crash loop nobody sees.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpu_worker import pipelines
from gpu_worker.device import torch_device
from gpu_worker.errors import JobError, ModelLoadError, WorkerConfigError, public
from gpu_worker.model_cache import DownloadProgress, ModelCache

log = logging.getLogger("gpu_worker.loader")


@dataclass
class _State:
    status: str = "loading"  # loading | ready | failed
    phase: str = "starting"
    loaded: Any = None
    error: ModelLoadError | WorkerConfigError | None = None
    seconds: float = 0.0
    done: threading.Event = field(default_factory=threading.Event)


def loading_phase(name: str, has_weights: bool, device: str) -> str:
    """What a job waiting for ``name``'s ``load`` reads: weights only when there are some."""
    if has_weights:
        return f"loading {name}'s weights onto {device}"
    return f"preparing {name} on {device}"


class ModelLoader:
    """One per process: loads each pipeline's models once, in a background thread."""

    def __init__(self, cache: ModelCache, device: str) -> None:
        self.cache = cache
        self.device = device
        self._states: dict[str, _State] = {}
        self._lock = threading.Lock()

    def start(self, names: list[str] | tuple[str, ...]) -> None:
        """Begin loading ``names`` in the background (the worker's PRELOAD_PIPELINES)."""
        for name in names:
            if name not in pipelines.names():
                log.error(
                    "PRELOAD_PIPELINES: unknown pipeline %r (known: %s); not preloaded",
                    name,
                    ", ".join(pipelines.names()),
                )
                continue
            self._begin(name)

    def _begin(self, name: str) -> _State:
        with self._lock:
            state = self._states.get(name)
            if state is not None:
                return state
            state = self._states[name] = _State()
        pipeline = pipelines.get(name)
        if not pipeline.models() and pipeline.load is None:
            state.status = "ready"
            state.done.set()
            return state
        thread = threading.Thread(
            target=self._load, args=(name, state), name=f"load-{name}", daemon=True
        )
        thread.start()
        return state

    def _load(self, name: str, state: _State) -> None:
        started = time.monotonic()
        pipeline = pipelines.get(name)

        def on_progress(progress: DownloadProgress) -> None:
            state.phase = progress.describe()

        try:
            dirs: dict[str, Path] = {}
            for spec in pipeline.models():
                state.phase = f"checking model {spec.repo_id}@{spec.revision}"
                dirs[spec.repo_id] = self.cache.ensure(spec, on_progress)
            if pipeline.load is not None:
                state.phase = loading_phase(name, bool(dirs), torch_device(self.device))
                state.loaded = pipeline.load(dirs, self.device)
            state.status = "ready"
            log.info("pipeline %s ready after %.1f s", name, time.monotonic() - started)
        except Exception as exc:  # any failure must reach the jobs, not kill the thread silently
            if isinstance(exc, JobError):
                message = str(exc)
            else:
                message = public(f"{type(exc).__name__}: {exc}")
            if isinstance(exc, WorkerConfigError):
                # A bad setting: a fresh worker would fail the same way, so none is asked for.
                state.error = WorkerConfigError(f"pipeline {name}: {message}")
            else:
                state.error = ModelLoadError(f"pipeline {name}: model loading failed: {message}")
            state.status = "failed"
            log.exception("pipeline %s: model loading failed", name)
            from gpu_worker.observability import capture

            capture(exc)
        finally:
            state.seconds = time.monotonic() - started
            state.done.set()

    def wait(
        self,
        name: str,
        report: Callable[[str], None] | None = None,
        timeout: float = 3600.0,
        interval: float = 1.0,
    ) -> tuple[Any, float]:
        """Block until ``name``'s models are loaded; return (loaded, seconds waited here)."""
        started = time.monotonic()
        state = self._begin(name)
        last = ""
        while not state.done.wait(timeout=interval):
            if report and state.phase != last:
                last = state.phase
                report(state.phase)
            if time.monotonic() - started > timeout:
                raise ModelLoadError(
                    f"pipeline {name}: models still not loaded after {timeout:g} s "
                    f"({state.phase}); raise MODEL_WAIT_S or use a volume that already "
                    "holds the model"
                )
        if state.error is not None:
            raise state.error
        return state.loaded, time.monotonic() - started
