"""The worker's configuration, read from the environment here and nowhere else.

``WorkerSettings`` holds the knobs; ``Platform`` the facts the worker reads from its
surroundings (whether it runs on RunPod or under the local endpoint, the hub's address and
token, Sentry's labels). The runpod SDK's own variables (``RUNPOD_LOG_LEVEL``) stay the SDK's.

A bad value never stops the process (that would crash-loop the worker in silence): it is
reported as the error of every job instead, see ``gpu_worker.handler``.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field, fields
from pathlib import Path

from gpu_worker.memory import default_ceiling
from gpu_worker.redaction import is_secret_name

# Base64 grows a file by a third and RunPod warns above 20 MB of result: past this, upload.
INLINE_OUTPUT_CEILING = 10 * 1024 * 1024


class SettingsError(ValueError):
    """An environment variable holds a value the worker cannot use."""


def _int(name: str, default: int, minimum: int = 0, maximum: int | None = None) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not an integer") from None
    if value < minimum:
        raise SettingsError(f"{name}={value} must be at least {minimum}")
    if maximum is not None and value > maximum:
        raise SettingsError(f"{name}={value} must be at most {maximum}")
    return value


def _float(name: str, default: float, minimum: float = 0.0) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number") from None
    if value < minimum:
        raise SettingsError(f"{name}={value} must be at least {minimum}")
    return value


def _default_model_dir() -> str:
    # On RunPod Serverless the network volume is mounted at /runpod-volume (never /workspace).
    if Path("/runpod-volume").is_dir():
        return "/runpod-volume/models"
    return str(Path.home() / ".cache" / "gpu_worker" / "models")


@dataclass(frozen=True)
class Platform:
    """Where the worker runs and what it may reach; never refuses a value."""

    runpod_endpoint_id: str = ""
    runpod_pod_id: str = ""
    # Set by the runpod SDK's job loop when it polls an endpoint (not in one-shot local mode).
    runpod_webhook_get_job: str = ""
    # Set by the local endpoint (deploy/local) for the workers it starts.
    local_endpoint_worker: str = ""
    hf_endpoint: str = ""
    hf_token: str = field(default="", repr=False)
    hf_home: str = ""
    sentry_environment: str = "gpu-worker"
    sentry_release: str = ""

    @classmethod
    def from_env(cls) -> Platform:
        env = os.environ
        return cls(
            runpod_endpoint_id=env.get("RUNPOD_ENDPOINT_ID", ""),
            runpod_pod_id=env.get("RUNPOD_POD_ID", ""),
            runpod_webhook_get_job=env.get("RUNPOD_WEBHOOK_GET_JOB", ""),
            local_endpoint_worker=env.get("LOCAL_ENDPOINT_WORKER", ""),
            hf_endpoint=env.get("HF_ENDPOINT", ""),
            hf_token=env.get("HF_TOKEN") or env.get("HUGGING_FACE_HUB_TOKEN") or "",
            hf_home=env.get("HF_HOME", ""),
            sentry_environment=env.get("SENTRY_ENVIRONMENT", "gpu-worker"),
            sentry_release=env.get("SENTRY_RELEASE", ""),
        )

    @property
    def on_runpod_serverless(self) -> bool:
        """True in a RunPod Serverless worker (not under the local endpoint)."""
        if self.local_endpoint_worker:
            return False
        return bool(self.runpod_endpoint_id or self.runpod_pod_id)


@dataclass(frozen=True)
class WorkerSettings:
    """Every knob the worker has, with its default. Sizes are bytes, times seconds."""

    model_dir: Path
    work_dir: Path
    max_input_bytes: int = 4 * 1024**3
    inline_output_max_bytes: int = 256 * 1024
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 60.0
    transfer_attempts: int = 4
    retry_backoff_s: float = 1.0
    # Transfers and the claim ride out an app outage this long (inside the execution timeout).
    transfer_deadline_s: float = 300.0
    model_space_margin: float = 1.1
    model_wait_s: float = 3600.0
    progress_interval_s: float = 1.0
    preload_pipelines: tuple[str, ...] = ()
    device: str = "auto"
    # The process's memory ceiling (gpu_worker.memory); 0: 80 % of the RAM or container limit.
    memory_limit_bytes: int = 0
    sentry_dsn: str = ""
    platform: Platform = field(default_factory=Platform)

    @classmethod
    def from_env(cls) -> WorkerSettings:
        preload = os.environ.get("PRELOAD_PIPELINES", "")
        return cls(
            model_dir=Path(os.environ.get("MODEL_DIR") or _default_model_dir()),
            work_dir=Path(os.environ.get("WORK_DIR") or tempfile.gettempdir()),
            max_input_bytes=_int("MAX_INPUT_BYTES", cls.max_input_bytes, 1),
            inline_output_max_bytes=_int(
                "INLINE_OUTPUT_MAX_BYTES", cls.inline_output_max_bytes, 0, INLINE_OUTPUT_CEILING
            ),
            connect_timeout_s=_float("DOWNLOAD_CONNECT_TIMEOUT_S", cls.connect_timeout_s, 0.1),
            read_timeout_s=_float("DOWNLOAD_READ_TIMEOUT_S", cls.read_timeout_s, 0.1),
            transfer_attempts=_int("TRANSFER_ATTEMPTS", cls.transfer_attempts, 1),
            retry_backoff_s=_float("TRANSFER_BACKOFF_S", cls.retry_backoff_s),
            transfer_deadline_s=_float("TRANSFER_DEADLINE_S", cls.transfer_deadline_s),
            model_space_margin=_float("MODEL_SPACE_MARGIN", cls.model_space_margin, 1.0),
            model_wait_s=_float("MODEL_WAIT_S", cls.model_wait_s, 1.0),
            progress_interval_s=_float("PROGRESS_INTERVAL_S", cls.progress_interval_s),
            preload_pipelines=tuple(p.strip() for p in preload.split(",") if p.strip()),
            device=os.environ.get("TORCH_DEVICE", "auto").strip() or "auto",
            memory_limit_bytes=_int("MEMORY_LIMIT_BYTES", cls.memory_limit_bytes, 0),
            sentry_dsn=os.environ.get("SENTRY_DSN", "").strip(),
            platform=Platform.from_env(),
        )

    def memory_ceiling(self) -> int:
        """``memory_limit_bytes``, or the default share of what this host lets us use."""
        return self.memory_limit_bytes or default_ceiling()

    def describe(self) -> dict[str, str]:
        """The settings as strings for the start-up log line, secrets (the Sentry DSN) shown
        as set or unset."""
        out = {}
        for f in fields(self):
            if f.name == "platform":
                continue
            value = getattr(self, f.name)
            if is_secret_name(f.name):
                out[f.name] = "set" if value else "unset"
            else:
                out[f.name] = str(value)
        return out
