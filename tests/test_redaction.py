"""One redactor and one list of secret-looking names per process image.

The web, Celery and operator processes share ``deploy.redaction``; the GPU worker's image
ships ``gpu_worker`` alone, so it keeps its own list, which must say the same.
"""

from __future__ import annotations

import pytest

from deploy import redaction
from gpu_worker import redaction as worker_redaction
from tests.test_layout import ROOT


def test_the_worker_and_the_web_image_agree_on_secret_looking_names():
    assert worker_redaction.SECRET_NAME.pattern == redaction.SECRET_NAME.pattern
    assert worker_redaction.SECRET_NAME.flags == redaction.SECRET_NAME.flags


@pytest.mark.parametrize(
    "name",
    [
        "RUNPOD_API_KEY",
        "HF_TOKEN",
        "HUGGING_FACE_HUB_TOKEN",
        "SECRET_KEY",
        "ADMIN_PASSWORD",
        "WANDB_APIKEY",
    ],
)
def test_the_settings_operators_print_are_secret_looking(name):
    assert redaction.SECRET_NAME.search(name) and worker_redaction.is_secret_name(name)


def test_no_other_module_keeps_a_list_of_secret_names():
    own = {ROOT / "deploy" / "redaction.py", ROOT / "gpu_worker" / "redaction.py"}
    for folder in ("app", "deploy", "gpu_worker", "tasks"):
        for path in (ROOT / folder).rglob("*.py"):
            if path in own:
                continue
            text = path.read_text()
            listed = ("CREDENTIAL|DSN", "PASSWORD|PASSWD", "x-amz-credential")
            assert not any(words in text for words in listed), (
                f"{path}: secret-looking names belong in deploy/redaction.py "
                "(or gpu_worker/redaction.py for the worker's image)"
            )


def test_operator_output_masks_every_secret_looking_value(monkeypatch):
    from deploy.ops.output import scrub

    monkeypatch.setenv("RUNPOD_API_KEY", "rpa_abcdefgh")
    monkeypatch.setenv("LOCAL_ENDPOINT_API_KEY", "local-key-123")
    assert scrub("key rpa_abcdefgh and local-key-123") == "key *** and ***"
