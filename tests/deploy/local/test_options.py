"""The local endpoint's options: declared once, the command line and the config file
built from the declaration; today's flags still describe one endpoint."""

from __future__ import annotations

import subprocess

import pytest
import requests

from deploy.cli import build_parser, main
from deploy.local.options import Config, EndpointOptions, ServerOptions, config_from_args
from deploy.stack.commands import python_module
from deploy.stack.net import free_port, wait_for_port


def parse(*argv: str) -> Config:
    return config_from_args(build_parser().parse_args(["local", *argv]))


def test_todays_flags_describe_one_endpoint():
    config = parse("--endpoint-id", "abc", "--workers-max", "3", "--no-rate-limits", "--port", "9")
    (only,) = config.endpoints
    assert (only.endpoint_id, only.workers_max, only.rate_limits) == ("abc", 3, False)
    assert only.idle_timeout == EndpointOptions().idle_timeout  # the declared default
    assert config.server.port == 9


def test_each_endpoint_takes_the_flags_after_it_and_the_shared_ones_before():
    config = parse(
        *("--idle-timeout", "7", "--worker-env", "A=1"),
        *("--endpoint", "video", "--workers-max", "1", "--worker-env", "PIPELINES=upscale"),
        *("--endpoint", "light", "--workers-max", "2", "--scaler", "REQUEST_COUNT"),
    )
    video, light = config.endpoints
    assert (video.endpoint_id, video.workers_max, video.idle_timeout) == ("video", 1, 7.0)
    assert video.worker_env == {"A": "1", "PIPELINES": "upscale"}
    assert (light.endpoint_id, light.workers_max, light.scaler) == ("light", 2, "REQUEST_COUNT")
    assert light.worker_env == {"A": "1"}


def test_a_toml_file_names_the_endpoints(tmp_path):
    path = tmp_path / "local.toml"
    path.write_text(
        "[server]\nport = 9000\n\n[endpoints.video]\nworkers_max = 1\n"
        'worker_env = { PIPELINES = "video_enhance,upscale" }\n\n'
        "[endpoints.light]\nworkers_max = 2\n"
    )
    config = parse("--config", str(path), "--port", "9100")
    assert [e.endpoint_id for e in config.endpoints] == ["video", "light"]
    assert config.server.port == 9100  # the command line wins
    assert config.endpoints[0].worker_env == {"PIPELINES": "video_enhance,upscale"}


def test_the_stacks_json_round_trips_the_declared_options(tmp_path):
    config = Config(ServerOptions(state_dir=tmp_path), [EndpointOptions("a"), EndpointOptions("b")])
    path = tmp_path / "c.json"
    path.write_text(config.to_json())
    assert parse("--config", str(path)) == config


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--workers-max", "0"], "--workers-max must be at least 1"),
        (["--workers-min", "3", "--workers-max", "2"], "cannot be more than --workers-max"),
        (["--idle-timeout", "-1"], "must not be negative"),
        (["--endpoint", "a", "--endpoint", "a"], "endpoint a is given twice"),
        (["--endpoint", "bad/id"], "letters, digits"),
        (["--endpoint-id", "x", "--endpoint", "a"], "give each endpoint its id"),
        (["--worker-command", ""], "--worker-command is empty"),
        (["--scaler-value", "abc"], "not a float"),
    ],
)
def test_bad_options_are_a_clear_cli_error(argv, words, capsys, tmp_path):
    with pytest.raises(SystemExit) as exc:
        main(["local", "--state-dir", str(tmp_path), *argv])
    assert exc.value.code == 2
    assert words in capsys.readouterr().err
    assert not (tmp_path / "jobs.sqlite3").exists()  # nothing was started or written


def test_help_shows_each_default_once_from_the_declaration(capsys):
    with pytest.raises(SystemExit):
        main(["local", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "most workers (default: 1)" in out
    assert "--endpoint ID" in out and "departures from RunPod" in out


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("[endpoints.a]\nworkers_maxx = 1\n", "unknown endpoint setting(s): workers_maxx"),
        ("[endpoints.a]\nworkers_max = 0\n", "a: --workers-max must be at least 1"),
        ("[nonsense]\n", "expected only [server] and [endpoints.<id>] tables"),
        ("[endpoints.a\n", "cannot read"),
    ],
)
def test_a_bad_config_file_is_a_clear_cli_error(text, words, tmp_path, capsys):
    path = tmp_path / "local.toml"
    path.write_text(text)
    with pytest.raises(SystemExit) as exc:
        main(["local", "--state-dir", str(tmp_path / "state"), "--config", str(path)])
    assert exc.value.code == 2 and words in capsys.readouterr().err
    assert not (tmp_path / "state").exists()


def test_the_command_line_serves_each_endpoint_it_names(tmp_path):
    port = free_port()
    argv = [*python_module("deploy"), "local", "--port", str(port), "--api-key", "k"]
    argv += ["--state-dir", str(tmp_path), "--gpus", "none"]
    argv += ["--endpoint", "video", "--workers-max", "1", "--endpoint", "light"]
    with (
        (tmp_path / "out.log").open("wb") as log,
        subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT) as proc,
    ):
        try:
            wait_for_port(port, timeout=30)
            auth = {"Authorization": "Bearer k"}
            base = f"http://127.0.0.1:{port}/v2"
            for name in ("video", "light"):
                assert requests.get(f"{base}/{name}/health", headers=auth, timeout=10).ok
            assert requests.get(f"{base}/local/health", headers=auth, timeout=10).status_code == 404
        finally:
            proc.terminate()
            proc.wait(15)
