"""The model cache against a local server speaking the hub's protocol."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gpu_worker.errors import ModelLoadError
from gpu_worker.model_cache import MARKER, ModelCache, placement_warnings
from gpu_worker.pipelines import ModelSpec
from gpu_worker.transfer import TransferPolicy
from tests.gpu_worker.conftest import WEIGHTS_REPO, sample_bytes

ROOT = Path(__file__).resolve().parents[2]
FAST = TransferPolicy(connect_timeout_s=2, read_timeout_s=5, attempts=4, backoff_s=0.05)
SPEC = ModelSpec(WEIGHTS_REPO, "main", ("config.json", "model.safetensors"))


def files_under(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*") if p.is_file()}


def test_downloads_matching_files_once_and_records_the_revision(hub, tmp_path):
    cache = ModelCache(tmp_path / "models", endpoint=hub.url, policy=FAST)
    seen = []
    folder = cache.ensure(SPEC, seen.append)

    repo = hub.repos[WEIGHTS_REPO]
    assert (folder / "model.safetensors").read_bytes() == repo.files["model.safetensors"]
    assert not (folder / "README.md").exists()  # not in the patterns
    marker = json.loads((folder / MARKER).read_text())
    assert marker["revision"] == "main" and marker["commit"] == repo.sha
    assert marker["files"]["model.safetensors"] == len(repo.files["model.safetensors"])
    # Straight into the folder: no hub cache copy, no partial files left, one lock file only.
    assert files_under(tmp_path / "models") == {
        f"{SPEC.folder()}/config.json",
        f"{SPEC.folder()}/model.safetensors",
        f"{SPEC.folder()}/{MARKER}",
        f".locks/{SPEC.folder().replace('/', '@')}.lock",
    }
    assert hub.bytes_served("model.safetensors") == len(repo.files["model.safetensors"])
    assert seen and seen[-1].total_bytes == sum(
        len(repo.files[p]) for p in ("config.json", "model.safetensors")
    )

    # With the marker there, a new worker starts without asking the hub anything.
    calls = len(hub.requests)
    again = ModelCache(tmp_path / "models", endpoint="http://127.0.0.1:9", policy=FAST)
    assert again.ensure(SPEC) == folder
    assert len(hub.requests) == calls


def test_nested_files_with_odd_names_keep_their_paths(hub, tmp_path):
    hub.add_repo("test-org/nested", {"unet/weights v2.bin": b"abc" * 100, "other.txt": b"x"})
    cache = ModelCache(tmp_path / "models", endpoint=hub.url, policy=FAST)
    folder = cache.ensure(ModelSpec("test-org/nested", "main", ("unet/*",)))
    assert (folder / "unet" / "weights v2.bin").read_bytes() == b"abc" * 100
    assert not (folder / "other.txt").exists()


def test_refuses_when_the_volume_is_short_of_the_real_sizes(hub, tmp_path):
    hub.reported_size["model.safetensors"] = 50 * 10**12  # the tree API says 50 TB
    cache = ModelCache(tmp_path / "models", endpoint=hub.url, policy=FAST)
    with pytest.raises(ModelLoadError) as err:
        cache.ensure(SPEC)
    message = str(err.value)
    assert "not enough space" in message and "50000" in message
    assert "grow the network volume" in message
    assert hub.served == []  # refused before downloading a byte


def test_resumes_a_dropped_download_with_a_range_request(hub, tmp_path):
    big = sample_bytes(300_000)
    hub.add_repo("test-org/big", {"weights.bin": big})
    hub.drop_after["weights.bin"] = 100_000
    cache = ModelCache(tmp_path / "models", endpoint=hub.url, policy=FAST)
    folder = cache.ensure(ModelSpec("test-org/big"))
    assert (folder / "weights.bin").read_bytes() == big
    starts = [s.start for s in hub.served if s.path == "weights.bin"]
    assert starts[0] == 0 and starts[1] >= 100_000
    assert hub.bytes_served("weights.bin") == len(big)  # nothing fetched twice


def test_a_link_that_keeps_dropping_but_moving_still_finishes(hub, tmp_path):
    big = sample_bytes(100_000)
    hub.add_repo("test-org/flaky", {"weights.bin": big})
    hub.drop_every["weights.bin"] = 16_384  # more drops than attempts, progress every time
    folder = ModelCache(tmp_path / "models", endpoint=hub.url, policy=FAST).ensure(
        ModelSpec("test-org/flaky")
    )
    assert (folder / "weights.bin").read_bytes() == big
    assert len([s for s in hub.served if s.path == "weights.bin"]) > FAST.attempts


def test_a_corrupt_download_fails_its_checksum_and_is_not_kept(hub, tmp_path):
    hub.add_repo("test-org/corrupt", {"weights.bin": sample_bytes(5000)})
    hub.wrong_sha256.add("weights.bin")
    cache = ModelCache(tmp_path / "models", endpoint=hub.url, policy=FAST)
    with pytest.raises(ModelLoadError, match="weights.bin failed its sha256 check"):
        cache.ensure(ModelSpec("test-org/corrupt"))
    assert cache.cached(ModelSpec("test-org/corrupt")) is None
    assert not list((tmp_path / "models").rglob("weights.bin*"))


def _download_cli(hub_url: str, model_dir: Path, repo: str) -> subprocess.Popen:
    env = dict(os.environ, HF_ENDPOINT=hub_url, PYTHONPATH=str(ROOT), TRANSFER_BACKOFF_S="0.05")
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gpu_worker.model_cache",
            "--repo",
            repo,
            "--model-dir",
            str(model_dir),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.05)


@pytest.mark.timeout(90)
def test_resumes_after_the_worker_is_killed_mid_download(hub, tmp_path):
    big = sample_bytes(2_000_000)
    hub.add_repo("test-org/big", {"weights.bin": big})
    hub.throttle_bps = 500_000  # about four seconds for the whole file
    models = tmp_path / "models"
    first = _download_cli(hub.url, models, "test-org/big")
    partial = models / ModelSpec("test-org/big").folder() / ".partial" / "weights.bin.part"
    try:
        _wait(lambda: partial.exists() and partial.stat().st_size > 300_000, 30, "partial file")
    finally:
        first.send_signal(signal.SIGKILL)
        first.communicate(timeout=10)
    kept = partial.stat().st_size
    hub.throttle_bps = 0
    second = _download_cli(hub.url, models, "test-org/big")
    out, err = second.communicate(timeout=60)
    assert second.returncode == 0, err
    folder = Path(json.loads(out.strip().splitlines()[-1])["path"])
    assert hashlib.sha256((folder / "weights.bin").read_bytes()).hexdigest() == (
        hashlib.sha256(big).hexdigest()
    )
    resumed = [s for s in hub.served if s.path == "weights.bin"][-1]
    assert resumed.start >= kept > 0
    assert hub.bytes_served("weights.bin") < len(big) + kept  # the kept part was not refetched


@pytest.mark.timeout(90)
def test_two_workers_sharing_a_volume_download_once(hub, tmp_path):
    big = sample_bytes(1_500_000)
    hub.add_repo("test-org/big", {"weights.bin": big, "config.json": b"{}"})
    hub.throttle_bps = 500_000  # three seconds: both workers start well within that
    models = tmp_path / "models"
    workers = [_download_cli(hub.url, models, "test-org/big") for _ in range(2)]
    results = [w.communicate(timeout=60) for w in workers]
    for worker, (_out, err) in zip(workers, results, strict=True):
        assert worker.returncode == 0, err
    assert hub.bytes_served("weights.bin") == len(big)
    assert len([s for s in hub.served if s.path == "weights.bin"]) == 1
    assert any("another worker is downloading" in err for _, err in results)


def test_token_comes_from_the_environment_and_never_into_messages(hub, tmp_path, monkeypatch):
    hub.token = "hf_secret_token_123"
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with pytest.raises(ModelLoadError) as err:
        ModelCache(tmp_path / "a", endpoint=hub.url, policy=FAST).ensure(SPEC)
    assert "HF_TOKEN is not set" in str(err.value)

    monkeypatch.setenv("HF_TOKEN", "hf_secret_token_123")
    folder = ModelCache(tmp_path / "b", endpoint=hub.url, policy=FAST).ensure(SPEC)
    assert (folder / "model.safetensors").is_file()
    assert "Bearer hf_secret_token_123" in hub.auth_seen
    assert "hf_secret_token_123" not in (folder / MARKER).read_text()


def test_unknown_repo_and_revision_are_named(hub, tmp_path):
    cache = ModelCache(tmp_path / "models", endpoint=hub.url, policy=FAST)
    with pytest.raises(ModelLoadError, match="repo not found"):
        cache.ensure(ModelSpec("test-org/nope"))
    with pytest.raises(ModelLoadError, match="revision 'v9' does not exist"):
        cache.ensure(ModelSpec(WEIGHTS_REPO, "v9"))
    with pytest.raises(ModelLoadError, match="no file matches"):
        cache.ensure(ModelSpec(WEIGHTS_REPO, "main", ("*.gguf",)))


def test_unreachable_hub_is_a_clear_error(tmp_path):
    cache = ModelCache(tmp_path / "models", endpoint="http://127.0.0.1:9", policy=FAST)
    with pytest.raises(ModelLoadError, match="cannot list the repo's files.*HF_ENDPOINT"):
        cache.ensure(SPEC)


def test_workspace_paths_are_flagged(monkeypatch):
    monkeypatch.setenv("RUNPOD_POD_ID", "w1")
    monkeypatch.delenv("LOCAL_ENDPOINT_WORKER", raising=False)
    warnings = placement_warnings(Path("/workspace/models"), "/workspace/hf")
    assert len(warnings) == 2
    assert "on RunPod Serverless" in warnings[0] and "/runpod-volume" in warnings[0]
    assert placement_warnings(Path("/runpod-volume/models"), "/runpod-volume/hf") == []
    (no_volume,) = placement_warnings(Path("/root/.cache/models"), None)
    assert "not on a network volume" in no_volume
    # Under the local endpoint a local MODEL_DIR is what it should be.
    monkeypatch.setenv("LOCAL_ENDPOINT_WORKER", "w1")
    assert placement_warnings(Path("/root/.cache/models"), None) == []


def _lease_path(models: Path, spec: ModelSpec) -> Path:
    path = models / ".locks" / (spec.folder().replace("/", "@") + ".lease")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def test_a_lease_left_by_a_dead_worker_on_this_host_is_taken_over(hub, tmp_path):
    import socket

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lease = _lease_path(tmp_path / "models", SPEC)
    lease.write_text(json.dumps({"host": socket.gethostname(), "pid": dead.pid, "since": 0}))
    folder = ModelCache(tmp_path / "models", endpoint=hub.url, policy=FAST).ensure(SPEC)
    assert (folder / "model.safetensors").is_file() and not lease.exists()


def test_a_live_lease_from_another_host_makes_workers_wait(hub, tmp_path):
    """On network filesystems where flock is a no-op, the lease still keeps one downloader."""
    import threading

    lease = _lease_path(tmp_path / "models", SPEC)
    lease.write_text(json.dumps({"host": "worker-on-another-host", "pid": 1, "since": 0}))
    seen = []
    done = []
    cache = ModelCache(tmp_path / "models", endpoint=hub.url, policy=FAST)
    thread = threading.Thread(target=lambda: done.append(cache.ensure(SPEC, seen.append)))
    thread.start()
    _wait(lambda: len(seen) >= 2, 10, "waiting progress")
    assert not done and hub.served == []
    assert "another worker is downloading" in seen[-1].describe()
    lease.unlink()  # the other worker finished or its lease went stale
    thread.join(20)
    assert done and (done[0] / "model.safetensors").is_file()


def test_a_hub_that_accepts_and_never_answers_fails_the_load_instead_of_hanging(tmp_path):
    """huggingface_hub's own calls wait forever unless given a timeout; the worker gives one."""
    import socket

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        quick = TransferPolicy(connect_timeout_s=1, read_timeout_s=1, attempts=1, backoff_s=0)
        cache = ModelCache(tmp_path / "models", endpoint=url, policy=quick)
        with pytest.raises(ModelLoadError, match="cannot list the repo's files"):
            cache.list_files(SPEC)


def test_a_token_never_follows_a_redirect_to_another_host(files, tmp_path):
    """The hub redirects model files to a CDN; the worker's one downloader sends the hub
    token to the hub only (a redirect on the same host keeps it)."""
    from gpu_worker.transfer import download

    files.files["weights.bin"] = b"w" * 1000
    elsewhere = files.url("/files/weights.bin").replace("127.0.0.1", "localhost")
    files.redirects["cdn.bin"] = elsewhere
    files.redirects["same.bin"] = files.url("/files/weights.bin")
    token = {"Authorization": "Bearer hf_secret"}
    kw = {"field": "model", "max_bytes": 1000, "policy": FAST, "headers": token}
    assert download(files.url("/files/same.bin"), tmp_path / "a", **kw) == 1000
    assert files.authorization["weights.bin"] == "Bearer hf_secret"
    assert download(files.url("/files/cdn.bin"), tmp_path / "b", **kw) == 1000
    assert files.authorization["cdn.bin"] == "Bearer hf_secret"
    assert files.authorization["weights.bin"] is None


def test_a_file_larger_than_the_hub_listed_fails_the_load_and_says_why(hub, tmp_path):
    hub.reported_size["model.safetensors"] = 10  # the listing says 10 bytes
    cache = ModelCache(tmp_path / "models", endpoint=hub.url, policy=FAST)
    with pytest.raises(ModelLoadError, match="sent more of model.safetensors than the 10 bytes"):
        cache.ensure(SPEC)
