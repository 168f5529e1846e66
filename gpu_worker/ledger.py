"""The execution ledger: one line per model start and finish, for the chaos benchmark.

``python -m bench chaos`` counts executions from the worker's side (a model run twice for
one attempt is GPU time paid twice, whatever the endpoint's records say). When
``EXECUTION_LEDGER`` names a file, the handler appends ``{"event": "start"|"finish",
"job_key", "attempt", "runpod_id", "pid", "t"}`` to it around each model run; unset (as in
production), ``record`` returns at once.

Lines are written with one ``write`` on an ``O_APPEND`` descriptor, so lines from several
worker processes never interleave; no fsync: a worker killed by the bench loses nothing the
kernel already has.
"""

from __future__ import annotations

import json
import os
import re
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gpu_worker.job_input import JobInput

# The app's claim URL names the attempt: .../callbacks/<attempt id>/claim?...
_ATTEMPT = re.compile(r"/callbacks/(\d+)/claim")


def record(path: str, event: str, job: dict[str, Any], spec: JobInput) -> None:
    """Append one ``event`` line for ``job`` (its parsed input ``spec``) to ``path``, if set."""
    if not path:
        return
    found = _ATTEMPT.search(spec.callbacks.get("claim") or "")
    line = {
        "event": event,
        "job_key": spec.job_key,
        "attempt": int(found.group(1)) if found else None,
        "runpod_id": job.get("id"),
        "pid": os.getpid(),
        "t": time.time(),
    }
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (json.dumps(line) + "\n").encode())
    finally:
        os.close(fd)
