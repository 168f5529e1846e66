"""The worker's environment is read in one place: the knobs and the platform's facts."""

from __future__ import annotations

from gpu_worker.settings import Platform, WorkerSettings


def test_platform_facts_come_from_the_environment(monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HUGGING_FACE_HUB_TOKEN", "hf_fallback_token")
    monkeypatch.setenv("RUNPOD_POD_ID", "pod-1")
    monkeypatch.delenv("LOCAL_ENDPOINT_WORKER", raising=False)
    platform = Platform.from_env()
    assert platform.hf_token == "hf_fallback_token"
    assert platform.on_runpod_serverless
    assert "hf_fallback_token" not in repr(platform)
    monkeypatch.setenv("LOCAL_ENDPOINT_WORKER", "w1")
    assert not Platform.from_env().on_runpod_serverless


def test_the_start_up_line_shows_secrets_as_set_or_unset(monkeypatch, tmp_path):
    monkeypatch.setenv("SENTRY_DSN", "https://key123456@sentry.example/1")
    monkeypatch.setenv("HF_TOKEN", "hf_secret_token_123")
    monkeypatch.setenv("MODEL_DIR", str(tmp_path))
    described = WorkerSettings.from_env().describe()
    assert described["sentry_dsn"] == "set"
    assert "platform" not in described
    assert "key123456" not in str(described) and "hf_secret_token_123" not in str(described)
