"""Several endpoints (issue 18): the settings route each pipeline to exactly one endpoint or
refuse to start saying the fix; each endpoint has its own ``/status`` budget (real Redis);
the one-endpoint configuration of before keeps working as the endpoint ``default``."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from app import create_app
from app.db import session_scope
from app.models import Job, Status
from app.services import services_of
from app.settings import Settings, SettingsError
from tests.app.conftest import API_TOKEN

TWO = {"RUNPOD_ENDPOINTS": "video=abc123,light=def456", "RUNPOD_API_KEY": "rp-key"}


def spec(folder: Path, name: str, pipelines: list[str]) -> None:
    quoted = ", ".join(f'"{p}"' for p in pipelines)
    (folder / f"{name}.toml").write_text(f'[endpoint]\nname = "x"\npipelines = [{quoted}]\n')


def test_the_specs_in_deploy_endpoints_route_each_pipeline():
    fleet = Settings.from_env(TWO).fleet
    assert fleet.names == ["video", "light"]
    assert fleet.for_pipeline("upscale").endpoint_id == "abc123"
    assert fleet.for_pipeline("echo").name == "light"


def test_one_endpoint_id_is_the_default_endpoint_serving_every_pipeline():
    settings = Settings.from_env({"RUNPOD_ENDPOINT_ID": "abc", "RUNPOD_API_KEY": "k"})
    (endpoint,) = settings.fleet.endpoints
    assert (endpoint.name, endpoint.endpoint_id) == ("default", "abc")
    assert set(endpoint.pipelines) == set(settings.pipelines)
    assert settings.configured("default")


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"RUNPOD_ENDPOINTS": "video=abc123"}, "pipeline echo is on no endpoint"),
        ({**TWO, "RUNPOD_ENDPOINT_ID": "old"}, "unset RUNPOD_ENDPOINT_ID"),
        ({"RUNPOD_ENDPOINTS": "video=a,light=b,gpu=c"}, "deploy/endpoints/gpu.toml does not"),
        ({"RUNPOD_ENDPOINTS": "video"}, "is not NAME=ID"),
        ({"RUNPOD_ENDPOINTS": "video=a,video=b,light=c"}, "names video twice"),
        ({"RUNPOD_ENDPOINTS": "Video!=a"}, "must be lower-case letters"),
    ],
)
def test_a_configuration_that_cannot_route_every_pipeline_is_refused(env, words):
    with pytest.raises(SettingsError, match=words):
        Settings.from_env(env)


def test_a_pipeline_on_two_endpoints_is_refused_naming_the_fix(tmp_path):
    spec(tmp_path, "video", ["video_enhance", "upscale", "echo"])
    spec(tmp_path, "light", ["echo"])
    env = {**TWO, "ENDPOINT_SPECS_DIR": str(tmp_path)}
    with pytest.raises(SettingsError) as refused:
        Settings.from_env(env)
    assert "pipeline echo is on two endpoints (video, light)" in str(refused.value)
    assert "remove it from all but one spec's pipelines" in str(refused.value)
    spec(tmp_path, "video", ["video_enhance", "upscale"])
    assert Settings.from_env(env).fleet.for_pipeline("echo").name == "light"


def test_a_flood_on_one_endpoint_does_not_spend_the_others_status_budget(settings):
    settings = settings.replace(
        runpod_endpoint_id="", runpod_endpoints=TWO["RUNPOD_ENDPOINTS"], status_budget_per_10s=24
    )
    app = create_app(settings)
    services = services_of(app)
    now = 1_000_000.5  # one budget window for every request below
    video, light = services.budget_for("video"), services.budget_for("light")
    granted = [video.acquire(now) == 0 for _ in range(50)]
    assert granted.count(True) == video.per_window, "video's window is spent"
    assert light.acquire(now) == 0, "light's polls still go"
    assert services.budget_for("video") is video, "one budget per endpoint, per process"
    app.extensions["db"].engine.dispose()


def test_jobs_record_their_pipelines_endpoint_and_old_rows_follow_their_pipeline(settings):
    settings = settings.replace(runpod_endpoint_id="", runpod_endpoints=TWO["RUNPOD_ENDPOINTS"])
    app = create_app(settings)
    client = app.test_client()
    auth = {"Authorization": f"Bearer {API_TOKEN}"}
    data = {"pipeline": "echo", "file": (io.BytesIO(b"bytes"), "a.mp4", "video/mp4")}
    made = client.post("/api/jobs", headers=auth, data=data)
    assert made.status_code == 201, made.json
    assert made.json["endpoint"] == "light"
    assert (
        client.get("/api/openapi.json").json["components"]["schemas"]["Job"]["properties"][
            "endpoint"
        ]["type"]
        == "string"
    )
    services = services_of(app)
    with app.app_context(), session_scope() as session:
        # A row from before several endpoints (migration 0005 made it "default").
        old = Job(pipeline="upscale", status=Status.IN_QUEUE, endpoint="default")
        session.add(old)
        session.commit()
        assert services.endpoint_of(old) == "video"
        assert services.api_for(services.endpoint_of(old)).endpoint_id == "abc123"
    app.extensions["db"].engine.dispose()
