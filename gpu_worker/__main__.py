"""Entry point: ``python -u -m gpu_worker`` (Dockerfile.gpu's CMD, and the local endpoint's)."""

from __future__ import annotations

import gpu_worker.boot  # noqa: F401 - first: imports runpod without its 1.1 s CPU probe

# isort: split
import runpod

from gpu_worker.handler import handler


def main() -> None:
    runpod.serverless.start({"handler": handler})


if __name__ == "__main__":
    main()
