"""The runpod handler: checks the job input, runs the named pipeline, delivers the output.

Input (``job["input"]``)::

    {"pipeline": NAME, "params": {...}, "inputs": {"<name>": "<http(s) URL>"},
     "output": {"put_url": URL, "content_type": CT} | {"inline": true}, "job_key": "<app id>",
     "callbacks": {"claim": URL, "progress": URL}}   (callbacks and each of its URLs optional)

Output::

    {"pipeline", "job_key",
     "output": {"url", "inline_b64", "content_type", "size"},
     "result": {...the pipeline's JSON...},
     "metrics": {"download_s", "model_load_s", "inference_s", "upload_s", "frames"|"items"}}

A job that cannot complete returns ``{"error": "<what to do>"}`` (runpod marks it FAILED);
when the models failed to load it also returns ``refresh_worker: True``. Tracebacks go to the
log and Sentry only. Nothing here imports torch: pipelines do, when they run.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from gpu_worker import job_input, ledger, memory, pipelines
from gpu_worker.errors import (
    InputError,
    JobCancelled,
    JobError,
    TransferError,
    WorkerConfigError,
    public,
)
from gpu_worker.liveness import pid_alive
from gpu_worker.loader import ModelLoader
from gpu_worker.model_cache import ModelCache
from gpu_worker.observability import capture
from gpu_worker.progress import ProgressSender
from gpu_worker.redaction import redact_url
from gpu_worker.settings import Platform, SettingsError, WorkerSettings
from gpu_worker.transfer import (
    TransferPolicy,
    claim,
    download,
    human_bytes,
    upload,
)

log = logging.getLogger("gpu_worker")

JOB_DIR_PREFIX = "gpu-job-"


class Runtime:
    """The process's settings, model cache and background model loader."""

    def __init__(self, settings: WorkerSettings) -> None:
        self.settings = settings
        self.policy = TransferPolicy(
            connect_timeout_s=settings.connect_timeout_s,
            read_timeout_s=settings.read_timeout_s,
            attempts=settings.transfer_attempts,
            backoff_s=settings.retry_backoff_s,
            deadline_s=settings.transfer_deadline_s,
        )
        self.cache = ModelCache(
            settings.model_dir, margin=settings.model_space_margin, policy=self.policy
        )
        self.loader = ModelLoader(self.cache, settings.device)


_runtime: Runtime | None = None
_runtime_lock = threading.Lock()


def runtime() -> Runtime:
    """The process-wide runtime; ``WorkerConfigError`` when a setting is invalid."""
    global _runtime
    with _runtime_lock:
        if _runtime is None:
            try:
                _runtime = Runtime(WorkerSettings.from_env())
            except SettingsError as exc:
                raise WorkerConfigError(f"worker misconfigured: {exc}") from None
        return _runtime


def reset_runtime() -> None:
    """Forget the runtime (tests change the environment between jobs)."""
    global _runtime
    with _runtime_lock:
        _runtime = None


class _Reporter:
    """Sends progress to the endpoint (throttled), or logs it in one-shot local mode; and to
    the app's progress callback when the input names one (``gpu_worker.progress``)."""

    def __init__(
        self, job: dict[str, Any], interval: float, progress_url: str | None = None
    ) -> None:
        self.job = job
        self.interval = interval
        self._last = 0.0
        self._remote = bool(job.get("id")) and bool(Platform.from_env().runpod_webhook_get_job)
        self._app = ProgressSender(progress_url, job.get("id")) if progress_url else None

    def __call__(self, update: dict[str, Any], force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < self.interval:
            return
        self._last = now
        if self._app is not None:
            self._app.send(update)
        if not self._remote:
            log.info("progress: %s", update)
            return
        import runpod

        runpod.serverless.progress_update(self.job, update)

    def message(self, phase: str, message: str) -> None:
        self({"phase": phase, "message": message}, force=True)

    def close(self) -> None:
        if self._app is not None:
            self._app.close()


def run_job(job: dict[str, Any], cancel: threading.Event | None = None) -> dict[str, Any]:
    """Run one job synchronously and return the handler's result dict."""
    started = time.monotonic()
    try:
        rt = runtime()
        spec = job_input.parse(job.get("input"))
    except JobError as exc:
        log.warning("job %s rejected: %s", job.get("id"), exc)
        return {"error": str(exc)}
    refused = _claim(job, spec, rt)
    if refused is not None:
        return refused
    reporter = _Reporter(job, rt.settings.progress_interval_s, spec.callbacks.get("progress"))
    # Tells the app at once that a worker has the job: its page says "running" from now on.
    reporter.message("starting", "a GPU worker took the job")
    metrics: dict[str, Any] = {}
    workdir = _make_workdir(rt.settings.work_dir)
    cancel = cancel or threading.Event()
    ceiling = rt.settings.memory_ceiling()
    try:
        with memory.watched(ceiling, cancel) as watchdog:
            outcome, delivered = _execute(job, spec, rt, reporter, workdir, cancel, metrics)
    except JobError as exc:
        if isinstance(exc, JobCancelled) and watchdog.tripped:
            exc = JobError(memory.over_ceiling_message(ceiling))
        return _failed(job, exc)
    except Exception as exc:  # noqa: BLE001 - a pipeline bug: _crashed logs its traceback
        return _crashed(job, spec.pipeline.name, exc, ceiling)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        reporter.close()
    return _succeeded(spec, outcome, delivered, metrics, started)


def _make_workdir(work_dir: Path) -> Path:
    """The job's own scratch folder, named so a sweep can tell which process made it."""
    work_dir.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{JOB_DIR_PREFIX}{os.getpid()}-", dir=work_dir))


def _execute(
    job: dict[str, Any],
    spec: job_input.JobInput,
    rt: Runtime,
    reporter: _Reporter,
    workdir: Path,
    cancel: threading.Event,
    metrics: dict[str, Any],
) -> tuple[pipelines.PipelineResult, dict]:
    """Load the model, fetch the inputs, run the pipeline and deliver its output, timing each
    step into ``metrics``. Returns the outcome and what was delivered."""
    pipeline = spec.pipeline
    loaded, metrics["model_load_s"] = rt.loader.wait(
        pipeline.name,
        report=lambda text: reporter.message("loading model", text),
        timeout=rt.settings.model_wait_s,
        interval=min(1.0, rt.settings.progress_interval_s or 1.0),
    )
    paths, metrics["download_s"] = _download_inputs(spec.inputs, workdir, rt, reporter)
    ctx = pipelines.RunContext(
        workdir=workdir,
        device=rt.settings.device,
        loaded=loaded,
        cancel=cancel,
        frame_limit=pipeline.limit(),
    )
    outcome = _run_pipeline(job, spec, rt, reporter, paths, ctx, metrics)
    t0 = time.monotonic()
    delivered = _deliver(outcome, spec.output, rt)
    metrics["upload_s"] = time.monotonic() - t0
    return outcome, delivered


def _run_pipeline(
    job: dict[str, Any],
    spec: job_input.JobInput,
    rt: Runtime,
    reporter: _Reporter,
    paths: dict[str, Path],
    ctx: pipelines.RunContext,
    metrics: dict[str, Any],
) -> pipelines.PipelineResult:
    """The pipeline's run between the ledger's start and finish, its time and counts in
    ``metrics``."""
    t0 = time.monotonic()
    ledger.record(rt.settings.execution_ledger, "start", job, spec)
    outcome = spec.pipeline.run(paths, spec.params, reporter, ctx)
    ledger.record(rt.settings.execution_ledger, "finish", job, spec)
    metrics["inference_s"] = time.monotonic() - t0
    if outcome.frames is not None:
        metrics["frames"] = outcome.frames
    if outcome.items is not None:
        metrics["items"] = outcome.items
    return outcome


def _failed(job: dict[str, Any], exc: JobError) -> dict[str, Any]:
    """The result of a job that failed for a reason its submitter can act on."""
    log.warning("job %s failed: %s", job.get("id"), exc)
    failed: dict[str, Any] = {"error": str(exc)}
    if exc.kind:
        failed["error_kind"] = exc.kind
    if exc.refresh_worker:
        failed["refresh_worker"] = True
    return failed


def _crashed(job: dict[str, Any], name: str, exc: Exception, ceiling: int) -> dict[str, Any]:
    """The result of a pipeline that raised something unexpected: out of memory reads as
    the memory ceiling; anything else is logged with its traceback and reported."""
    if memory.out_of_memory(exc):
        log.warning("job %s: over the memory ceiling: %r", job.get("id"), exc)
        return {"error": memory.over_ceiling_message(ceiling)}
    log.exception("job %s: pipeline %s crashed", job.get("id"), name)
    capture(exc, pipeline=name)
    return {"error": f"pipeline {name} failed: {_describe_crash(exc)}"}


def _succeeded(
    spec: job_input.JobInput,
    outcome: pipelines.PipelineResult,
    delivered: dict,
    metrics: dict[str, Any],
    started: float,
) -> dict[str, Any]:
    metrics = {k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()}
    metrics["total_s"] = round(time.monotonic() - started, 4)
    body = {
        "pipeline": spec.pipeline.name,
        "job_key": spec.job_key,
        "output": delivered,
        "result": outcome.result,
        "metrics": metrics,
    }
    if spec.pipeline.name == "echo":
        # echo's original shape ({"echo", "inputs"} at the top) stays for existing callers.
        body = {**outcome.result, **body}
    return body


def _claim(job: dict[str, Any], spec: job_input.JobInput, rt: Runtime) -> dict[str, Any] | None:
    """Claim the attempt with the app before running (``callbacks.claim``), so a second
    RunPod job for the same attempt ends here without running. None: go ahead."""
    url = spec.callbacks.get("claim")
    runpod_id = job.get("id")
    if not url or not runpod_id:
        return None  # not from the app (another client, or one-shot local mode)
    try:
        status, message = claim(url, str(runpod_id), policy=rt.policy)
    except JobError as exc:
        log.warning("job %s: claim failed: %s", runpod_id, exc)
        failed: dict[str, Any] = {"error": str(exc)}
        if exc.kind:
            failed["error_kind"] = exc.kind
        return failed
    if status == 200:
        return None
    verdict = "duplicate" if status == 409 else "superseded"
    log.warning("job %s: not run, the app answered %s: %s", runpod_id, verdict, message)
    return {
        "error": f"not run: the app says this job is {verdict} ({message})",
        "error_kind": verdict,
    }


def _download_inputs(
    inputs: dict[str, str], workdir: Path, rt: Runtime, reporter: _Reporter
) -> tuple[dict[str, Path], float]:
    t0 = time.monotonic()
    paths: dict[str, Path] = {}
    for name, url in inputs.items():
        dest = workdir / "inputs" / name

        def on_bytes(got: int, total: int | None, name: str = name) -> None:
            text = f"downloading input {name}: {human_bytes(got)}"
            if total:
                text += f" of {human_bytes(total)}"
            reporter({"phase": "downloading input", "message": text})

        download(
            url,
            dest,
            field=f"inputs.{name}",
            max_bytes=rt.settings.max_input_bytes,
            policy=rt.policy,
            progress=on_bytes,
        )
        paths[name] = dest
    return paths, time.monotonic() - t0


def _deliver(outcome: pipelines.PipelineResult, output: dict[str, Any], rt: Runtime) -> dict:
    if outcome.output_file is None:
        return {"url": None, "inline_b64": None, "content_type": None, "size": 0}
    size = outcome.output_file.stat().st_size
    if "put_url" in output:
        ctype = output.get("content_type") or outcome.content_type
        upload(outcome.output_file, output["put_url"], content_type=ctype, policy=rt.policy)
        return {
            "url": redact_url(output["put_url"]),
            "inline_b64": None,
            "content_type": ctype,
            "size": size,
        }
    limit = rt.settings.inline_output_max_bytes
    if size > limit:
        raise TransferError(
            f"output: the result is {size} bytes, over the {limit}-byte limit for inline output; "
            "give output.put_url (a presigned PUT URL) or raise INLINE_OUTPUT_MAX_BYTES"
        )
    data = base64.b64encode(outcome.output_file.read_bytes()).decode("ascii")
    return {"url": None, "inline_b64": data, "content_type": outcome.content_type, "size": size}


def _describe_crash(exc: BaseException) -> str:
    name = type(exc).__name__
    if name == "OutOfMemoryError":
        return "the GPU ran out of memory; lower params.batch_size or use a GPU with more memory"
    text = public(str(exc).splitlines()[0][:300]) if str(exc) else ""
    return f"{name}: {text}" if text else name


async def handler(job: dict[str, Any]) -> dict[str, Any]:
    """The runpod handler. The job runs in a thread so the SDK's loop keeps serving
    heartbeats and stop signals; a cancelled job sets ``ctx.cancel`` for the pipeline."""
    cancel = threading.Event()
    try:
        return await asyncio.to_thread(run_job, job, cancel)
    except asyncio.CancelledError:
        cancel.set()
        raise


def remove_stale_job_dirs(work_dir: Path) -> int:
    """Delete job folders left by worker processes that died mid-job; return how many."""
    removed = 0
    try:
        entries = list(work_dir.glob(f"{JOB_DIR_PREFIX}*"))
    except OSError:
        return 0
    for entry in entries:
        pid_text = entry.name[len(JOB_DIR_PREFIX) :].split("-", 1)[0]
        if not pid_text.isdigit() or pid_alive(int(pid_text)):
            continue
        shutil.rmtree(entry, ignore_errors=True)
        removed += 1
    return removed


__all__ = ["handler", "run_job", "InputError"]
