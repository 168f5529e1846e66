"""RunPod Serverless GPU pools: memory and example cards (offline fallback).

The live catalog (``GET /v2/catalog/gpus``, see ``python -m deploy gpus``) is the truth;
this table lets ``check`` work without an API key. Prices live in the price book,
``deploy.runpod.prices``.
"""

from __future__ import annotations

from dataclasses import dataclass

from deploy.runpod.prices import pool_price


@dataclass(frozen=True)
class Pool:
    id: str
    memory_gb: int
    gpus: str


POOLS: dict[str, Pool] = {
    p.id: p
    for p in (
        Pool("AMPERE_16", 16, "A4000, A4500, RTX 4000, RTX 2000"),
        Pool("AMPERE_24", 24, "L4, A5000, RTX 3090"),
        Pool("ADA_24", 24, "RTX 4090"),
        Pool("ADA_32_PRO", 32, "RTX 5090"),
        Pool("AMPERE_48", 48, "A6000, A40"),
        Pool("ADA_48_PRO", 48, "L40, L40S, RTX 6000 Ada"),
        Pool("AMPERE_80", 80, "A100"),
        Pool("ADA_80_PRO", 80, "H100"),
        Pool("BLACKWELL_96", 96, "RTX PRO 6000"),
        Pool("HOPPER_141", 141, "H200"),
        Pool("BLACKWELL_180", 180, "B200"),
    )
}


def compatible_pools(tier: str) -> list[str]:
    """Other pools with at least as much GPU memory as ``tier``, cheapest memory class first."""
    base = POOLS.get(tier)
    if base is None:
        return []
    others = [p for p in POOLS.values() if p.id != tier and p.memory_gb >= base.memory_gb]
    others.sort(key=lambda p: (p.memory_gb, pool_price(p.id) or 1.0))
    return [p.id for p in others]
