"""``python -m bench chaos|endpoint|hostile|pipeline|spend|worker``: benchmarks that print JSON
figures."""

from __future__ import annotations

import importlib
import sys

SUITES = {
    "chaos": "bench.chaos",
    "endpoint": "bench.endpoint",
    "hostile": "bench.hostile",
    "pipeline": "bench.pipeline",
    "spend": "bench.spend",
    "worker": "bench.worker",
}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in SUITES:
        print(f"usage: python -m bench {{{'|'.join(SUITES)}}} [options]", file=sys.stderr)
        return 2
    return int(importlib.import_module(SUITES[argv[0]]).main(argv[1:]) or 0)


raise SystemExit(main(sys.argv[1:]))
