"""The worker process's memory ceiling (``MEMORY_LIMIT_BYTES``): a job that would need more
fails with a message saying so, instead of the kernel's out-of-memory kill taking the worker
(and the paid GPU time) with it.

Two mechanisms, because one does not fit both kinds of host:

- ``RLIMIT_DATA`` (the kernel refuses private writable memory past the ceiling, so the
  allocation raises ``MemoryError`` and the job fails cleanly) where no CUDA device can be in
  play: ``TORCH_DEVICE=cpu``, or ``auto`` on a host without the NVIDIA driver. Not
  ``RLIMIT_AS``: it counts address space that is only reserved, and CUDA reserves tens of
  GiB of it at initialisation, so every CUDA job would fail. Nor ``RLIMIT_DATA`` where CUDA
  may run: the driver and the caching allocator make host-side mappings of their own, whose
  size the worker does not control, and a refusal there would fail CUDA's start rather than
  the one oversized job (not tried on a GPU: this repository's checks run without one).
- Everywhere, a watchdog thread that reads the process's resident size (``/proc/self/statm``)
  every ``INTERVAL_S`` while a job runs and, past the ceiling, cancels the job: the pipeline
  stops at its next batch. Decoding holds every frame to its pipeline's ``FrameLimit`` and
  batches to ``batch_pixels``, so nothing grows by more than a batch between two looks.

Both are cgroup-free: no privileges, no container runtime support needed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import threading
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger("gpu_worker.memory")

# The default ceiling's share of the memory the process may use (RAM, or the container's limit).
DEFAULT_SHARE = 0.8
INTERVAL_S = 0.05
_CGROUP_FILES = (
    Path("/sys/fs/cgroup/memory.max"),  # cgroup v2
    Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"),  # cgroup v1
)
_NVIDIA = (Path("/proc/driver/nvidia"), Path("/dev/nvidiactl"))


def physical_memory() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def container_limit() -> int | None:
    """The container's memory limit, when one is set (RunPod sets one per worker)."""
    for path in _CGROUP_FILES:
        with contextlib.suppress(OSError, ValueError):
            text = path.read_text().strip()
            if text and text != "max":
                value = int(text)
                if value < 1 << 60:  # cgroup v1 writes "no limit" as a huge number
                    return value
    return None


def default_ceiling() -> int:
    """``DEFAULT_SHARE`` of what the process may use: the room left is for the runtime,
    the SDK's heartbeat process and the page cache."""
    available = physical_memory()
    limit = container_limit()
    if limit is not None:
        available = min(available, limit)
    return int(available * DEFAULT_SHARE)


def rss_bytes() -> int:
    """This process's resident memory now."""
    with open("/proc/self/statm", encoding="ascii") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def cuda_possible(device_setting: str) -> bool:
    """Whether jobs may run on CUDA, told without importing torch."""
    if device_setting == "cpu":
        return False
    if device_setting.startswith("cuda"):
        return True
    return any(path.exists() for path in _NVIDIA)


def set_data_limit(ceiling: int, device_setting: str) -> bool:
    """Set ``RLIMIT_DATA`` to ``ceiling`` where CUDA cannot be in play; True if set."""
    if cuda_possible(device_setting):
        log.info("memory ceiling %s: watched (CUDA may run here), not an rlimit", gib(ceiling))
        return False
    _, hard = resource.getrlimit(resource.RLIMIT_DATA)
    if hard != resource.RLIM_INFINITY and hard < ceiling:
        ceiling = hard
    resource.setrlimit(resource.RLIMIT_DATA, (ceiling, hard))
    log.info("memory ceiling %s: RLIMIT_DATA", gib(ceiling))
    return True


def gib(n: int) -> str:
    """``n`` bytes in GiB, or MiB under one GiB."""
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


class Watchdog:
    """Cancels the running job when the process's resident memory passes ``ceiling``."""

    def __init__(self, ceiling: int, cancel: threading.Event) -> None:
        self.ceiling = ceiling
        self.cancel = cancel
        self.tripped_at = 0
        self._done = threading.Event()

    def check(self) -> bool:
        """Look once; past the ceiling, cancel the job. True when it has tripped."""
        if not self.tripped_at:
            rss = rss_bytes()
            if rss > self.ceiling:
                self.tripped_at = rss
                log.error("job over the memory ceiling (%s of %s)", gib(rss), gib(self.ceiling))
                self.cancel.set()
        return self.tripped

    def _watch(self) -> None:
        while not self._done.wait(INTERVAL_S):
            if self.check():
                return

    @property
    def tripped(self) -> bool:
        return bool(self.tripped_at)


@contextlib.contextmanager
def watched(ceiling: int, cancel: threading.Event) -> Iterator[Watchdog]:
    """Watch the process's memory for the duration of a job."""
    dog = Watchdog(ceiling, cancel)
    dog.check()  # a worker already past the ceiling runs nothing more
    thread = threading.Thread(target=dog._watch, name="memory-watchdog", daemon=True)
    thread.start()
    try:
        yield dog
    finally:
        dog._done.set()
        thread.join()


def over_ceiling_message(ceiling: int) -> str:
    """The job's error when it needed more memory than the worker may use."""
    return (
        f"the job needed more memory than this worker's {gib(ceiling)} ceiling "
        "(MEMORY_LIMIT_BYTES); send a smaller input or lower params.batch_size"
    )


def out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is an allocation the ceiling refused: Python's and numpy's
    ``MemoryError``, PyAV's ENOMEM, torch's CPU allocator."""
    return isinstance(exc, MemoryError) or "can't allocate memory" in str(exc)
