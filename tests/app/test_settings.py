"""Settings come from the environment, with defaults for development, and refuse to start
production with placeholder secrets."""

from __future__ import annotations

import pytest

from app.settings import Settings, SettingsError

PRODUCTION = {
    "APP_ENV": "production",
    "SECRET_KEY": "a-long-random-secret-value-1234567890",
    "ADMIN_PASSWORD": "correct horse battery staple",
}


def test_development_defaults():
    settings = Settings.from_env({})
    assert settings.app_env == "development"
    assert settings.database_url.startswith("sqlite:///") and settings.database_url.endswith(
        "instance/app.db"
    )
    assert settings.runpod_endpoint_base_url == "https://api.runpod.ai/v2"
    assert settings.max_upload_bytes == 2 * 1024**3
    assert settings.use_webhooks is True
    assert settings.status_budget_per_10s == 500


def test_values_are_parsed_and_typed():
    settings = Settings.from_env(
        {
            "USE_WEBHOOKS": "false",
            "STATUS_BUDGET_PER_10S": "50",
            "GPU_PRICE_PER_SECOND": "0.00076",
            "API_TOKENS": "a-token-1, b-token-2,",
            "ALLOWED_UPLOAD_TYPES": "video/mp4",
        }
    )
    assert settings.use_webhooks is False and settings.status_budget_per_10s == 50
    assert settings.gpu_price_per_second == 0.00076
    assert settings.api_tokens == ("a-token-1", "b-token-2")
    assert settings.allowed_upload_types == ("video/mp4",)


@pytest.mark.parametrize(
    "env, says",
    [
        ({"APP_ENV": "staging"}, "APP_ENV"),
        ({"USE_WEBHOOKS": "maybe"}, "USE_WEBHOOKS"),
        ({"STATUS_BUDGET_PER_10S": "lots"}, "STATUS_BUDGET_PER_10S"),
        ({"STATUS_BUDGET_PER_10S": "11"}, "STATUS_BUDGET_PER_10S"),
        ({"MAX_UPLOAD_BYTES": "-1"}, "MAX_UPLOAD_BYTES"),
        ({"STORAGE_BACKEND": "ftp"}, "STORAGE_BACKEND"),
        ({"STORAGE_BACKEND": "s3"}, "S3_BUCKET"),
        ({"PUBLIC_BASE_URL": "example.com"}, "PUBLIC_BASE_URL"),
        ({**PRODUCTION, "SECRET_KEY": ""}, "SECRET_KEY"),
        ({**PRODUCTION, "SECRET_KEY": "changethis"}, "SECRET_KEY"),
        ({**PRODUCTION, "SECRET_KEY": "short-key"}, "SECRET_KEY"),
        ({k: v for k, v in PRODUCTION.items() if k != "SECRET_KEY"}, "SECRET_KEY"),
        ({k: v for k, v in PRODUCTION.items() if k != "ADMIN_PASSWORD"}, "ADMIN_PASSWORD"),
        ({**PRODUCTION, "ADMIN_PASSWORD": "admin"}, "ADMIN_PASSWORD"),
        ({**PRODUCTION, "TEST_CRASH_AT": "after_claim"}, "TEST_CRASH_AT"),
    ],
)
def test_bad_settings_are_refused_with_the_variable_named(env, says):
    with pytest.raises(SettingsError, match=says):
        Settings.from_env(env)


def test_production_with_real_secrets_starts():
    settings = Settings.from_env(PRODUCTION)
    assert settings.app_env == "production"
    assert "correct horse" not in repr(settings) and "a-long-random" not in repr(settings)
