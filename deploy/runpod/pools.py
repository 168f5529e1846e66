"""RunPod Serverless GPU pools: memory, example cards and list prices (offline fallback).

The live catalog (``GET /v2/catalog/gpus``, see ``python -m deploy gpus``) is the truth;
this table lets ``check`` and ``cost`` work without an API key. Prices are RunPod's flex
list prices per GPU-second as published in the domain notes and docs, before discounts.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Pool:
    id: str
    memory_gb: int
    gpus: str
    price_per_s: float | None


POOLS: dict[str, Pool] = {
    p.id: p
    for p in (
        Pool("AMPERE_16", 16, "A4000, A4500, RTX 4000, RTX 2000", 0.00016),
        Pool("AMPERE_24", 24, "L4, A5000, RTX 3090", 0.00019),
        Pool("ADA_24", 24, "RTX 4090", 0.00031),
        Pool("ADA_32_PRO", 32, "RTX 5090", 0.00044),
        Pool("AMPERE_48", 48, "A6000, A40", 0.00034),
        Pool("ADA_48_PRO", 48, "L40, L40S, RTX 6000 Ada", 0.00053),
        Pool("AMPERE_80", 80, "A100", 0.00076),
        Pool("ADA_80_PRO", 80, "H100", 0.00116),
        Pool("BLACKWELL_96", 96, "RTX PRO 6000", None),
        Pool("HOPPER_141", 141, "H200", 0.00155),
        Pool("BLACKWELL_180", 180, "B200", 0.00240),
    )
}


def compatible_pools(tier: str) -> list[str]:
    """Other pools with at least as much GPU memory as ``tier``, cheapest memory class first."""
    base = POOLS.get(tier)
    if base is None:
        return []
    others = [p for p in POOLS.values() if p.id != tier and p.memory_gb >= base.memory_gb]
    others.sort(key=lambda p: (p.memory_gb, p.price_per_s or 1.0))
    return [p.id for p in others]
