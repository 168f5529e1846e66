"""plan / apply / apply --recreate / destroy against the RunPod stand-in, which validates
every request and response against the published REST v2 spec."""

from __future__ import annotations

import json

import pytest
import requests

from tests.deploy.ops.conftest import RUNPOD_KEY

HF = "hf_SECRETtokenDoNotPrint0123456789"


def _no_secrets(result):
    assert RUNPOD_KEY not in result.text
    assert HF not in result.text


def _apply(cli, path, *extra):
    result = cli("apply", "--spec", str(path), "--offline", *extra)
    _no_secrets(result)
    return result


def _only(items):
    assert len(items) == 1, items
    return next(iter(items.values()))


def test_plan_apply_create_then_noop(cli, runpod, spec_file):
    path = spec_file()
    plan = cli("plan", "--spec", str(path), "--json")
    assert plan.code == 1, plan.text
    actions = {(c["kind"], c["action"]) for c in json.loads(plan.out)["changes"]}
    assert actions == {("volume", "create"), ("template", "create"), ("endpoint", "create")}
    assert runpod.writes() == []  # plan changes nothing

    created = _apply(cli, path)
    assert created.code == 0, created.text
    volume, template, endpoint = (
        _only(runpod.volumes),
        _only(runpod.templates),
        _only(runpod.endpoints),
    )
    assert (volume["name"], volume["size"], volume["dataCenter"]) == (
        "gpu-jobs-models",
        100,
        "US-TX-3",
    )
    assert template["serverless"] is True and template["startSsh"] is False
    assert endpoint["name"] == "gpu-jobs"
    assert endpoint["gpu"]["pools"] == ["ADA_48_PRO", "AMPERE_48", "AMPERE_80"]
    assert endpoint["workers"] == {"min": 0, "max": 3, "idleTimeout": 5}
    assert endpoint["scaling"] == {"type": "QUEUE_DELAY", "queueDelay": 4}
    assert endpoint["timeout"] == 1_800_000 and endpoint["flashboot"] == "FLASHBOOT"
    assert endpoint["networkVolumes"] == [volume["id"]]
    assert endpoint["image"] == "docker.io/acme/gpu-jobs-worker:2026-11-28"
    # Secrets by reference: the exported value, and RunPod's own secret syntax.
    assert endpoint["env"]["HF_TOKEN"] == HF
    assert endpoint["env"]["SENTRY_DSN"] == "{{ RUNPOD_SECRET_sentry_dsn }}"
    assert endpoint["id"] in created.out

    writes = len(runpod.writes())
    again = _apply(cli, path)
    assert again.code == 0 and "nothing to do" in again.out
    assert len(runpod.writes()) == writes  # idempotent: no write at all
    plan = cli("plan", "--spec", str(path))
    assert plan.code == 0 and "nothing to change" in plan.out
    _no_secrets(plan)


def test_update_scaling_patches_only_what_changed(cli, runpod, spec_file):
    assert _apply(cli, spec_file()).code == 0
    eid = _only(runpod.endpoints)["id"]
    before = len(runpod.writes())
    path = spec_file(
        {"workers_max = 3": "workers_max = 5", "idle_timeout_s = 5": "idle_timeout_s = 30"}
    )
    plan = cli("plan", "--spec", str(path))
    assert plan.code == 1 and "workers.max" in plan.out and "workers.idleTimeout" in plan.out
    result = _apply(cli, path)
    assert result.code == 0, result.text
    patches = runpod.writes()[before:]
    assert [(m, p) for m, p, _ in patches] == [("PATCH", f"/v2/serverless/{eid}")]
    assert patches[0][2] == {"workers": {"min": 0, "max": 5, "idleTimeout": 30}}
    assert runpod.endpoints[eid]["workers"]["max"] == 5
    assert "release v2 verified" in result.out


def test_template_change_reaches_the_endpoint_through_a_new_release(cli, runpod, spec_file):
    assert _apply(cli, spec_file()).code == 0
    eid = _only(runpod.endpoints)["id"]
    tid = _only(runpod.templates)["id"]
    new_image = "docker.io/acme/gpu-jobs-worker:2026-11-29"
    path = spec_file(
        {
            "gpu-jobs-worker:2026-11-28": "gpu-jobs-worker:2026-11-29",
            "MODEL_DIR =": 'EXTRA = "1"\nMODEL_DIR =',
        }
    )
    plan = cli("plan", "--spec", str(path))
    assert "new release" in plan.out and "env.EXTRA" in plan.out
    before = len(runpod.writes())
    result = _apply(cli, path)
    assert result.code == 0, result.text
    writes = [(m, p) for m, p, _ in runpod.writes()[before:]]
    assert writes == [("PATCH", f"/v2/templates/{tid}"), ("PATCH", f"/v2/serverless/{eid}")]
    assert runpod.writes()[-1][2] == {"templateId": tid}
    assert runpod.templates[tid]["image"] == new_image
    assert runpod.endpoints[eid]["image"] == new_image  # reached the endpoint
    assert runpod.endpoints[eid]["env"]["EXTRA"] == "1"
    assert runpod.releases[eid][0]["version"] == 2
    assert "release v2 verified" in result.out and "image" in result.out


def test_a_change_that_never_makes_a_release_fails_apply(cli, runpod, spec_file):
    assert _apply(cli, spec_file()).code == 0
    runpod.freeze_releases = True
    path = spec_file({"gpu-jobs-worker:2026-11-28": "gpu-jobs-worker:2026-11-30"})
    result = _apply(cli, path, "--release-wait", "0.5")
    assert result.code == 1
    assert "has not reached it" in result.out


def test_a_release_without_the_new_image_fails_apply(cli, runpod, spec_file):
    assert _apply(cli, spec_file()).code == 0
    runpod.ignore_template_on_patch = True
    # workers.max makes a release; the env change never reaches the endpoint.
    path = spec_file(
        {"MODEL_DIR =": 'EXTRA = "1"\nMODEL_DIR =', "workers_max = 3": "workers_max = 4"}
    )
    result = _apply(cli, path, "--release-wait", "2")
    assert result.code == 1
    assert "release v2" in result.out and "does not carry env.EXTRA" in result.out


def test_recreate_replaces_the_endpoint(cli, runpod, spec_file):
    path = spec_file()
    assert _apply(cli, path).code == 0
    old = _only(runpod.endpoints)["id"]
    result = _apply(cli, path, "--recreate")
    assert result.code == 0, result.text
    new = _only(runpod.endpoints)["id"]
    assert new != old
    assert f"RUNPOD_ENDPOINT_ID={new}" in result.out
    scale_down = [b for m, p, b in runpod.writes() if m == "PATCH" and p.endswith(old)]
    assert scale_down == [{"workers": {"min": 0, "max": 0}}]  # scaled to zero before delete
    assert len(runpod.volumes) == 1  # the volume and its models stay


def test_volume_grows_but_never_moves(cli, runpod, spec_file):
    assert _apply(cli, spec_file()).code == 0
    vid = _only(runpod.volumes)["id"]
    assert _apply(cli, spec_file({"size_gb = 100": "size_gb = 150"})).code == 0
    assert runpod.volumes[vid]["size"] == 150
    moved = _apply(cli, spec_file({'datacenter = "US-TX-3"': 'datacenter = "EU-RO-1"'}))
    assert moved.code == 1
    assert "immutable" in moved.out
    assert runpod.volumes[vid]["dataCenter"] == "US-TX-3"


def test_destroy_needs_yes_and_keeps_the_volume(cli, runpod, spec_file):
    path = spec_file()
    assert _apply(cli, path).code == 0
    refused = cli("destroy", "--spec", str(path))
    assert refused.code == 2 and "--yes" in refused.err
    assert len(runpod.endpoints) == 1
    done = cli("destroy", "--spec", str(path), "--yes")
    assert done.code == 0, done.text
    assert runpod.endpoints == {} and runpod.templates == {}
    assert len(runpod.volumes) == 1 and "kept network volume" in done.out
    assert cli("destroy", "--spec", str(path), "--yes", "--include-volume").code == 0
    assert runpod.volumes == {}


def test_apply_refuses_on_check_errors_and_missing_secrets(cli, runpod, spec_file, monkeypatch):
    bad = _apply(cli, spec_file({"/runpod-volume/models": "/workspace/models"}))
    assert bad.code == 1 and "workspace-path" in bad.out and "apply refused" in bad.out
    monkeypatch.delenv("HF_TOKEN")
    missing = _apply(cli, spec_file())
    assert missing.code == 1 and "HF_TOKEN not set" in missing.out
    assert runpod.writes() == []


def test_bad_api_key_is_a_clear_error(cli, runpod, spec_file, monkeypatch):
    monkeypatch.setenv("RUNPOD_API_KEY", "rpa_wrong_key_0123456789")
    result = cli("plan", "--spec", str(spec_file()))
    assert result.code == 2
    assert "refused the API key" in result.err
    assert "rpa_wrong_key_0123456789" not in result.text
    monkeypatch.delenv("RUNPOD_API_KEY")
    assert "RUNPOD_API_KEY is not set" in cli("plan", "--spec", str(spec_file())).err


def test_the_standin_rejects_what_the_spec_rejects(runpod):
    headers = {"Authorization": f"Bearer {RUNPOD_KEY}"}
    base = runpod.rest_url
    cases = [
        {
            "name": "x",
            "type": "QUEUE",
            "image": "a:1",
            "gpu": {"pools": ["ADA_24"]},
            "scaling": {"type": "QUEUE_DELAY", "queueDelay": 4},
            "bogus": 1,
        },  # unknown field
        {"name": "x", "type": "QUEUE", "image": "a:1", "gpu": {"pools": ["ADA_24"]}},  # no scaling
        {
            "name": "x",
            "type": "QUEUE",
            "image": "a:1",
            "gpu": {"pools": ["ADA_24"]},
            "scaling": {"type": "QUEUE_DELAY", "queueDelay": 4},
            "timeout": "600",
        },  # wrong type
        {
            "name": "x",
            "type": "QUEUE",
            "gpu": {"pools": ["ADA_24"]},
            "scaling": {"type": "QUEUE_DELAY", "queueDelay": 4},
        },  # no image, no templateId
    ]
    for body in cases:
        resp = requests.post(f"{base}/serverless", json=body, headers=headers, timeout=5)
        assert resp.status_code == 400, body
    assert len(runpod.violations) >= 4
    assert any("bogus" in v for v in runpod.violations)
    runpod.violations.clear()  # these were deliberate


@pytest.mark.parametrize("command", ["gpus"])
def test_gpus_lists_pools_with_price_and_stock(cli, runpod, command):
    result = cli(command)
    assert result.code == 0, result.text
    assert "ADA_48_PRO" in result.out and "L40S" in result.out
    data = json.loads(cli(command, "--json").out)
    pools = {p["pool"]: p for p in data["pools"]}
    assert pools["AMPERE_48"]["gpus"] == ["RTX A6000", "A40"]
    assert pools["AMPERE_48"]["availability"] == "HIGH"
    assert pools["AMPERE_80"]["availability"] == "NONE"
    assert pools["AMPERE_80"]["dataCenters"] == []
    assert pools["ADA_48_PRO"]["pricePerHour"] == pytest.approx(2.86)


def test_recreate_refuses_while_the_balance_is_negative(cli, runpod, spec_file):
    path = spec_file()
    assert _apply(cli, path).code == 0
    eid = _only(runpod.endpoints)["id"]
    runpod.balance["clientBalance"] = -1.5
    result = _apply(cli, path, "--recreate")
    assert result.code == 1 and "Add funds first" in result.out
    assert list(runpod.endpoints) == [eid]


def test_check_reads_gpu_stock_in_the_volume_datacenter(cli, runpod, spec_file):
    # The stand-in's catalog has no A100 (AMPERE_80) stock anywhere.
    path = spec_file({'["ADA_48_PRO", "AMPERE_48", "AMPERE_80"]': '["AMPERE_80"]'})
    result = cli("check", "--spec", str(path))
    assert result.code == 0  # warnings only: advice, not a failed check
    assert "[warning] no-stock-in-datacenter" in result.out
    assert "ADA_48_PRO" in result.out  # tiers that do have stock in US-TX-3
    assert cli("check", "--spec", str(spec_file())).code == 0
