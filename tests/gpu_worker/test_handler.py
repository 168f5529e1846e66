"""The handler called directly: the input contract, input files, outputs, clean-up."""

from __future__ import annotations

import asyncio
import base64
import hashlib

import pytest

from gpu_worker.handler import handler, run_job
from tests.gpu_worker.conftest import sample_bytes


def job(payload, job_id="job-1"):
    return {"id": job_id, "input": payload}


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ("just a string", "input: expected a JSON object"),
        ({"pipeline": "nope"}, "pipeline: unknown pipeline 'nope'; known pipelines: echo,"),
        ({"pipeline": "echo", "input": {}}, "input.input: unknown field; the input takes"),
        ({"pipeline": "echo", "params": [1]}, "params: expected a JSON object"),
        (
            {"pipeline": "echo", "inputs": {"a": "ftp://host/x"}},
            "inputs.a: only http and https URLs are accepted, got ftp",
        ),
        (
            {"pipeline": "echo", "inputs": {"a": "file:///etc/passwd"}},
            "inputs.a: only http and https URLs are accepted, got file",
        ),
        (
            {"pipeline": "video_enhance", "inputs": {}},
            "inputs.video: missing; pipeline video_enhance needs it as an http(s) URL",
        ),
        (
            {"pipeline": "video_enhance", "inputs": {"video": "http://h/v", "audio": "http://h/a"}},
            "inputs.audio: pipeline video_enhance takes no such input; it takes video",
        ),
        (
            {
                "pipeline": "video_enhance",
                "inputs": {"video": "http://h/v"},
                "params": {"scale": 3},
            },
            "params.scale: expected one of 1, 2, got 3",
        ),
        (
            {
                "pipeline": "video_enhance",
                "inputs": {"video": "http://h/v"},
                "params": {"sharpen": "lots"},
            },
            "params.sharpen: expected a number from 0 to 3",
        ),
        (
            {"pipeline": "video_enhance", "inputs": {"video": "http://h/v"}, "params": {"fps": 3}},
            "params.fps: pipeline video_enhance has no such parameter",
        ),
        (
            {"pipeline": "echo", "output": {"put_url": "s3://bucket/key"}},
            "output.put_url: only http and https URLs are accepted, got s3",
        ),
        ({"pipeline": "echo", "output": {"inline": False}}, 'output: expected {"put_url"'),
        ({"pipeline": "echo", "job_key": 7}, "job_key: expected a string"),
        ({"pipeline": 5}, "pipeline: expected a pipeline name string"),
        (
            {"pipeline": "echo", "inputs": ["http://h/a"]},
            'inputs: expected a JSON object {"<name>"',
        ),
        ({"pipeline": "echo", "output": "inline"}, 'output: expected {"put_url": URL'),
        ({"pipeline": "echo", "output": {}}, 'output: expected {"put_url": URL'),
        (
            {"pipeline": "echo", "output": {"put_url": "http://h/o", "inline": True}},
            "output: give either put_url or inline, not both",
        ),
        (
            {"pipeline": "echo", "output": {"put_url": "http://h/o", "content_type": 3}},
            "output.content_type: expected a MIME type string like video/mp4",
        ),
        ({"pipeline": "echo", "callbacks": "http://h/c"}, 'callbacks: expected {"claim": URL'),
        (
            {"pipeline": "echo", "callbacks": {"done": "http://h/c"}},
            "callbacks.done: unknown; the input takes claim, progress",
        ),
        (
            {"pipeline": "echo", "callbacks": {"claim": "gopher://h/c"}},
            "callbacks.claim: only http and https URLs are accepted, got gopher",
        ),
    ],
)
def test_bad_input_fails_with_a_message_naming_the_field(worker_env, payload, expected):
    result = run_job(job(payload))
    assert set(result) == {"error"}
    assert result["error"].startswith(expected), result["error"]


def test_the_input_is_checked_by_one_schema_whose_words_reach_the_user(worker_env):
    """Every refusal the schema words is what the job's error says (issue 17)."""
    from jsonschema import Draft202012Validator

    from gpu_worker.job_input import SCHEMA

    Draft202012Validator.check_schema(SCHEMA)
    words = []

    def collect(node):
        if isinstance(node, dict):
            if "x-error" in node:
                words.append(f"{node['x-field']}: {node['x-error']}")
            for value in node.values():
                collect(value)

    collect(SCHEMA)
    bad = {
        "input: expected": "just a string",
        "pipeline:": {"pipeline": 5},
        "params:": {"params": 1},
        "inputs:": {"inputs": 1},
        "output:": {"output": 1},
        "output: give": {"output": {"put_url": "http://h/o", "inline": True}},
        "output.content_type:": {"output": {"put_url": "http://h/o", "content_type": 1}},
        "job_key:": {"job_key": 1},
        "callbacks:": {"callbacks": 1},
    }
    for text in words:
        payload = next(p for prefix, p in bad.items() if text.startswith(prefix))
        assert run_job(job(payload))["error"] in words


def test_echo_keeps_its_shape_and_follows_the_contract(worker_env):
    result = asyncio.run(handler(job({"pipeline": "echo", "params": {"x": 1}, "job_key": "k1"})))
    assert result["echo"] == {"x": 1}
    assert result["pipeline"] == "echo" and result["job_key"] == "k1"
    assert result["result"] == {"echo": {"x": 1}, "inputs": {}}
    assert result["output"] == {"url": None, "inline_b64": None, "content_type": None, "size": 0}
    assert set(result["metrics"]) >= {"download_s", "model_load_s", "inference_s", "upload_s"}


def test_pipeline_crash_reports_the_error_without_a_traceback(worker_env):
    result = run_job(job({"pipeline": "echo", "params": {"fail": "boom"}}))
    assert result == {"error": "pipeline echo failed: EchoError: boom"}


def test_bad_setting_fails_every_job_with_the_setting_named(worker_env, monkeypatch):
    from gpu_worker.handler import reset_runtime

    monkeypatch.setenv("MAX_INPUT_BYTES", "lots")
    reset_runtime()
    result = run_job(job({"pipeline": "echo"}))
    assert result == {"error": "worker misconfigured: MAX_INPUT_BYTES='lots' is not an integer"}


def test_inputs_are_downloaded_and_the_work_dir_is_emptied(worker_env, files, tmp_path):
    data = sample_bytes(300_000)
    files.files["clip.bin"] = data
    url = files.url("files/clip.bin?sig=SECRET123&expires=9")
    result = run_job(job({"pipeline": "echo", "inputs": {"clip": url}}))
    assert result["result"]["inputs"]["clip"] == {
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    assert result["metrics"]["items"] == 1
    assert list((tmp_path / "work").iterdir()) == []


def test_a_404_input_is_a_failed_job_and_the_signature_stays_secret(worker_env, files, tmp_path):
    url = files.url("files/gone.mp4?sig=SECRET123")
    result = run_job(job({"pipeline": "echo", "inputs": {"video": url}}))
    assert result["error"] == (
        f"inputs.video: {files.url('files/gone.mp4')} answered 404 Not Found: nothing is there; "
        "the file was deleted or the signed URL is wrong"
    )
    assert "SECRET123" not in result["error"]
    assert list((tmp_path / "work").iterdir()) == []


def test_an_input_over_the_size_cap_is_refused(worker_env, files, monkeypatch):
    from gpu_worker.handler import reset_runtime

    monkeypatch.setenv("MAX_INPUT_BYTES", "1000")
    reset_runtime()
    files.files["big.bin"] = sample_bytes(5000)
    result = run_job(job({"pipeline": "echo", "inputs": {"video": files.url("files/big.bin")}}))
    assert "inputs.video: the file at" in result["error"]
    assert "larger than the worker's limit of 1000 bytes" in result["error"]
    assert "raise MAX_INPUT_BYTES" in result["error"]


def test_an_input_of_unknown_size_is_cut_off_at_the_cap(worker_env, files, monkeypatch, tmp_path):
    from gpu_worker.handler import reset_runtime

    monkeypatch.setenv("MAX_INPUT_BYTES", "1000")
    reset_runtime()
    files.files["stream.bin"] = sample_bytes(50_000)
    files.chunked.add("stream.bin")  # no Content-Length: the cap applies while streaming
    result = run_job(job({"pipeline": "echo", "inputs": {"video": files.url("files/stream.bin")}}))
    assert "larger than the worker's limit of 1000 bytes (1001 bytes or more)" in result["error"]
    assert list((tmp_path / "work").iterdir()) == []


def test_a_stalled_input_times_out_with_a_clear_message(worker_env, files, monkeypatch):
    from gpu_worker.handler import reset_runtime

    monkeypatch.setenv("DOWNLOAD_READ_TIMEOUT_S", "0.3")
    monkeypatch.setenv("TRANSFER_ATTEMPTS", "2")
    reset_runtime()
    files.files["slow.bin"] = b"x" * 10
    files.stall_s = 1.5
    result = run_job(job({"pipeline": "echo", "inputs": {"video": files.url("files/slow.bin")}}))
    assert result["error"] == (
        f"inputs.video: could not download {files.url('files/slow.bin')} after 2 attempts: "
        "no data for 0.3 s (read timeout)"
    )


def test_an_unreachable_input_host_is_named(worker_env):
    result = run_job(job({"pipeline": "echo", "inputs": {"video": "http://127.0.0.1:9/x.mp4"}}))
    assert result["error"].startswith("inputs.video: could not download http://127.0.0.1:9/x.mp4")
    assert result["error"].endswith("connection refused")


def test_a_redirect_to_another_scheme_is_not_followed(worker_env, files):
    files.redirects["hop.bin"] = "ftp://files.example/secret.bin"
    result = run_job(job({"pipeline": "echo", "inputs": {"video": files.url("files/hop.bin")}}))
    assert result["error"] == (
        f"inputs.video: {files.url('files/hop.bin')} redirects to a ftp URL; "
        "only http and https are followed"
    )


def test_a_reset_download_resumes_with_a_range_request(worker_env, files):
    data = sample_bytes(400_000)
    files.files["big.bin"] = data
    files.drop_once["big.bin"] = 150_000
    result = run_job(job({"pipeline": "echo", "inputs": {"v": files.url("files/big.bin")}}))
    assert result["result"]["inputs"]["v"]["sha256"] == hashlib.sha256(data).hexdigest()
    ranges = [r for name, r in files.gets if name == "big.bin"]
    assert ranges[0] is None and ranges[1] is not None and ranges[1] >= "bytes=1"


def test_a_link_that_keeps_dropping_but_moving_still_delivers(worker_env, files, monkeypatch):
    from gpu_worker.handler import reset_runtime

    monkeypatch.setenv("TRANSFER_ATTEMPTS", "2")
    reset_runtime()
    data = sample_bytes(100_000)
    files.files["flaky.bin"] = data
    files.drop_every["flaky.bin"] = 16_384  # seven drops, each after some progress
    result = run_job(job({"pipeline": "echo", "inputs": {"v": files.url("files/flaky.bin")}}))
    assert result["result"]["inputs"]["v"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert len([name for name, _ in files.gets if name == "flaky.bin"]) == 7


def test_output_is_put_to_the_signed_url_with_retries(worker_env, files):
    data = sample_bytes(200_000)
    files.files["in.bin"] = data
    files.put_failures = 2  # two 503s, then success
    put = files.url("upload/result.bin?X-Signature=SECRET")
    result = run_job(
        job(
            {
                "pipeline": "echo",
                "params": {"return_input": "v"},
                "inputs": {"v": files.url("files/in.bin")},
                "output": {"put_url": put, "content_type": "application/x-test"},
            }
        )
    )
    assert files.uploads["result.bin"] == data
    assert files.upload_types["result.bin"] == "application/x-test"
    assert result["output"] == {
        "url": files.url("upload/result.bin"),
        "inline_b64": None,
        "content_type": "application/x-test",
        "size": len(data),
    }


def test_a_refused_upload_fails_the_job(worker_env, files):
    put = files.url("elsewhere/result.bin?sig=SECRET")
    result = run_job(
        job({"pipeline": "echo", "params": {"output_bytes": 10}, "output": {"put_url": put}})
    )
    assert result["error"].startswith(
        f"output.put_url: {files.url('elsewhere/result.bin')} refused the upload with 403"
    )
    assert "SECRET" not in result["error"]


def test_small_outputs_come_back_inline_and_large_ones_are_refused(worker_env, monkeypatch):
    from gpu_worker.handler import reset_runtime

    small = run_job(job({"pipeline": "echo", "params": {"output_bytes": 1000}}))
    assert base64.b64decode(small["output"]["inline_b64"]) == sample_bytes(1000)
    assert small["output"]["size"] == 1000

    monkeypatch.setenv("INLINE_OUTPUT_MAX_BYTES", "500")
    reset_runtime()
    large = run_job(job({"pipeline": "echo", "params": {"output_bytes": 1000}}))
    assert large["error"] == (
        "output: the result is 1000 bytes, over the 500-byte limit for inline output; give "
        "output.put_url (a presigned PUT URL) or raise INLINE_OUTPUT_MAX_BYTES"
    )


@pytest.mark.timeout(60)
def test_output_goes_to_s3_through_a_presigned_put(worker_env, tmp_path):
    from deploy.stack.services import moto_s3_server

    with moto_s3_server(tmp_path / "moto") as s3:
        s3.create_bucket("results")
        client = s3.client()
        put = client.generate_presigned_url(
            "put_object",
            Params={"Bucket": "results", "Key": "jobs/1/out.bin", "ContentType": "video/mp4"},
            ExpiresIn=300,
        )
        result = run_job(
            job(
                {
                    "pipeline": "echo",
                    "params": {"output_bytes": 70_000},
                    "output": {"put_url": put, "content_type": "video/mp4"},
                }
            )
        )
        assert result["output"]["url"] == f"{s3.endpoint_url}/results/jobs/1/out.bin"
        stored = client.get_object(Bucket="results", Key="jobs/1/out.bin")
        assert stored["Body"].read() == sample_bytes(70_000)
        assert stored["ContentType"] == "video/mp4"


def test_a_cancelled_job_stops_its_thread_and_cleans_up(worker_env, tmp_path):
    """The SDK cancels the handler's task on /cancel or a timeout; the job's thread must stop
    too (echo's sleep, a video pipeline's next batch) rather than run on unseen."""

    async def cancel_soon():
        # An hour's sleep, far past the test's timeout: the test ends only if the thread stops.
        task = asyncio.ensure_future(
            handler(job({"pipeline": "echo", "params": {"sleep_s": 3600}}))
        )
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancel_soon())  # asyncio.run waits for the worker thread at shutdown
    assert list((tmp_path / "work").iterdir()) == []


def test_a_video_job_cancelled_before_its_first_batch_stops(worker_env, files, clip_bytes):
    import threading

    files.files["clip.mp4"] = clip_bytes
    cancel = threading.Event()
    cancel.set()
    payload = {"pipeline": "video_enhance", "inputs": {"video": files.url("files/clip.mp4")}}
    assert run_job(job(payload), cancel) == {"error": "the job was cancelled while it ran"}


def test_job_folders_of_dead_workers_are_removed_at_start(tmp_path):
    import os
    import subprocess
    import sys

    from gpu_worker.handler import remove_stale_job_dirs

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / f"gpu-job-{dead.pid}-abc" / "inputs").mkdir(parents=True)
    (tmp_path / f"gpu-job-{os.getpid()}-def").mkdir()
    (tmp_path / "someone-elses").mkdir()
    assert remove_stale_job_dirs(tmp_path) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        f"gpu-job-{os.getpid()}-def",
        "someone-elses",
    ]
