"""Several endpoints as data: the specs folder, `check` across it, and the operator commands
per endpoint against the RunPod stand-in (REST v2 and the job API)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.deploy.ops.conftest import GOOD_SPEC, RUNPOD_KEY

ROOT = Path(__file__).resolve().parents[3]


def _spec(name: str, pipelines: list[str] | None, tiers: str = '["AMPERE_48", "ADA_48_PRO"]'):
    text = GOOD_SPEC.replace('name = "gpu-jobs"', f'name = "gpu-jobs-{name}"')
    text = text.replace('name = "gpu-jobs-models"', f'name = "gpu-jobs-{name}-models"')
    text = text.replace('["ADA_48_PRO", "AMPERE_48", "AMPERE_80"]', tiers)
    if pipelines is not None:
        text = text.replace("[endpoint]\n", f"[endpoint]\npipelines = {json.dumps(pipelines)}\n")
    return text


@pytest.fixture
def endpoints(tmp_path, monkeypatch):
    """Write specs into a folder the CLI reads (DEPLOY_ENDPOINTS_DIR)."""
    folder = tmp_path / "endpoints"
    folder.mkdir()
    monkeypatch.setenv("DEPLOY_ENDPOINTS_DIR", str(folder))
    monkeypatch.setenv("HF_TOKEN", "x")

    def write(**specs: str) -> Path:
        for old in folder.glob("*.toml"):
            old.unlink()
        for name, text in specs.items():
            (folder / f"{name}.toml").write_text(text)
        return folder

    return write


def _two(endpoints):
    return endpoints(
        video=_spec("video", ["video_enhance", "upscale"]),
        light=_spec("light", ["echo"], '["AMPERE_16", "AMPERE_24"]'),
    )


def _across(result) -> dict[str, str]:
    return {f["rule"]: f["message"] for f in json.loads(result.out)["fleet"]}


def test_two_endpoints_that_share_out_every_pipeline_pass(cli, endpoints):
    _two(endpoints)
    result = cli("check", "--offline", "--json")
    assert result.code == 0, result.out
    data = json.loads(result.out)
    assert sorted(data["endpoints"]) == ["light", "video"] and data["fleet"] == []


def test_check_refuses_a_pipeline_on_two_endpoints(cli, endpoints):
    endpoints(
        video=_spec("video", ["video_enhance", "upscale", "echo"]),
        light=_spec("light", ["echo"]),
    )
    result = cli("check", "--offline", "--json")
    assert result.code == 1
    assert (
        _across(result)["pipeline-on-two-endpoints"] == "pipeline echo is on endpoints light, video"
    )
    text = cli("check", "--offline")
    assert (
        "[error] pipeline-on-two-endpoints: pipeline echo is on endpoints light, video" in text.out
    )


def test_check_refuses_a_pipeline_on_no_endpoint(cli, endpoints):
    endpoints(video=_spec("video", ["video_enhance"]), light=_spec("light", ["echo"]))
    messages = _across(cli("check", "--offline", "--json"))
    assert messages["pipeline-on-no-endpoint"] == (
        "pipeline upscale is offered by the app and served by no endpoint"
    )


def test_check_refuses_a_pipeline_the_image_does_not_carry(cli, endpoints):
    video = _spec("video", ["video_enhance", "upscale"]).replace(
        "[endpoint]\n", '[endpoint]\nimage_pipelines = ["video_enhance"]\n'
    )
    endpoints(video=video, light=_spec("light", ["echo"]))
    result = cli("check", "--offline", "--json")
    message = _across(result)["pipeline-not-in-image"]
    assert message == "endpoint video serves upscale but its image carries only video_enhance"
    fix = json.loads(result.out)["fleet"][0]["fix"]
    assert "--build-arg PIPELINES=video_enhance,upscale" in fix


@pytest.mark.parametrize(
    ("specs", "rule", "words"),
    [
        (
            {"video": ["video_enhance", "upscale", "ecko"], "light": ["echo"]},
            "pipeline-unknown",
            "endpoint video names pipeline 'ecko', which the app does not offer",
        ),
        (
            {"video": None, "light": ["echo"]},
            "pipelines-unnamed",
            "endpoint video names no pipelines",
        ),
    ],
)
def test_check_refuses_unknown_and_unnamed_pipelines(cli, endpoints, specs, rule, words):
    endpoints(**{name: _spec(name, p) for name, p in specs.items()})
    assert _across(cli("check", "--offline", "--json"))[rule] == words


def test_two_specs_with_one_runpod_name_are_refused(cli, endpoints):
    endpoints(
        video=_spec("video", ["video_enhance", "upscale"]),
        light=_spec("video", ["echo"]),  # same [endpoint].name as video
    )
    messages = _across(cli("check", "--offline", "--json"))
    assert "both named 'gpu-jobs-video'" in messages["endpoint-name-twice"]


def test_a_command_for_one_endpoint_lists_them_and_does_nothing(cli, runpod, endpoints):
    _two(endpoints)
    for argv in (("plan",), ("apply", "--offline"), ("purge",), ("doctor",), ("logs",)):
        result = cli(*argv)
        assert result.code == 2, (argv, result.text)
        assert "2 endpoints: light, video; give --endpoint NAME" in result.err
        assert "nothing was done" in result.err
    assert runpod.writes() == []
    assert "endpoints are light, video" in cli("plan", "--endpoint", "heavy").err
    assert "unrecognized arguments: --all" in cli("purge", "--all").err  # never all at once


def test_apply_per_endpoint_is_idempotent_and_all_applies_each(cli, runpod, endpoints):
    _two(endpoints)
    light = cli("apply", "--endpoint", "light", "--offline")
    assert light.code == 0, light.text
    assert [e["name"] for e in runpod.endpoints.values()] == ["gpu-jobs-light"]
    assert "set light=" in light.out and "RUNPOD_ENDPOINT_IDS" in light.out
    both = cli("apply", "--all", "--offline", "--json")
    assert both.code == 0, both.text
    data = json.loads(both.out)["endpoints"]
    assert data["light"]["unchanged"] is True and data["video"]["created"]
    assert sorted(e["name"] for e in runpod.endpoints.values()) == [
        "gpu-jobs-light",
        "gpu-jobs-video",
    ]
    writes = len(runpod.writes())
    again = cli("apply", "--all", "--offline")
    assert again.code == 0 and again.out.count("nothing to do") == 2
    assert len(runpod.writes()) == writes
    plan = cli("plan", "--all")
    assert plan.code == 0 and "nothing to change for endpoint video" in plan.out
    assert RUNPOD_KEY not in again.text + plan.text


def test_apply_refuses_while_the_endpoints_disagree(cli, runpod, endpoints):
    endpoints(
        video=_spec("video", ["video_enhance", "upscale", "echo"]), light=_spec("light", ["echo"])
    )
    result = cli("apply", "--endpoint", "light", "--offline")
    assert result.code == 1
    assert "pipeline-on-two-endpoints" in result.out and "apply refused" in result.out
    assert runpod.writes() == []


def test_doctor_workers_and_purge_name_their_endpoint(cli, runpod, endpoints, monkeypatch):
    _two(endpoints)
    assert cli("apply", "--all", "--offline").code == 0
    ids = {e["name"].removeprefix("gpu-jobs-"): eid for eid, e in runpod.endpoints.items()}
    runpod.add_worker(ids["video"], "UNHEALTHY", ["Traceback", "exit code 1"])
    queued = {"completed": 0, "failed": 0, "inProgress": 0, "retried": 0}
    runpod.job_counts[ids["video"]] = {**queued, "inQueue": 3}
    runpod.job_counts[ids["light"]] = {**queued, "inQueue": 5}

    doctor = cli("doctor", "--all", "--json")
    sections = json.loads(doctor.out)["endpoints"]
    assert {k: v["endpointId"] for k, v in sections.items()} == ids
    text = cli("doctor", "--endpoint", "video")
    assert f"endpoint video ({ids['video']})" in text.out
    assert re.search(r"\[\w+\] [\w-]+ \(endpoint video\): ", text.out), text.out
    # Every command the advice gives acts on this endpoint, not on a guess.
    commands = re.findall(r"`python -m deploy [^`]*`", text.out)
    assert commands and all("--endpoint video" in c for c in commands), commands

    workers = json.loads(cli("workers", "--endpoint", "video", "--json").out)
    assert workers["endpoint"] == "video" and workers["summary"]["unhealthy"] == 1

    # The ids can come from the environment instead of a lookup by name.
    monkeypatch.setenv("RUNPOD_ENDPOINT_IDS", f"light={ids['light']},video={ids['video']}")
    purge = cli("purge", "--endpoint", "light")
    assert purge.code == 0
    assert f"removed 5 queued job(s) from endpoint light ({ids['light']})" in purge.out
    assert runpod.job_counts[ids["video"]]["inQueue"] == 3  # the other endpoint's queue stays


def test_one_spec_acts_as_before(cli, runpod, endpoints):
    endpoints(only=_spec("only", None))
    assert cli("apply", "--offline").code == 0
    (eid,) = runpod.endpoints
    runpod.job_counts[eid] = {
        "completed": 0,
        "failed": 0,
        "inProgress": 0,
        "inQueue": 2,
        "retried": 0,
    }
    purge = cli("purge")
    assert purge.code == 0 and "removed 2" in purge.out


def test_every_worker_package_is_in_a_requirement_set_and_every_set_is_pinned():
    """Dockerfile.gpu installs the sets with gpu_worker/requirements.txt as constraints: a
    pin left out of every set would never be installed, a name not pinned would float."""

    def names(path: Path) -> set[str]:
        lines = path.read_text().splitlines()
        found = (re.split(r"[=<>!~\[; ]", line.strip(), maxsplit=1)[0] for line in lines)
        return {n.lower().replace("_", "-") for n in found if n and not n.startswith("#")}

    pinned = names(ROOT / "gpu_worker" / "requirements.txt")
    sets = ROOT / "deploy" / "image" / "requirements"
    in_sets = set().union(*(names(p) for p in sets.glob("*.txt")))
    assert pinned - in_sets == set(), "add these to a set in deploy/image/requirements"
    assert in_sets - pinned == set(), "pin these in gpu_worker/requirements.txt"
    offered = json.loads((ROOT / "app" / "pipelines.json").read_text())["pipelines"]
    assert sorted(p.stem for p in sets.glob("*.txt") if p.stem != "base") == sorted(offered)


def _dockerfile_runs() -> list[str]:
    """Dockerfile.gpu's RUN commands, continuation lines joined, comments dropped."""
    runs, current = [], ""
    for raw in (ROOT / "Dockerfile.gpu").read_text().splitlines():
        if raw.strip().startswith("#") or not raw.strip():
            continue
        current += raw.rstrip().removesuffix("\\") + "\n"
        if not raw.rstrip().endswith("\\"):
            if current.startswith("RUN "):
                runs.append(current[4:])
            current = ""
    return runs


def _install_step(tmp_path, pipelines: str):
    """Run the image's install step with `pip` replaced by `echo pip` (no Docker here)."""
    (step,) = [r for r in _dockerfile_runs() if "pip install" in r]
    shutil.copytree(ROOT / "deploy" / "image" / "requirements", tmp_path / "requirements")
    return subprocess.run(
        ["sh", "-c", step.replace("pip install", "echo pip install")],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "PIPELINES": pipelines},
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_image_installs_only_the_sets_of_its_pipelines(tmp_path):
    light = _install_step(tmp_path / "light", "echo")
    assert light.returncode == 0, light.stderr
    assert light.stdout.split() == [
        *("pip", "install", "-c", "gpu_worker/requirements.txt"),
        *("-r", "requirements/base.txt", "-r", "requirements/echo.txt"),
    ]
    video = _install_step(tmp_path / "video", "video_enhance,upscale")
    assert "-r requirements/upscale.txt" in video.stdout and "echo.txt" not in video.stdout


def test_an_unknown_pipeline_stops_the_build_with_the_known_names(tmp_path):
    result = _install_step(tmp_path, "echo,ecko")
    assert result.returncode == 1
    assert "PIPELINES: no pipeline 'ecko'; known: echo upscale video_enhance" in result.stderr


def test_the_default_build_carries_every_pipeline_the_app_offers():
    text = (ROOT / "Dockerfile.gpu").read_text()
    (default,) = re.findall(r"^ARG PIPELINES=(\S+)$", text, flags=re.M)
    offered = json.loads((ROOT / "app" / "pipelines.json").read_text())["pipelines"]
    assert sorted(default.split(",")) == sorted(offered)
    assert "PIPELINES=${PIPELINES}" in text  # the worker can read what it was built with
