"""Readable tables on stdout, progress on stderr, ``--json`` for scripts, and scrubbing.

Whatever is printed passes through ``scrub``, the image's one redactor (``deploy.redaction``):
the RunPod API key, the HF token and every other secret-looking value from the environment
are replaced by ``***`` wherever they might appear, as a last line of defence.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

from deploy.redaction import redact

OK, FINDINGS, USAGE = 0, 1, 2


def scrub(text: str) -> str:
    return redact(text, mark="***")


def out(text: str = "") -> None:
    print(scrub(text), file=sys.stdout, flush=True)


def err(text: str) -> None:
    print(scrub(text), file=sys.stderr, flush=True)


def progress(text: str) -> None:
    print(scrub(f"… {text}"), file=sys.stderr, flush=True)


def emit_json(data: Any) -> None:
    out(json.dumps(data, indent=2, sort_keys=True, default=str))


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain aligned text table (no box drawing: it survives logs and pipes)."""
    cells = [[str(h) for h in headers]] + [["-" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
