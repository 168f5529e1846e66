"""GPU check for the worker's pipelines: ``python -m bench.gpu_check`` from the repo root.

Needs only ``gpu_worker/requirements.txt`` and no network. It generates a clip (720p, 5 s,
30 fps by default), puts a full-size checkpoint in Real-ESRGAN x2's layout (RRDBNet, 64
features, 23 blocks, the size of ``RealESRGAN_x2.pth``; weights made here, so no hub) on a
scratch model volume as a finished download, and runs, each in a fresh process so the cold
start is real:

- ``video_enhance`` (torch upscale, sharpen and denoise; PyAV decode and H.264 encode),
- ``upscale`` (the checkpoint through the model cache, spandrel and the background loader;
  720p -> 1440p, tiled, fp16 on CUDA),

on CUDA when available (CPU otherwise). It prints one JSON object: per pipeline, frames per
second end to end and for the torch part alone, peak GPU memory, model load time, and the cold
start with the weights on the volume (process start to first processed frame).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

REPO = "bench/realesrgan-x2"
WEIGHTS = "RealESRGAN_x2.pth"


def make_clip(path: Path, width: int, height: int, seconds: float, fps: int) -> Path:
    import av
    import numpy as np

    frames = int(seconds * fps)
    with av.open(str(path), "w", format="mp4") as out:
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.options = {"preset": "ultrafast", "crf": "18"}
        audio = out.add_stream("aac", rate=48000)
        audio.layout = "stereo"
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        rng = np.random.default_rng(0)
        for i in range(frames):
            rgb = np.empty((height, width, 3), np.float32)
            rgb[..., 0] = 128 + 100 * np.sin((xx + 4 * i) / 37.0)
            rgb[..., 1] = 128 + 100 * np.cos((yy - 3 * i) / 23.0)
            rgb[..., 2] = ((xx // 40 + yy // 40 + i // 10) % 2) * 200 + 20
            rgb += rng.normal(0, 8, rgb.shape).astype(np.float32)  # noise for the denoiser
            frame = av.VideoFrame.from_ndarray(rgb.clip(0, 255).astype(np.uint8), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        samples = int(48000 * seconds)
        tone = (0.2 * np.sin(2 * np.pi * 440 * np.arange(samples) / 48000)).astype(np.float32)
        for start in range(0, samples, 1024):
            chunk = np.stack([tone[start : start + 1024]] * 2)
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
            frame.sample_rate, frame.pts, frame.time_base = 48000, start, Fraction(1, 48000)
            out.mux(audio.encode(frame))
        out.mux(audio.encode(None))
    return path


TILE = 512  # upscale's tile size, pixels a side


def seed_weights(model_dir: Path) -> None:
    """A full-size Real-ESRGAN x2 layout checkpoint on the scratch volume, laid out as a
    finished model-cache download (so the worker loads it without asking a hub)."""
    from bench.sr_weights import realesrgan_x2_pth
    from gpu_worker.model_cache import MARKER, ModelCache
    from gpu_worker.pipelines import ModelSpec

    spec = ModelSpec(REPO, "main", (WEIGHTS,))
    folder = ModelCache(model_dir).local_dir(spec)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / WEIGHTS).write_bytes(realesrgan_x2_pth(features=64, blocks=23))
    marker = {
        "repo_id": REPO,
        "revision": "main",
        "commit": "local",
        "allow_patterns": [WEIGHTS],
        "files": {WEIGHTS: (folder / WEIGHTS).stat().st_size},
    }
    (folder / MARKER).write_text(json.dumps(marker))


def child(
    pipeline: str, clip: Path, started: float, batch_size: int, tile: int, max_frames: int = 0
) -> dict:
    """Runs in a fresh process: load, run the pipeline on the clip, time everything."""
    import threading

    t_import = time.time()
    import torch

    from gpu_worker import pipelines
    from gpu_worker.device import torch_device
    from gpu_worker.handler import runtime

    import_s = time.time() - t_import
    device = torch_device(os.environ.get("TORCH_DEVICE", "auto"))
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    rt = runtime()
    loaded, load_s = rt.loader.wait(pipeline)
    first_frame_at: list[float] = []
    torch_s = [0.0]
    pipe = pipelines.get(pipeline)

    # Time the torch part alone by wrapping what the pipeline hands to media.transcode.
    import gpu_worker.media as media

    real_transcode = media.transcode

    def timed_transcode(src, dst, transform, **kw):
        def timed(batch):
            t = time.perf_counter()
            out = transform(batch)
            if cuda:
                torch.cuda.synchronize()
            torch_s[0] += time.perf_counter() - t
            return out

        return real_transcode(src, dst, timed, **kw)

    media.transcode = timed_transcode

    def progress(update, force=False):
        if isinstance(update, dict) and update.get("frames_done") and not first_frame_at:
            first_frame_at.append(time.time())

    work = Path(tempfile.mkdtemp(prefix="gpu-check-", dir=os.environ.get("WORK_DIR")))
    given = {"batch_size": batch_size, "max_frames": max_frames}
    if "tile" in pipe.params:
        given["tile"] = tile
    params = pipe.validate_params(given)
    ctx = pipelines.RunContext(
        workdir=work, device=rt.settings.device, loaded=loaded, cancel=threading.Event()
    )
    t0 = time.perf_counter()
    result = pipe.run({pipe.inputs[0].name: clip}, params, progress, ctx)
    run_s = time.perf_counter() - t0
    frames = result.frames or 0
    return {
        "device": device,
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "frames": frames,
        "output": f"{result.result['width']}x{result.result['height']}",
        "output_mb": round(result.output_file.stat().st_size / 1e6, 2),
        "fps_end_to_end": round(frames / run_s, 2),
        "fps_torch_only": round(frames / torch_s[0], 2) if torch_s[0] else None,
        "torch_import_s": round(import_s, 3),
        "model_load_s": round(load_s, 3),
        "cold_start_to_first_frame_s": round(first_frame_at[0] - started, 3)
        if first_frame_at
        else None,
        "peak_gpu_memory_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1) if cuda else None,
        "peak_gpu_reserved_mb": round(torch.cuda.max_memory_reserved() / 2**20, 1)
        if cuda
        else None,
    }


def run_child(
    pipeline: str,
    clip: Path,
    env: dict[str, str],
    batch_size: int,
    max_frames: int,
    tile: int = TILE,
) -> dict:
    """Run ``child`` for one pipeline in a fresh Python (``--child``): its report, or
    ``{"error": [last lines of its stderr]}`` when it failed."""
    argv = [sys.executable, "-m", "bench.gpu_check", "--child", pipeline, "--clip", str(clip)]
    argv += ["--started", repr(time.time()), "--batch-size", str(batch_size)]
    argv += ["--tile", str(tile), "--max-frames", str(max_frames)]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-5:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_all(args: argparse.Namespace, scratch: Path) -> dict:
    """Make the clip and the weights in ``scratch``, run each pipeline in a fresh process."""
    t = time.perf_counter()
    clip = make_clip(scratch / "clip.mp4", args.width, args.height, args.seconds, args.fps)
    report: dict = {
        "clip": {
            "size": f"{args.width}x{args.height}",
            "seconds": args.seconds,
            "fps": args.fps,
            "made_in_s": round(time.perf_counter() - t, 2),
        },
        "pipelines": {},
    }
    seed_weights(scratch / "models")
    (scratch / "work").mkdir()
    env = dict(
        os.environ,
        MODEL_DIR=str(scratch / "models"),
        UPSCALE_MODEL=f"{REPO}:{WEIGHTS}",
        WORK_DIR=str(scratch / "work"),
        HF_HUB_OFFLINE="1",
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    )
    for name in args.pipelines.split(","):
        report["pipelines"][name] = run_child(
            name, clip, env, args.batch_size, args.max_frames, tile=args.tile
        )
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--tile", type=int, default=TILE, help=f"upscale's tile size ({TILE})")
    parser.add_argument("--max-frames", type=int, default=0, help="stop after N frames (0: all)")
    parser.add_argument("--pipelines", default="video_enhance,upscale")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--clip", help=argparse.SUPPRESS)
    parser.add_argument("--started", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        report = child(
            args.child, Path(args.clip), args.started, args.batch_size, args.tile, args.max_frames
        )
        print(json.dumps(report))
        return 0

    scratch = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    try:
        report = run_all(args, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(json.dumps(report, indent=2))
    return 0 if all("error" not in r for r in report["pipelines"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
