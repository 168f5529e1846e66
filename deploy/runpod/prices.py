"""The one price book: RunPod Serverless per-second prices per GPU pool, flex and active.

Read on 2026-12-05 from RunPod's Serverless pricing page,
https://docs.runpod.io/serverless/pricing ("Pricing table (per second)": flex and active cost
per second per GPU type; flex workers scale to zero, active ones run always and are billed
at the lower rate). Two pools the page does not list keep the figures the project had:
``ADA_32_PRO`` (RTX 5090, flex from the domain notes, no active price) and ``BLACKWELL_96``
(no published price: an override is needed). Prices are per GPU; a worker with N GPUs costs
N times as much. Billing runs from the worker's start to its stop, rounded up to the second.

The app (cost per job, budgets, the dashboard), ``python -m deploy cost`` and ``gpus`` read
prices through ``price_per_second``. Overrides, most specific first: a command's
``--price-per-s``, an endpoint spec's ``[pricing]`` table, then ``GPU_PRICE_PER_SECOND``
(whoever reads that setting passes it as ``override``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

READ_ON = "2026-12-05"
SOURCE = "https://docs.runpod.io/serverless/pricing"


class PriceError(ValueError):
    """No price is known for the GPU pools asked about; the message says what to set."""


@dataclass(frozen=True)
class Price:
    """USD per GPU-second. ``active`` None: not published, the flex price is used."""

    flex: float | None
    active: float | None = None


PRICES: dict[str, Price] = {
    "AMPERE_16": Price(0.00016, 0.00011),  # A4000, A4500, RTX 4000
    "AMPERE_24": Price(0.00019, 0.00013),  # L4, A5000, RTX 3090
    "ADA_24": Price(0.00031, 0.00021),  # RTX 4090 PRO
    "ADA_32_PRO": Price(0.00044),  # RTX 5090 (not on the page)
    "AMPERE_48": Price(0.00034, 0.00024),  # A6000, A40
    "ADA_48_PRO": Price(0.00053, 0.00037),  # L40, L40S, RTX 6000 Ada PRO
    "AMPERE_80": Price(0.00076, 0.00060),  # A100
    "ADA_80_PRO": Price(0.00116, 0.00093),  # H100 PRO
    "BLACKWELL_96": Price(None),  # RTX PRO 6000 (not on the page)
    "HOPPER_141": Price(0.00155, 0.00124),  # H200 PRO
    "BLACKWELL_180": Price(0.00240, 0.00190),  # B200
}


def pool_price(pool: str, active: bool = False) -> float | None:
    """One pool's list price per GPU-second, or None when RunPod publishes none."""
    price = PRICES.get(pool)
    if price is None:
        return None
    return (price.active or price.flex) if active else price.flex


def price_per_second(
    gpu_ids: Sequence[str],
    active: bool = False,
    override: float | None = None,
    *,
    gpu_count: int = 1,
) -> float:
    """USD per second for one worker on ``gpu_ids`` (pool ids, as an endpoint lists them).

    An endpoint may be given a worker of any of its pools, so the dearest listed is charged:
    a figure never below the bill. ``override`` (``GPU_PRICE_PER_SECOND``, a spec's
    ``[pricing]``) replaces the book for flex and active alike. ``PriceError`` names the
    pool without a price and the setting that would give one."""
    if override is not None:
        if not override > 0:
            raise PriceError(f"a price override must be positive USD per second, not {override}")
        return override * gpu_count
    if not gpu_ids:
        raise PriceError("no GPU pool given: list the endpoint's gpu_tiers")
    prices = []
    for pool in gpu_ids:
        if pool not in PRICES:
            raise PriceError(
                f"no price for GPU pool {pool!r} (known: {', '.join(PRICES)}); "
                "set GPU_PRICE_PER_SECOND or the spec's [pricing]"
            )
        price = pool_price(pool, active)
        if price is None:
            raise PriceError(
                f"RunPod publishes no serverless price for {pool}: set GPU_PRICE_PER_SECOND "
                "or the spec's [pricing] flex_per_s"
            )
        prices.append(price)
    return max(prices) * gpu_count
