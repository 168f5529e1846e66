"""Sizes in words people read: the unit that fits, never "0.00 GiB"."""

from __future__ import annotations

UNITS = ((1024**4, "TiB"), (1024**3, "GiB"), (1024**2, "MiB"), (1024, "KiB"))


def human_bytes(n: int | float | None) -> str:
    """``human_bytes(262144)`` is "256 KiB"; ``human_bytes(2 * 1024**3)`` is "2 GiB"."""
    if n is None:
        return "unknown size"
    for size, unit in UNITS:
        if n >= size:
            value = n / size
            text = f"{value:.1f}".removesuffix(".0")
            return f"{text} {unit}"
    return f"{int(n)} bytes" if n != 1 else "1 byte"
