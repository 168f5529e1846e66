"""Entry point: ``python -u -m gpu_worker`` (Dockerfile.gpu's CMD, and the local endpoint's).

The runpod job loop starts at once; models load in a background thread (``PRELOAD_PIPELINES``),
so a slow or failing download shows up in job statuses instead of a silent crash loop.
"""

from __future__ import annotations

import gpu_worker.boot  # noqa: F401 - first: imports runpod without its 1.1 s CPU probe

# isort: split
import logging
import os

import runpod
from runpod.serverless.modules.rp_logger import RunPodLogger

from gpu_worker import scaling
from gpu_worker.errors import JobError
from gpu_worker.handler import handler, remove_stale_job_dirs, runtime
from gpu_worker.memory import set_data_limit
from gpu_worker.model_cache import placement_warnings
from gpu_worker.observability import capture_message, init_sentry

log = logging.getLogger("gpu_worker")


def prepare() -> None:
    """Everything before the job loop; never raises (a raise here would crash-loop)."""
    if not (os.environ.get("RUNPOD_LOG_LEVEL") or os.environ.get("RUNPOD_DEBUG_LEVEL")):
        # The SDK's default, DEBUG, prints every handler output (inline results included).
        RunPodLogger().level = "INFO"
    # force: importing runpod already configured the root logger, without level names.
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True
    )
    try:
        rt = runtime()
    except JobError as exc:  # reported again as every job's error by the handler
        log.error("%s; every job will fail with this message", exc)
        return
    log.info("worker settings: %s", rt.settings.describe())
    try:
        set_data_limit(rt.settings.memory_ceiling(), rt.settings.device)
    except (OSError, ValueError):
        log.exception("the memory ceiling could not be set; jobs are still watched")
    try:
        init_sentry(rt.settings.sentry_dsn)
    except Exception:
        log.exception("Sentry could not be initialised; continuing without it")
    for warning in placement_warnings(rt.settings.model_dir, rt.settings.platform.hf_home or None):
        log.error("!" * 20 + " %s", warning)
        capture_message(warning)
    removed = remove_stale_job_dirs(rt.settings.work_dir)
    if removed:
        log.info("removed %d job folders left by dead workers", removed)
    rt.loader.start(rt.settings.preload_pipelines)


def main() -> None:
    prepare()
    scaling.install()  # take the next job as soon as the slot frees (gpu_worker/scaling.py)
    runpod.serverless.start({"handler": handler})


if __name__ == "__main__":
    main()
