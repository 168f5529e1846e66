"""The one price book (deploy/runpod/prices.py) and who reads it: `deploy cost`, with the
spec's [pricing] and GPU_PRICE_PER_SECOND as overrides."""

from __future__ import annotations

import json

import pytest

from deploy.runpod import pools
from deploy.runpod.prices import PRICES, READ_ON, SOURCE, PriceError, price_per_second
from tests.deploy.ops.test_endpoints import _spec


def test_the_book_has_runpods_flex_and_active_prices_with_their_date():
    assert READ_ON == "2026-12-05" and SOURCE == "https://docs.runpod.io/serverless/pricing"
    assert price_per_second(["ADA_48_PRO"], active=False, override=None) == 0.00053
    assert price_per_second(["ADA_48_PRO"], active=True, override=None) == 0.00037
    assert price_per_second(["AMPERE_16"], active=True, override=None) == 0.00011
    assert set(PRICES) == set(pools.POOLS)  # every pool priced in one place


def test_several_pools_cost_the_dearest_and_gpus_multiply():
    # A worker may land on any listed pool: the figure is never below the bill.
    assert price_per_second(["AMPERE_48", "ADA_48_PRO"], False, None) == 0.00053
    assert price_per_second(["AMPERE_24"], False, None, gpu_count=2) == pytest.approx(0.00038)


def test_an_override_replaces_the_book_for_flex_and_active():
    assert price_per_second(["ADA_48_PRO"], False, 0.0002) == 0.0002
    assert price_per_second(["ADA_48_PRO"], True, 0.0002) == 0.0002
    assert price_per_second(["BLACKWELL_96"], True, 0.001) == 0.001


def test_unpublished_prices_fall_back_or_ask_for_an_override():
    assert price_per_second(["ADA_32_PRO"], True, None) == 0.00044  # no active price: flex
    with pytest.raises(PriceError, match="publishes no serverless price for BLACKWELL_96"):
        price_per_second(["BLACKWELL_96"], False, None)
    with pytest.raises(PriceError, match="no price for GPU pool 'RTX_4090'"):
        price_per_second(["RTX_4090"], False, None)


HISTORY = "submitted_at,started_at,finished_at,endpoint\n0,10,40,light\n1000,1000,1030,light\n"


@pytest.fixture
def light(tmp_path, monkeypatch):
    folder = tmp_path / "endpoints"
    folder.mkdir()
    monkeypatch.setenv("DEPLOY_ENDPOINTS_DIR", str(folder))
    history = tmp_path / "jobs.csv"
    history.write_text(HISTORY)

    def write(extra: str = "") -> str:
        (folder / "light.toml").write_text(
            _spec("light", None, '["AMPERE_16", "AMPERE_24"]') + extra
        )
        return str(history)

    return write


def _prices(cli, history, *extra):
    result = cli("cost", "--history", history, "--json", *extra)
    assert result.code == 0, result.text
    return json.loads(result.out)["prices"]


def test_cost_prices_an_endpoint_from_its_tiers(cli, light):
    prices = _prices(cli, light())
    assert (prices["flex"], prices["active"]) == (0.00019, 0.00013)  # AMPERE_24, the dearest
    assert prices["readOn"] == READ_ON


def test_the_spec_and_the_setting_override_the_book(cli, light, monkeypatch):
    monkeypatch.setenv("GPU_PRICE_PER_SECOND", "0.0004")
    assert _prices(cli, light()) == {"flex": 0.0004, "active": 0.0004, "readOn": READ_ON}
    # The endpoint's own [pricing] is more specific than the global setting.
    prices = _prices(cli, light("\n[pricing]\nflex_per_s = 0.0003\nactive_per_s = 0.0002\n"))
    assert (prices["flex"], prices["active"]) == (0.0003, 0.0002)
    # A flag on the command line wins over both.
    assert _prices(cli, light(), "--price-per-s", "0.001")["flex"] == 0.001


def test_a_bad_pricing_table_is_a_spec_error(cli, light):
    result = cli("cost", "--history", light("\n[pricing]\nflex_per_s = -1\n"))
    assert result.code == 2
    assert "pricing.flex_per_s must be a positive number" in result.err
