"""Entry point: ``python -u -m gpu_worker`` (Dockerfile.gpu's CMD, and the local endpoint's)."""

from __future__ import annotations

import runpod

from gpu_worker.handler import handler


def main() -> None:
    runpod.serverless.start({"handler": handler})


if __name__ == "__main__":
    main()
