"""The upload form, the upload checks and the OpenAPI document all read each pipeline's one
declaration (``app/pipelines.json``, generated from ``gpu_worker/pipelines``)."""

from __future__ import annotations

import io
import re
import struct
import zlib

import pytest

from app.settings import Settings, SettingsError
from tests.app.conftest import csrf_token, storage_files


def png_bytes(width: int = 4, height: int = 3) -> bytes:
    """A real, tiny RGB PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(b"\x00" + bytes([10, 200, 30]) * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def post(client, filename: str, body: bytes, **fields):
    data = {"csrf_token": csrf_token(client), "file": (io.BytesIO(body), filename)}
    data.update(fields)
    return client.post("/jobs", data=data, content_type="multipart/form-data")


def field_tag(page: str, name: str) -> str:
    match = re.search(rf'<(input|select)[^>]*name="{re.escape(name)}"[^>]*>', page)
    assert match, f"no field {name} on the page"
    return match.group(0)


def test_the_form_is_built_from_the_declarations(client):
    page = client.get("/").get_data(as_text=True)
    sharpen = field_tag(page, "param.video_enhance.sharpen")
    assert 'type="number"' in sharpen and 'min="0"' in sharpen and 'max="3"' in sharpen
    assert 'step="any"' in sharpen and 'value="0.6"' in sharpen
    crf = field_tag(page, "param.video_enhance.crf")
    assert 'step="1"' in crf and 'max="51"' in crf and 'value="20"' in crf
    scale = re.search(r'<select name="param.video_enhance.scale".*?</select>', page, re.S)[0]
    assert '<option value="2" selected>' in scale and '<option value="1">' in scale
    assert "edge-aware sharpening strength" in page  # the declared help text
    # echo's sleep_s is held under EXECUTION_TIMEOUT_S (600 by default), not its own 3600.
    assert 'max="600' in field_tag(page, "param.echo.sleep_s")
    # Without JavaScript the file picker offers what any enabled pipeline takes.
    picker = field_tag(page, "file")
    assert "video/*" in picker and 'data-accept="video/*"' in page


def test_a_refused_upload_keeps_the_chosen_pipeline_and_the_typed_values(client, app):
    response = post(
        client,
        "clip.mp4",
        b"\x00\x00\x00\x18ftypmp42" + bytes(300),
        pipeline="video_enhance",
        **{"param.video_enhance.sharpen": "2.5", "param.video_enhance.crf": "99"},
    )
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert "parameter &#39;crf&#39; must be at most 51" in page
    assert '<option value="video_enhance" data-accept="video/*" selected>' in page
    assert 'value="2.5"' in field_tag(page, "param.video_enhance.sharpen")
    assert 'value="99"' in field_tag(page, "param.video_enhance.crf")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"param.video_enhance.scale": "3"}, "parameter 'scale' must be one of 1, 2"),
        ({"param.video_enhance.preset": "placebo"}, "parameter 'preset' must be one of"),
        ({"param.video_enhance.crf": "2.5"}, "parameter 'crf' must be a whole number"),
        ({"param.video_enhance.denoise": "-1"}, "parameter 'denoise' must be at least 0"),
    ],
)
def test_bad_parameters_are_refused_with_what_they_must_be(client, fields, message):
    response = client.post(
        "/api/jobs",
        data={
            "file": (io.BytesIO(b"\x00\x00\x00\x18ftypmp42" + bytes(300)), "clip.mp4"),
            "pipeline": "video_enhance",
            **{k.replace("video_enhance.", ""): v for k, v in fields.items()},
        },
        headers={"Authorization": "Bearer test-api-token-0123456789"},
        content_type="multipart/form-data",
    )
    assert response.status_code == 400 and message in response.json["error"], response.json


def test_echo_cannot_sleep_past_the_execution_timeout(client):
    response = post(client, "a.mp4", b"\x00\x00\x00\x18ftypmp42" + bytes(300), pipeline="echo")
    assert response.status_code == 303
    response = post(client, "a.mp4", b"x" * 100, pipeline="echo", **{"param.echo.sleep_s": "601"})
    assert response.status_code == 400
    assert "parameter &#39;sleep_s&#39; must be at most 600" in response.get_data(as_text=True)


def test_an_image_is_refused_by_a_pipeline_that_takes_video(client, settings):
    response = post(client, "photo.png", png_bytes(), pipeline="video_enhance")
    assert response.status_code == 415
    assert "video_enhance takes video; this is an image" in response.get_data(as_text=True)
    assert storage_files(settings) == []  # nothing stored


def test_a_text_file_renamed_mp4_is_not_a_readable_video(client, settings):
    response = post(client, "clip.mp4", b"not a video, just text\n" * 20, pipeline="video_enhance")
    assert response.status_code == 415
    page = response.get_data(as_text=True)
    assert "this file is not a readable video" in page
    assert "Errno" not in page and "/tmp" not in page and "staging" not in page
    assert storage_files(settings) == []


def test_a_real_video_is_taken_and_its_result_will_be_mp4(client, app, tmp_path):
    from app.db import get_session
    from app.models import Job
    from tests.gpu_worker.media import make_clip

    clip = make_clip(tmp_path / "clip.mov", frames=2).read_bytes()
    response = post(client, "clip.mov", clip, pipeline="video_enhance")
    assert response.status_code == 303
    with app.app_context():
        job = get_session().query(Job).one()
        assert job.input_content_type == "video/quicktime"
        assert job.output_content_type == "video/mp4"


def test_openapi_publishes_each_pipelines_parameter_schema(client):
    doc = client.get("/api/openapi.json").json
    schemas = doc["components"]["schemas"]
    enhance = schemas["video_enhance_params"]["properties"]
    assert enhance["scale"]["enum"] == [1, 2] and enhance["scale"]["default"] == 2
    assert enhance["sharpen"]["maximum"] == 3
    assert schemas["echo_params"]["properties"]["sleep_s"]["maximum"] == 600
    assert schemas["echo_params"]["additionalProperties"] is False
    body = doc["paths"]["/api/jobs"]["post"]["requestBody"]["content"]["multipart/form-data"]
    refs = body["schema"]["properties"]["params"]["contentSchema"]["oneOf"]
    assert {"$ref": "#/components/schemas/video_enhance_params"} in refs


def test_a_pipeline_nobody_declared_is_a_settings_error(tmp_path):
    with pytest.raises(SettingsError, match="PIPELINES names my_model, which no pipeline"):
        Settings.from_env(
            {
                "APP_ENV": "test",
                "SECRET_KEY": "test-secret-key-not-for-production",
                "STORAGE_DIR": str(tmp_path),
                "PIPELINES": "echo,my_model",
            }
        )
