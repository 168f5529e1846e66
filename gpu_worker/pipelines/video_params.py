"""Parameters every pipeline that writes H.264 video shares (batching, quality, length).

Declared once here so ``video_enhance``, ``upscale`` and your own video pipelines offer the
same knobs with the same bounds; spread them into a pipeline's ``params``.
"""

from __future__ import annotations

from typing import Any

PRESETS = ["ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow"]

VIDEO_ENCODING: dict[str, dict[str, Any]] = {
    "batch_size": {
        "type": "integer",
        "minimum": 1,
        "maximum": 128,
        "default": 8,
        "title": "Batch size",
        "description": "frames per GPU batch",
    },
    "crf": {
        "type": "integer",
        "minimum": 0,
        "maximum": 51,
        "default": 20,
        "title": "Quality (CRF)",
        "description": "H.264 quality (lower is better)",
    },
    "preset": {
        "type": "string",
        "enum": PRESETS,
        "default": "veryfast",
        "title": "Encoder preset",
        "description": "x264 speed preset (slower: smaller files)",
    },
    "max_frames": {
        "type": "integer",
        "minimum": 0,
        "maximum": 10_000_000,
        "default": 0,
        "title": "Max frames",
        "description": "stop after this many frames (0: all)",
    },
}
