"""The operator CLI's one settings object: defaults, clear errors, and the only reader of
the environment in deploy/ops and deploy/cli.py."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from deploy.ops.settings import KNOBS, OpsSettings, SettingsError

ROOT = Path(__file__).resolve().parents[3]
ENV_READ = re.compile(r"os\.environ|getenv\(|from os import")


def test_the_operator_cli_reads_its_environment_in_its_settings_module_only():
    files = [*(ROOT / "deploy" / "ops").rglob("*.py"), ROOT / "deploy" / "cli.py"]
    readers = [
        str(p.relative_to(ROOT)) for p in files if ENV_READ.search(p.read_text(encoding="utf-8"))
    ]
    assert readers == ["deploy/ops/settings.py"]


def test_defaults_are_documented_and_usable():
    settings = OpsSettings.from_env({})
    assert settings.runpod_endpoint_base_url == "https://api.runpod.ai/v2"
    assert settings.hf_endpoint == "https://huggingface.co"
    assert settings.endpoints_dir == Path("deploy/endpoints")
    assert settings.gpu_price_per_second is None and settings.runpod_endpoint_ids == {}
    operations = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    for knob in KNOBS:
        assert f"`{knob.env}`" in operations, f"docs/operations.md does not list {knob.env}"


def test_the_api_key_is_asked_for_by_name_and_never_shown():
    with pytest.raises(SettingsError, match="RUNPOD_API_KEY is not set: export it"):
        OpsSettings.from_env({}).api_key()
    settings = OpsSettings.from_env({"RUNPOD_API_KEY": "rpa_secret", "HF_TOKEN": "hf_secret"})
    assert settings.api_key() == "rpa_secret"
    assert "secret" not in repr(settings)


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"GPU_PRICE_PER_SECOND": "cheap"}, "GPU_PRICE_PER_SECOND must be USD per GPU-second"),
        ({"GPU_PRICE_PER_SECOND": "-1"}, "GPU_PRICE_PER_SECOND must be a positive number"),
        ({"RUNPOD_ENDPOINT_IDS": "video"}, "RUNPOD_ENDPOINT_IDS: 'video' is not name=id"),
    ],
)
def test_a_malformed_variable_is_named(env, words):
    with pytest.raises(SettingsError, match=words):
        OpsSettings.from_env(env)


def test_endpoint_ids_and_price_parse():
    settings = OpsSettings.from_env(
        {"RUNPOD_ENDPOINT_IDS": "video=abc, light=def", "GPU_PRICE_PER_SECOND": "0.0004"}
    )
    assert settings.runpod_endpoint_ids == {"video": "abc", "light": "def"}
    assert settings.gpu_price_per_second == 0.0004


def test_a_bad_variable_is_one_line_from_the_cli(cli, monkeypatch):
    monkeypatch.setenv("RUNPOD_ENDPOINT_IDS", "oops")
    result = cli("workers")
    assert result.code == 2
    assert result.err.strip().startswith("error: RUNPOD_ENDPOINT_IDS")
    assert "Traceback" not in result.text
