"""Models on the network volume: declared by hub repo, revision and file patterns.

``ModelCache.ensure(spec)`` returns a folder holding the repo's matching files. It

- sizes the download from the hub API's real file sizes and refuses, before writing a byte,
  when the volume's free space is short of them times a margin;
- downloads each file straight into its final folder (a ``.partial`` file next to it, then a
  rename on the same volume), so there is never a second copy in a hub cache;
- resumes a ``.partial`` file left by an interrupted worker with an HTTP Range request;
- holds an exclusive lock file while downloading, so workers sharing a volume download once
  (the others wait, reporting the first one's progress);
- writes a marker recording the repo, revision and resolved commit; with the marker present
  the worker starts without asking the hub anything.

Tokens come from the environment only (``HF_TOKEN``); they are never logged.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import quote

from gpu_worker.errors import InputError, ModelLoadError, StorageUnreachable, TransferError
from gpu_worker.liveness import pid_alive
from gpu_worker.pipelines import ModelSpec
from gpu_worker.settings import Platform
from gpu_worker.transfer import TransferPolicy, download

log = logging.getLogger("gpu_worker.models")

MARKER = ".gpu_worker-model.json"
PARTIAL_DIR = ".partial"
CHUNK = 4 * 1024 * 1024
# A download lease not refreshed for this long belongs to a dead worker on another host.
LEASE_STALE_S = 60.0
DEFAULT_ENDPOINT = "https://huggingface.co"


@dataclass(frozen=True)
class RemoteFile:
    path: str
    size: int
    sha256: str | None = None


@dataclass
class DownloadProgress:
    """What a job waiting for the model shows: ``downloading model x/y: 3.2 of 28.0 GB``."""

    repo_id: str
    done_bytes: int = 0
    total_bytes: int = 0
    waiting_for_other_worker: bool = False
    files: list[str] = field(default_factory=list)

    def describe(self) -> str:
        unit, scale = ("GB", 1e9) if self.total_bytes >= 1e8 else ("MB", 1e6)
        done, total = self.done_bytes / scale, self.total_bytes / scale
        who = "another worker is downloading" if self.waiting_for_other_worker else "downloading"
        return f"{who} model {self.repo_id}: {done:.1f} of {total:.1f} {unit}"


ProgressCallback = Callable[[DownloadProgress], None]


def on_runpod_serverless() -> bool:
    """True in a RunPod Serverless worker (not under the local endpoint, which sets
    ``LOCAL_ENDPOINT_WORKER``)."""
    return Platform.from_env().on_runpod_serverless


def placement_warnings(model_dir: Path, hf_home: str | None) -> list[str]:
    """Warnings for storage paths that would put models on the container disk."""
    serverless = on_runpod_serverless()
    out = []
    for name, value in (("MODEL_DIR", str(model_dir)), ("HF_HOME", hf_home or "")):
        if value == "/workspace" or value.startswith("/workspace/"):
            where = "on RunPod Serverless" if serverless else "if this runs on RunPod Serverless"
            out.append(
                f"{name}={value} points at /workspace: {where} the network volume is mounted at "
                "/runpod-volume, so models would land on the container disk, fill it (exit code "
                "139) and be downloaded again on every cold start; set "
                f"{name}=/runpod-volume/..."
            )
    model_path = str(model_dir)
    if serverless and not out and not model_path.startswith("/runpod-volume/"):
        out.append(
            f"MODEL_DIR={model_path} is not on a network volume (/runpod-volume): models will be "
            "downloaded to the container disk on every cold start; attach a network volume to "
            "the endpoint and set MODEL_DIR=/runpod-volume/models"
        )
    return out


class ModelCache:
    """Downloads and finds models under ``root`` (``MODEL_DIR``)."""

    def __init__(
        self,
        root: Path,
        *,
        endpoint: str | None = None,
        margin: float = 1.1,
        policy: TransferPolicy | None = None,
    ) -> None:
        self.root = Path(root)
        platform = Platform.from_env()
        self.endpoint = (endpoint or platform.hf_endpoint or DEFAULT_ENDPOINT).rstrip("/")
        self.margin = margin
        self.policy = policy or TransferPolicy()
        self._token = platform.hf_token or None

    def local_dir(self, spec: ModelSpec) -> Path:
        return self.root / spec.folder()

    def cached(self, spec: ModelSpec) -> Path | None:
        """The model's folder if a complete download of this revision is there, else None."""
        target = self.local_dir(spec)
        try:
            marker = json.loads((target / MARKER).read_text())
        except (OSError, ValueError):
            return None
        if marker.get("repo_id") != spec.repo_id or marker.get("revision") != spec.revision:
            return None
        if marker.get("allow_patterns") != list(spec.allow_patterns):
            return None
        for path, size in marker.get("files", {}).items():
            try:
                if (target / path).stat().st_size != size:
                    return None
            except OSError:
                return None
        return target

    def ensure(self, spec: ModelSpec, progress: ProgressCallback | None = None) -> Path:
        """Return the model's folder, downloading it first if needed; ``ModelLoadError``."""
        found = self.cached(spec)
        if found:
            return found
        commit, files = self.list_files(spec)
        target = self.local_dir(spec)
        target.mkdir(parents=True, exist_ok=True)
        state = DownloadProgress(
            spec.repo_id, total_bytes=sum(f.size for f in files), files=[f.path for f in files]
        )
        with self._lock(spec, target, state, progress):
            found = self.cached(spec)
            if found:
                return found
            self._check_space(spec, target, files)
            for remote in files:
                self._fetch(spec, commit, remote, target, state, progress)
            marker = {
                "repo_id": spec.repo_id,
                "revision": spec.revision,
                "commit": commit,
                "allow_patterns": list(spec.allow_patterns),
                "files": {f.path: f.size for f in files},
                "completed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
            tmp = target / f"{MARKER}.tmp"
            tmp.write_text(json.dumps(marker, indent=2))
            os.replace(tmp, target / MARKER)
            shutil.rmtree(target / PARTIAL_DIR, ignore_errors=True)
        log.info(
            "model %s@%s ready in %s (%d bytes)",
            spec.repo_id,
            spec.revision,
            target,
            state.total_bytes,
        )
        return target

    def list_files(self, spec: ModelSpec) -> tuple[str, list[RemoteFile]]:
        """The resolved commit and the files matching the spec's patterns, with real sizes."""
        from huggingface_hub import HfApi
        from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError
        from huggingface_hub.utils import filter_repo_objects

        api = HfApi(endpoint=self.endpoint, token=self._token or False)
        where = f"{spec.repo_id}@{spec.revision} on {self.endpoint}"
        try:
            # One request, with the files' sizes (``blobs``) and a timeout: huggingface_hub's
            # tree listing takes no timeout and would wait forever on a stalled hub.
            info = api.model_info(
                spec.repo_id,
                revision=spec.revision,
                files_metadata=True,
                timeout=self.policy.read_timeout_s,
            )
            entries = list(info.siblings or [])
        except RevisionNotFoundError:
            raise ModelLoadError(
                f"model {where}: revision {spec.revision!r} does not exist in the repo"
            ) from None
        except RepositoryNotFoundError:
            raise ModelLoadError(
                f"model {where}: repo not found, or it is private or gated and HF_TOKEN is "
                f"{'set but has no access' if self._token else 'not set'}"
            ) from None
        except Exception as exc:  # network errors come in several libraries' classes
            raise ModelLoadError(
                f"model {where}: cannot list the repo's files ({type(exc).__name__}: "
                f"{_short(exc)}); check the worker's network access or HF_ENDPOINT"
            ) from exc
        by_path = {e.rfilename: e for e in entries}
        chosen = list(filter_repo_objects(by_path, allow_patterns=list(spec.allow_patterns)))
        if not chosen:
            raise ModelLoadError(
                f"model {where}: no file matches {list(spec.allow_patterns)}; the repo has "
                f"{', '.join(sorted(by_path)[:10]) or 'no files'}"
            )
        files = [
            RemoteFile(
                path=p,
                size=int(by_path[p].lfs.size if by_path[p].lfs else by_path[p].size or 0),
                sha256=by_path[p].lfs.sha256 if by_path[p].lfs else None,
            )
            for p in sorted(chosen)
        ]
        return str(info.sha), files

    def _check_space(self, spec: ModelSpec, target: Path, files: list[RemoteFile]) -> None:
        needed = 0
        for remote in files:
            have = _size_or_zero(target / remote.path)
            if have != remote.size:
                needed += remote.size - _size_or_zero(_partial_path(target, remote))
        free = shutil.disk_usage(target).free
        if free < needed * self.margin:
            total = sum(f.size for f in files)
            raise ModelLoadError(
                f"not enough space for model {spec.repo_id}@{spec.revision} in {self.root}: it "
                f"is {total / 1e9:.2f} GB ({needed / 1e9:.2f} GB still to download, "
                f"{needed * self.margin / 1e9:.2f} GB with the {self.margin:g}x margin) but only "
                f"{free / 1e9:.2f} GB is free; grow the network volume or point MODEL_DIR at a "
                "larger one"
            )

    @contextmanager
    def _lock(
        self,
        spec: ModelSpec,
        target: Path,
        state: DownloadProgress,
        progress: ProgressCallback | None,
    ) -> Iterator[None]:
        """One downloader per model: an flock, plus a lease file with a heartbeat for
        network filesystems where flock silently succeeds for everyone."""
        lock_path = self.root / ".locks" / (spec.folder().replace("/", "@") + ".lock")
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        lease = lock_path.with_suffix(".lease")

        def wait_a_moment() -> None:
            state.waiting_for_other_worker = True
            state.done_bytes = _bytes_on_disk(target, state.files)
            if progress:
                progress(state)
            time.sleep(0.5)

        with open(lock_path, "a+") as handle:
            logged = False
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if not logged:
                        log.info("another worker is downloading %s; waiting", spec.repo_id)
                        logged = True
                    wait_a_moment()
            try:
                while not _take_lease(lease):
                    wait_a_moment()
                state.waiting_for_other_worker = False
                stop = threading.Event()
                beat = threading.Thread(target=_heartbeat, args=(lease, stop), daemon=True)
                beat.start()
                try:
                    yield
                finally:
                    stop.set()
                    beat.join()
                    lease.unlink(missing_ok=True)
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _fetch(
        self,
        spec: ModelSpec,
        commit: str,
        remote: RemoteFile,
        target: Path,
        state: DownloadProgress,
        progress: ProgressCallback | None,
    ) -> None:
        final = target / remote.path
        if _size_or_zero(final) == remote.size and final.is_file():
            state.done_bytes += remote.size
            return
        partial = _partial_path(target, remote)
        partial.parent.mkdir(parents=True, exist_ok=True)
        final.parent.mkdir(parents=True, exist_ok=True)
        url = f"{self.endpoint}/{spec.repo_id}/resolve/{commit}/{quote(remote.path)}"
        where = f"model {spec.repo_id}@{spec.revision}"
        headers = {"Authorization": f"Bearer {self._token}"} if self._token else {}
        base_done = state.done_bytes
        last_report = [0.0]

        def received(size: int, _total: int | None) -> None:
            state.done_bytes = base_done + size
            now = time.monotonic()
            if progress and now - last_report[0] > 0.5:
                last_report[0] = now
                progress(state)

        # No outage deadline here: a hub that stays down fails the load after ``attempts``.
        policy = replace(self.policy, deadline_s=0.0)
        problem = ""
        for _ in range(policy.attempts):
            if _size_or_zero(partial) > remote.size:
                partial.unlink()
            try:
                download(
                    url,
                    partial,
                    field=remote.path,
                    max_bytes=remote.size,
                    policy=policy,
                    progress=received,
                    headers=headers,
                    resume=True,
                )
            except StorageUnreachable as exc:
                raise ModelLoadError(
                    f"{where}: {exc}; what was downloaded is kept and the next worker resumes it"
                ) from None
            except InputError:  # more bytes than the listing said
                raise ModelLoadError(
                    f"{where}: the hub sent more of {remote.path} than the {remote.size} bytes "
                    "its listing gave; the repo changed under this revision, so load it again"
                ) from None
            except TransferError as exc:
                raise ModelLoadError(f"{where}: downloading {exc}") from None
            if _size_or_zero(partial) != remote.size:
                problem = f"got {_size_or_zero(partial)} of {remote.size} bytes of {remote.path}"
            elif remote.sha256 and _sha256(partial) != remote.sha256:
                problem = f"{remote.path} failed its sha256 check"
            else:
                os.replace(partial, final)
                state.done_bytes = base_done + remote.size
                return
            log.warning("%s: %s; downloading it again", where, problem)
            partial.unlink(missing_ok=True)
            state.done_bytes = base_done
        raise ModelLoadError(f"{where}: {problem} (tried {policy.attempts} times); check the hub")


def _take_lease(lease: Path) -> bool:
    """Create the lease, or take over a stale one; False while another worker holds it."""
    me = {"host": socket.gethostname(), "pid": os.getpid(), "since": time.time()}
    try:
        fd = os.open(lease, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        try:
            holder = json.loads(lease.read_text() or "{}")
            age = time.time() - lease.stat().st_mtime
        except (OSError, ValueError):
            return False  # being written or removed right now: look again shortly
        dead_here = holder.get("host") == me["host"] and not pid_alive(int(holder.get("pid", 0)))
        if dead_here or age > LEASE_STALE_S:
            log.warning("taking over the model download lease of %s (stale)", holder)
            lease.unlink(missing_ok=True)
        return False
    with os.fdopen(fd, "w") as out:
        json.dump(me, out)
    return True


def _heartbeat(lease: Path, stop: threading.Event) -> None:
    while not stop.wait(LEASE_STALE_S / 6):
        try:
            os.utime(lease)
        except OSError:
            return


def _partial_path(target: Path, remote: RemoteFile) -> Path:
    return target / PARTIAL_DIR / f"{remote.path}.part"


def _size_or_zero(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _bytes_on_disk(target: Path, files: list[str]) -> int:
    return sum(
        _size_or_zero(target / p) or _size_or_zero(target / PARTIAL_DIR / f"{p}.part")
        for p in files
    )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return text[:300]


def main(argv: list[str] | None = None) -> int:
    """``python -m gpu_worker.model_cache``: fill MODEL_DIR ahead of time (e.g. on a pod with
    the network volume attached), for a pipeline's models or one repo."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m gpu_worker.model_cache")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--pipeline", help="download the models this pipeline declares")
    what.add_argument("--repo", help="a hub repo id, e.g. org/name")
    parser.add_argument("--revision", default="main")
    parser.add_argument("--pattern", action="append", help="file pattern (repeatable)")
    parser.add_argument("--model-dir", help="default: MODEL_DIR")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")

    from gpu_worker.settings import WorkerSettings

    settings = WorkerSettings.from_env()
    root = Path(args.model_dir) if args.model_dir else settings.model_dir
    for warning in placement_warnings(root, settings.platform.hf_home or None):
        log.error("%s", warning)
    if args.pipeline:
        from gpu_worker import pipelines

        try:
            specs = pipelines.get(args.pipeline).models()
        except KeyError as exc:
            parser.error(str(exc.args[0]))
    else:
        specs = (ModelSpec(args.repo, args.revision, tuple(args.pattern or ["*"])),)
    cache = ModelCache(root, margin=settings.model_space_margin)
    last = [0.0]

    def report(progress: DownloadProgress) -> None:
        if time.monotonic() - last[0] >= 1.0:
            last[0] = time.monotonic()
            print(progress.describe(), file=sys.stderr, flush=True)

    for spec in specs:
        try:
            folder = cache.ensure(spec, report)
        except ModelLoadError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(
            json.dumps({"repo_id": spec.repo_id, "revision": spec.revision, "path": str(folder)}),
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
