"""Runs first in every worker process, before ``runpod`` is imported (see ``__main__``).

1. ``import runpod`` costs about 1.4 s, 1.1 s of it in one call: ``rp_debugger`` runs
   py-cpuinfo's ``get_cpu_info()`` at import time (it starts a subprocess) only to keep
   ``["brand_raw"]`` in ``rp_debugger.PROCESSOR``, which ``--rp_debugger`` output shows.
   While runpod is imported here, ``get_cpu_info`` answers with the CPU model line of
   ``/proc/cpuinfo`` (the kernel fills it from the same CPUID brand string); the real
   function is put back straight after, so anything else still gets py-cpuinfo's answer.
   Where ``/proc/cpuinfo`` has no model line, nothing is changed.
2. While runpod is imported, ``paramiko`` (about 80 ms with ``invoke`` and ``cryptography``,
   a quarter of the SDK's import) is a stand-in that imports it on the first attribute read:
   the SDK uses it only in its ``runpod ssh`` command line, never in a serverless worker.
3. Under the local endpoint (``LOCAL_ENDPOINT_WORKER`` set), processes this worker forks
   (the SDK's heartbeat) die with it, so a killed endpoint leaves no process behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import os
import signal
import sys
import threading
import types
from collections.abc import Iterator

from gpu_worker.settings import Platform

PR_SET_PDEATHSIG = 1


def cpu_brand(path: str = "/proc/cpuinfo") -> str | None:
    """The ``model name`` line of ``/proc/cpuinfo`` (x86, most ARM servers), else None."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, sep, value = line.partition(":")
                if sep and key.strip() in ("model name", "Model Name") and value.strip():
                    return value.strip()
    except OSError:
        return None
    return None


class _Deferred(types.ModuleType):
    """Stands in for a module in the SDK's globals; imports it on the first attribute read."""

    def __getattr__(self, attr: str) -> object:  # only for attributes it does not have
        return getattr(importlib.import_module(self.__name__), attr)


@contextlib.contextmanager
def deferred(name: str) -> Iterator[None]:
    """While the block runs, ``import name`` gives a stand-in; afterwards it imports the
    real module again (``importlib.util.LazyLoader`` cannot do this on Python 3.11: the
    ``import`` statement reads the module's ``__spec__``, which loads it)."""
    if name in sys.modules or importlib.util.find_spec(name) is None:
        yield
        return
    sys.modules[name] = _Deferred(name)
    try:
        yield
    finally:
        if isinstance(sys.modules.get(name), _Deferred):
            del sys.modules[name]


def import_runpod_without_cpu_probe() -> bool:
    """Import runpod with the cheap stand-in and paramiko deferred; True if the stand-in
    was used."""
    if "runpod" in sys.modules:
        return False
    with deferred("paramiko"):
        brand = cpu_brand()
        if brand is None:
            import runpod  # noqa: F401

            return False
        import cpuinfo

        real = cpuinfo.get_cpu_info
        cpuinfo.get_cpu_info = lambda: {"brand_raw": brand}
        try:
            import runpod  # noqa: F401
        finally:
            cpuinfo.get_cpu_info = real
    return True


_forked_from_main_thread = False


def _before_fork() -> None:
    global _forked_from_main_thread
    _forked_from_main_thread = threading.current_thread() is threading.main_thread()


def _die_with_parent() -> None:
    # PR_SET_PDEATHSIG fires when the forking *thread* exits: only tie children forked
    # from the main thread, whose end is the process's end.
    if not _forked_from_main_thread:
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def tie_children_to_this_process() -> None:
    if Platform.from_env().local_endpoint_worker and sys.platform.startswith("linux"):
        os.register_at_fork(before=_before_fork, after_in_child=_die_with_parent)


tie_children_to_this_process()
STAND_IN_USED = import_runpod_without_cpu_probe()
