"""Each check rule with a spec that trips it and one that passes; spec parsing errors."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path

import pytest

from deploy.ops.check import RULES, CheckContext, run_checks
from deploy.ops.fleet import FLEET_RULES
from deploy.ops.sizes import ModelSize
from deploy.ops.spec import parse_spec
from tests.deploy.ops.conftest import GB, GOOD_SPEC

ROOT = Path(__file__).resolve().parents[3]

BASE = tomllib.loads(GOOD_SPEC)
ENV = {"HF_TOKEN": "hf_x"}


def _set(path: str, value):
    def mutate(data):
        *parents, last = path.split(".")
        node = data
        for key in parents:
            node = node.setdefault(key, {})
        if value is DELETE:
            node.pop(last, None)
        else:
            node[last] = value

    return mutate


DELETE = object()
MODELS = [{"repo": "Wan-AI/Wan2.1-T2V-14B"}]
SIZES = {"Wan-AI/Wan2.1-T2V-14B": ModelSize("Wan-AI/Wan2.1-T2V-14B", "main", 69 * GB, 5)}

# rule id -> (mutations that trip it, mutations that pass, model sizes known)
CASES = {
    "secret-inline": (
        [_set("env.HF_TOKEN", "hf_abcdefghijklmnopqrstuvwxyz0123")],
        [_set("env.HF_TOKEN", "{{ RUNPOD_SECRET_hf_token }}")],
    ),
    "secret-in-start-command": (
        [
            _set(
                "endpoint.args",
                "bash -c 'git clone https://ghp_abcdefghijklmnopqrstuvwxyz0123@"
                "github.com/acme/h.git /h && python /h/handler.py'",
            )
        ],
        [_set("endpoint.args", "bash -c 'git clone https://$GH_TOKEN@github.com/acme/h.git /h'")],
    ),
    "masked-failure": (
        [
            _set(
                "endpoint.args",
                "bash -c 'git clone https://github.com/a/b /h || true; python /h/handler.py'",
            )
        ],
        [_set("endpoint.args", "bash -c 'git clone https://github.com/a/b /h && python x.py'")],
    ),
    "runtime-install": (
        [_set("endpoint.args", "bash -c 'pip install -r /req.txt && python -u handler.py'")],
        [_set("endpoint.args", "python -u -m gpu_worker")],
    ),
    "start-command-override": (
        [_set("endpoint.args", "python -u -m gpu_worker")],
        [_set("endpoint.args", "")],
    ),
    "workspace-path": (
        [_set("env.MODEL_DIR", "/workspace/models")],
        [_set("env.MODEL_DIR", "/runpod-volume/models")],
    ),
    "cache-off-volume": (
        [_set("env.HF_HOME", "/root/.cache/huggingface")],
        [_set("env.HF_HOME", "/runpod-volume/huggingface")],
    ),
    "image-size-unknown": (
        [_set("endpoint.image_compressed_gb", DELETE)],
        [_set("endpoint.image_compressed_gb", 8)],
    ),
    # 16 GB compressed -> 16 * 2.5 + 20 = 60 GB
    "container-disk-image": (
        [_set("endpoint.image_compressed_gb", 16), _set("endpoint.container_disk_gb", 50)],
        [_set("endpoint.image_compressed_gb", 16), _set("endpoint.container_disk_gb", 60)],
    ),
    # no volume: 8 * 2.5 + 69 * 2 + 20 = 178 GB
    "container-disk-models": (
        [_set("volume", DELETE), _set("models", MODELS), _set("endpoint.container_disk_gb", 150)],
        [_set("volume", DELETE), _set("models", MODELS), _set("endpoint.container_disk_gb", 178)],
    ),
    # 69 GB * 2 + 5 = 143 GB (the notes' 50 GB volume for a "26 GB" model)
    "volume-too-small": (
        [_set("models", MODELS), _set("volume.size_gb", 50)],
        [_set("models", MODELS), _set("volume.size_gb", 143)],
    ),
    "large-models-no-volume": (
        [_set("volume", DELETE), _set("models", MODELS), _set("endpoint.container_disk_gb", 200)],
        [_set("models", MODELS), _set("volume.size_gb", 150)],
    ),
    "unknown-gpu-tier": (
        [_set("endpoint.gpu_tiers", ["NVIDIA L40S"])],
        [_set("endpoint.gpu_tiers", ["ADA_48_PRO", "AMPERE_48"])],
    ),
    "single-gpu-tier": (
        [_set("endpoint.gpu_tiers", ["AMPERE_48"])],
        [_set("endpoint.gpu_tiers", ["AMPERE_48", "ADA_48_PRO"])],
    ),
    "no-stock-in-datacenter": (
        [_set("endpoint.gpu_tiers", ["AMPERE_80", "ADA_80_PRO"])],
        [_set("endpoint.gpu_tiers", ["AMPERE_80", "AMPERE_48"])],
    ),
    "execution-timeout-short": (
        [_set("endpoint.execution_timeout_s", 600)],
        [_set("endpoint.execution_timeout_s", 900)],
    ),
    "execution-timeout-range": (
        [_set("endpoint.execution_timeout_s", 2)],
        [_set("endpoint.execution_timeout_s", 3600)],
    ),
    "idle-timeout-range": (
        [_set("endpoint.idle_timeout_s", 0)],
        [_set("endpoint.idle_timeout_s", 1)],
    ),
    "workers-range": (
        [_set("endpoint.workers_min", 4), _set("endpoint.workers_max", 2)],
        [_set("endpoint.workers_min", 0), _set("endpoint.workers_max", 2)],
    ),
    "workers-quota": ([_set("endpoint.workers_max", 8)], [_set("endpoint.workers_max", 5)]),
    "always-on-worker": ([_set("endpoint.workers_min", 1)], [_set("endpoint.workers_min", 0)]),
    "scaler-value": (
        [_set("endpoint.scaler", {"type": "REQUEST_COUNT", "value": 0.5})],
        [_set("endpoint.scaler", {"type": "REQUEST_COUNT", "value": 2})],
    ),
    "gpu-count": ([_set("endpoint.gpu_count", 0)], [_set("endpoint.gpu_count", 2)]),
    "mutable-image-tag": (
        [_set("endpoint.image", "acme/worker:latest")],
        [_set("endpoint.image", "acme/worker@sha256:" + "a" * 64)],
    ),
    "volume-size-range": ([_set("volume.size_gb", 5)], [_set("volume.size_gb", 10)]),
    "unknown-datacenter": (
        [_set("volume.datacenter", "US-TEXAS")],
        [_set("volume.datacenter", "EU-RO-1")],
    ),
    "secret-ref-unset": (
        [_set("env.OTHER_TOKEN", {"from_env": "NOT_EXPORTED_ANYWHERE"})],
        [_set("env.OTHER_TOKEN", {"from_env": "HF_TOKEN"})],
    ),
}


# A catalog as GET /v2/catalog/gpus?include=AVAILABILITY&product=SERVERLESS answers it.
CATALOG = [
    {"pool": "AMPERE_48", "dataCenters": [{"id": "US-TX-3", "availability": "HIGH"}]},
    {
        "pool": "AMPERE_80",
        "dataCenters": [
            {"id": "US-TX-3", "availability": "NONE"},
            {"id": "EU-RO-1", "availability": "LOW"},
        ],
    },
    {"pool": "ADA_48_PRO", "dataCenters": [{"id": "US-TX-3", "availability": "LOW"}]},
    {"pool": "ADA_80_PRO"},
]


def _findings(mutations, sizes=None, errors=None):
    data = copy.deepcopy(BASE)
    for mutate in mutations:
        mutate(data)
    spec = parse_spec(data)
    ctx = CheckContext(
        model_sizes=sizes or {}, size_errors=errors or {}, environ=ENV, catalog=CATALOG
    )
    return {f.rule for f in run_checks(spec, ctx)}, run_checks(spec, ctx)


def test_the_good_spec_passes_every_rule():
    rules, _ = _findings([])
    assert rules == set()


def test_every_rule_has_a_tripping_and_a_passing_case():
    assert set(CASES) | {"model-size-unverified"} == {r.id for r in RULES}


@pytest.mark.parametrize("rule_id", sorted(CASES))
def test_rule_trips_and_passes(rule_id):
    trip, ok = CASES[rule_id]
    tripped, findings = _findings(trip, SIZES)
    assert rule_id in tripped
    finding = next(f for f in findings if f.rule == rule_id)
    assert finding.fix and finding.why and finding.message
    passed, _ = _findings(ok, SIZES)
    assert rule_id not in passed


def test_model_size_unverified_when_the_hub_cannot_say():
    rules, _ = _findings([_set("models", MODELS)], errors={"Wan-AI/Wan2.1-T2V-14B": "offline"})
    assert "model-size-unverified" in rules
    rules, _ = _findings([_set("models", MODELS), _set("volume.size_gb", 150)], SIZES)
    assert "model-size-unverified" not in rules


def test_fixes_name_concrete_values():
    _, findings = _findings(CASES["single-gpu-tier"][0])
    fix = next(f.fix for f in findings if f.rule == "single-gpu-tier")
    assert "ADA_48_PRO" in fix and "AMPERE_80" in fix
    _, findings = _findings(CASES["volume-too-small"][0], SIZES)
    assert "143" in next(f.fix for f in findings if f.rule == "volume-too-small")
    _, findings = _findings(CASES["workspace-path"][0])
    assert "/runpod-volume/models" in next(f.fix for f in findings if f.rule == "workspace-path")


def test_inline_secret_is_never_echoed(cli, spec_file, monkeypatch):
    token = "hf_abcdefghijklmnopqrstuvwxyz0123"
    path = spec_file({'HF_TOKEN = { from_env = "HF_TOKEN" }': f'HF_TOKEN = "{token}"'})
    monkeypatch.setenv("HF_TOKEN", "x")
    result = cli("check", "--spec", str(path), "--offline")
    assert result.code == 1
    assert "secret-inline" in result.out
    assert token not in result.text
    assert "[error] secret-inline" in result.out


def test_check_cli_exit_codes_and_json(cli, spec_file, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "x")
    ok = cli("check", "--spec", str(spec_file()))
    assert ok.code == 0, ok.text
    assert "checks pass" in ok.out
    bad = cli(
        "check", "--spec", str(spec_file({"idle_timeout_s = 5": "idle_timeout_s = 0"})), "--json"
    )
    assert bad.code == 1
    assert '"rule": "idle-timeout-range"' in bad.out


def test_check_ends_with_a_count_and_fails_only_on_errors(cli, spec_file, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "x")
    warned = cli(
        "check",
        "--spec",
        str(spec_file({'args = ""': 'args = "python -u -m gpu_worker"'})),
        "--offline",
    )
    assert "[warning] start-command-override" in warned.out
    assert warned.out.rstrip().splitlines()[-1] == "1 warning, 0 errors"
    assert warned.code == 0, "warnings are advice: a CI step on check stays green"
    failed = cli(
        "check", "--spec", str(spec_file({"idle_timeout_s = 5": "idle_timeout_s = 0"})), "--offline"
    )
    assert failed.out.rstrip().splitlines()[-1].endswith(", 1 error")
    assert failed.code == 1
    clean = cli("check", "--spec", str(spec_file()))
    assert clean.out.rstrip().splitlines()[-1] == "0 warnings, 0 errors"


@pytest.mark.parametrize(
    ("replace", "message"),
    [
        (
            {"gpu_count = 1": "gpu_count = 1\ngpu_tier = 'x'"},
            "unknown key(s) in [endpoint]: gpu_tier",
        ),
        ({"workers_max = 3": 'workers_max = "3"'}, "endpoint.workers_max must be int"),
        ({"flashboot = true": "flashboot = 1"}, "endpoint.flashboot must be bool"),
        ({'name = "gpu-jobs"\n': ""}, "[endpoint] needs 'name'"),
        ({'HF_TOKEN = { from_env = "HF_TOKEN" }': 'HF_TOKEN = { vault = "x" }'}, "env.HF_TOKEN"),
        ({"[env]": "[env"}, "not valid TOML"),
    ],
)
def test_bad_spec_is_a_usage_error(cli, spec_file, replace, message):
    result = cli("check", "--spec", str(spec_file(replace)), "--offline")
    assert result.code == 2
    assert message in result.err


def test_missing_spec_file(cli, tmp_path):
    result = cli("check", "--spec", str(tmp_path / "nope.toml"))
    assert result.code == 2 and "not found" in result.err


def test_committed_endpoint_specs_are_valid_and_clean(cli, hub, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "x")
    monkeypatch.setenv("DEPLOY_ENDPOINTS_DIR", str(ROOT / "deploy" / "endpoints"))
    hub.add_repo("ai-forever/Real-ESRGAN", {"RealESRGAN_x2.pth": 67_061_000})
    result = cli("check")
    assert result.code == 0, result.text
    assert "light serves echo; video serves video_enhance, upscale" in result.out


def test_list_names_every_rule(cli):
    result = cli("check", "--list")
    assert result.code == 0
    for r in RULES:
        assert r.id in result.out


def test_the_runbook_lists_every_check_rule():
    runbook = (ROOT / "docs" / "operations.md").read_text()
    for r in [*RULES, *FLEET_RULES]:
        assert f"`{r.id}`" in runbook, r.id
