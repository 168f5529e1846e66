"""One declaration per pipeline, read by both sides.

The worker validates jobs with each pipeline module's declaration; the app reads the same
declaration from ``app/pipelines.json``, generated from those modules. These tests fail when
the file is stale, when a declaration is not valid JSON Schema or its defaults break it, and
when the app's checks and the worker's disagree on a value.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from app import pipelines as app_pipelines
from gpu_worker import pipelines as worker_pipelines
from gpu_worker.errors import InputError

ROOT = Path(__file__).resolve().parent.parent


def test_the_app_catalogue_is_generated_from_the_current_declarations():
    check = subprocess.run(
        [
            sys.executable,
            "-m",
            "gpu_worker.pipelines",
            "catalogue",
            "--check",
            "app/pipelines.json",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr
    assert json.loads((ROOT / "app" / "pipelines.json").read_text()) == json.loads(
        json.dumps(worker_pipelines.catalogue())
    )


def test_a_stale_catalogue_is_reported_with_the_command_that_fixes_it(tmp_path):
    stale = tmp_path / "pipelines.json"
    stale.write_text('{"pipelines": {}}\n')
    check = subprocess.run(
        [sys.executable, "-m", "gpu_worker.pipelines", "catalogue", "--check", str(stale)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert check.returncode == 1
    assert "is not current: run python -m gpu_worker.pipelines catalogue --output" in check.stderr


@pytest.mark.parametrize("name", worker_pipelines.names())
def test_each_declaration_is_json_schema_and_its_defaults_pass_it(name):
    pipeline = worker_pipelines.get(name)
    schema = pipeline.params_schema()
    Draft202012Validator.check_schema(schema)
    defaults = {k: s["default"] for k, s in pipeline.params.items() if "default" in s}
    assert list(Draft202012Validator(schema).iter_errors(defaults)) == []
    assert pipeline.inputs and pipeline.output and pipeline.description
    for spec in pipeline.params.values():
        assert spec.get("description"), f"{name}: every parameter needs help text"


def _samples(spec: dict) -> list:
    """Values on and around a parameter's bounds, of the right type and of wrong ones."""
    values: list = ["abc", True, None, -1, 0, 1, 2.5, 10**12]
    values += list(spec.get("enum", []))
    for bound in ("minimum", "maximum"):
        if bound in spec:
            values += [spec[bound], spec[bound] - 1, spec[bound] + 1]
    if "maxLength" in spec:
        values += ["x" * spec["maxLength"], "x" * (spec["maxLength"] + 1)]
    return values


NATIVE = {
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
}


@pytest.mark.parametrize("name", worker_pipelines.names())
def test_the_app_and_the_worker_accept_and_refuse_the_same_values(name):
    """What passes the app passes the worker; for values of the declared JSON type (an API
    client's), both give the same answer. The app also reads form text ("2") as typed."""
    worker = worker_pipelines.get(name)
    app = app_pipelines.get(name, tuple(worker_pipelines.names()))
    for param, spec in worker.params.items():
        for value in _samples(spec):
            if value is None:
                continue  # the app reads "no value" as "the default"
            try:
                worker.validate_params({param: value})
                worker_ok = True
            except InputError:
                worker_ok = False
            try:
                sent = app.parse_params({param: value})
                app_ok = True
            except app_pipelines.ParamError:
                app_ok = False
            where = f"{name}.{param}={value!r}"
            if app_ok:
                worker.validate_params(sent)  # raises if the GPU would refuse the upload
            if NATIVE[spec["type"]](value):
                assert app_ok == worker_ok, f"{where}: app {app_ok}, worker {worker_ok}"
            if str(value) == "True" and spec["type"] != "boolean":
                assert not app_ok and not worker_ok, where
