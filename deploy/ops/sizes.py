"""Real model sizes from the Hugging Face hub API, and the disk and volume they need.

Never trust a size written in a comment or a model card: the notes' Wan2.1-T2V-14B was
"~26GB" and is 69GB. ``GET {HF_ENDPOINT}/api/models/{repo}/tree/{revision}?recursive=true``
lists every file with its size (LFS files carry the real size under ``lfs.size``).
"""

from __future__ import annotations

import fnmatch
import math
import urllib.parse
from dataclasses import dataclass, field

import requests

from deploy.ops.settings import DEFAULT_HF_ENDPOINT

GB = 1_000_000_000
# Unpacked overlay2 layers take 2-3x the compressed image; the notes size with 2.5x.
IMAGE_UNPACK_FACTOR = 2.5
DISK_BUFFER_GB = 20
VOLUME_BUFFER_GB = 5


class SizeLookupError(RuntimeError):
    """The hub could not tell a model's size (unreachable, gated, or not found)."""


@dataclass
class ModelSize:
    repo: str
    revision: str
    bytes: int
    files: int
    largest: list[tuple[str, int]] = field(default_factory=list)

    @property
    def gb(self) -> float:
        return self.bytes / GB


def model_size(
    repo: str,
    revision: str = "main",
    *,
    files: tuple[str, ...] = (),
    hub: str = DEFAULT_HF_ENDPOINT,
    token: str = "",
    timeout: float = 15.0,
) -> ModelSize:
    """Sum the files of ``repo`` at ``revision`` that match ``files`` (glob patterns; all
    when empty: a worker that downloads one checkpoint of a repo needs only that one),
    following the tree API's pagination. ``hub`` and ``token`` come from the operator's
    settings (``HF_ENDPOINT``, ``HF_TOKEN``)."""
    hub = hub.rstrip("/")
    quoted_rev = urllib.parse.quote(revision, safe="")
    url: str | None = f"{hub}/api/models/{repo}/tree/{quoted_rev}?recursive=true"
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    total, count, listed = 0, 0, []
    while url:
        try:
            resp = requests.get(url, headers=headers, timeout=(3.05, timeout))
        except requests.RequestException as exc:
            raise SizeLookupError(
                f"cannot reach the hub at {hub} ({type(exc).__name__}) to size {repo}"
            ) from exc
        if resp.status_code in (401, 403):
            raise SizeLookupError(f"{repo} is gated or private: set HF_TOKEN to size it")
        if resp.status_code == 404:
            raise SizeLookupError(f"{repo}@{revision} not found on the hub: check the repo id")
        if not resp.ok:
            raise SizeLookupError(f"hub answered {resp.status_code} for {repo}")
        try:
            entries = resp.json()
        except ValueError as exc:
            raise SizeLookupError(f"hub sent a non-JSON answer for {repo}") from exc
        for entry in entries:
            if entry.get("type") != "file":
                continue
            if files and not any(fnmatch.fnmatch(entry.get("path", ""), f) for f in files):
                continue
            lfs = entry.get("lfs") or {}
            size = int(lfs.get("size") or entry.get("size") or 0)
            total += size
            count += 1
            listed.append((entry.get("path", "?"), size))
        url = resp.links.get("next", {}).get("url")
    listed.sort(key=lambda f: f[1], reverse=True)
    return ModelSize(repo=repo, revision=revision, bytes=total, files=count, largest=listed[:5])


def recommended_disk_gb(
    image_compressed_gb: float | None, models_gb: float, with_volume: bool
) -> int | None:
    """Container disk: unpacked image + buffer, plus the models when there is no volume."""
    if image_compressed_gb is None:
        return None
    need = image_compressed_gb * IMAGE_UNPACK_FACTOR + DISK_BUFFER_GB
    if not with_volume:
        need += models_gb
    return math.ceil(need)


def recommended_volume_gb(models_gb: float, download_overhead: float) -> int:
    """Network volume: the models times the download overhead (hub cache + local copy)."""
    return max(10, math.ceil(models_gb * download_overhead + VOLUME_BUFFER_GB))
