"""Errors whose message is shown to the person who submitted the job.

Each says which part of the input or setup is wrong and what to do about it; tracebacks go
to the log and Sentry, never into these messages.
"""

from __future__ import annotations

import re

# "[Errno 1094995529] " and quoted absolute paths in library messages (FFmpeg, OSError).
_ERRNO = re.compile(r"\[Errno -?\d+\]\s*")
_PATH = re.compile(r"'/[^']*'|\"/[^\"]*\"|(?<![\w.:/])/(?:tmp|var|runpod-volume|opt|home)/\S+")


def public(text: str) -> str:
    """A message fit for people: no errno numbers and no file-system paths (those stay in
    the worker's log, where the whole exception is written)."""
    return _PATH.sub("a job file", _ERRNO.sub("", text)).strip()


class JobError(Exception):
    """A job cannot complete; ``str(err)`` is the message the job's FAILED status carries."""

    refresh_worker = False
    # Machine-readable cause for the app (``error_kind`` in the result), when it can act.
    kind: str | None = None


class InputError(JobError):
    """Something in ``job.input`` is missing or wrong (the message names the field)."""


class TransferError(JobError):
    """An input could not be downloaded or the output could not be uploaded."""


class StorageUnreachable(TransferError):
    """The app's storage did not answer (refused, reset, 5xx) until the transfer deadline:
    the input and the job are fine, so the app starts one new attempt by itself."""

    kind = "storage_unreachable"


class AppUnreachable(TransferError):
    """The app did not answer the claim until the deadline; the job was not run, so that it
    cannot run twice, and the app starts one new attempt by itself."""

    kind = "app_unreachable"


class ModelLoadError(JobError):
    """The pipeline's models could not be downloaded or loaded; the worker should be replaced."""

    refresh_worker = True
    kind = "model_unavailable"  # the app marks the pipeline unavailable on its form


class WorkerConfigError(JobError):
    """The worker's environment is wrong (a bad setting); replacing the worker will not help."""


class JobCancelled(JobError):
    """The job was cancelled (or timed out) while the pipeline ran; it stopped at a batch."""
