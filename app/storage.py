"""File storage for inputs and results: a local folder or an S3 bucket (boto3).

Workers never hold storage credentials (DESIGN invariant 6): they get URLs. Local storage
hands out HMAC-signed URLs to this app's ``/files/<key>`` route (GET with Range, PUT for
results); S3 storage hands out presigned GET/PUT URLs. Keys look like
``jobs/<job id>/input/<name>`` and never leave the storage root.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Protocol
from urllib.parse import urlencode

import psutil

from app import inert, signing
from app.settings import Settings

KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*$")
CHUNK = 1024 * 1024


class StorageError(Exception):
    pass


class InvalidKey(StorageError):
    """The key could name something outside the storage root (the file route answers 404)."""


class TooLarge(StorageError):
    """A stream went past its size limit; nothing was kept."""


def check_key(key: str) -> str:
    if not key or len(key) > 512 or not KEY_RE.match(key) or ".." in key.split("/"):
        raise InvalidKey(f"invalid storage key {key!r}")
    return key


def safe_name(filename: str) -> str:
    """A file name reduced to characters that are safe in a key and a URL."""
    base = os.path.basename(filename.replace("\\", "/"))
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", base).lstrip("._-")[:120]
    return cleaned or "file"


def copy_limited(src: BinaryIO, dst: BinaryIO, max_bytes: int | None) -> int:
    """Copy in chunks; ``TooLarge`` past ``max_bytes``. Returns the bytes copied."""
    total = 0
    while True:
        chunk = src.read(CHUNK)
        if not chunk:
            return total
        total += len(chunk)
        if max_bytes is not None and total > max_bytes:
            raise TooLarge(f"more than {max_bytes} bytes")
        dst.write(chunk)


class Storage(Protocol):
    def staging_file(self) -> BinaryIO: ...
    def adopt(self, staged_path: str, key: str, content_type: str | None) -> int: ...
    def save_stream(self, key: str, stream: BinaryIO, max_bytes: int | None = None) -> int: ...
    def save_bytes(self, key: str, data: bytes, content_type: str | None = None) -> int: ...
    def exists(self, key: str) -> bool: ...
    def size(self, key: str) -> int | None: ...
    def delete(self, key: str) -> None: ...
    def delete_prefix(self, prefix: str) -> int: ...
    def get_url(self, key: str, ttl_s: int, *, external: bool = True) -> str: ...
    def put_url(self, key: str, content_type: str, ttl_s: int) -> str: ...
    def iter_staging(self) -> Iterator[tuple[str, float]]: ...
    def stage_copy(self, key: str) -> str: ...
    def iter_job_folders(self) -> Iterator[tuple[str, float]]: ...


class _Staged:
    """Uploads are staged on local disk first, in both backends."""

    staging: Path

    def iter_staging(self) -> Iterator[tuple[str, float]]:
        for path in self.staging.iterdir():
            yield str(path), path.stat().st_mtime


class LocalStorage(_Staged):
    def __init__(self, root: str, secret: str, public_base_url: str) -> None:
        self.root = Path(root).resolve()
        self.staging = self.root / ".staging"
        self.staging.mkdir(parents=True, exist_ok=True)
        self._secret = secret
        self._base = public_base_url.rstrip("/")

    def path(self, key: str) -> Path:
        path = (self.root / check_key(key)).resolve()
        if self.root not in path.parents:
            raise InvalidKey(f"invalid storage key {key!r}")
        return path

    def staging_file(self) -> BinaryIO:
        return tempfile.NamedTemporaryFile(dir=self.staging, delete=False, prefix=staging_prefix())  # noqa: SIM115

    def stage_copy(self, key: str) -> str:
        """A copy of a stored file in staging (a resubmitted job reuses its input)."""
        with self.staging_file() as tmp, open(self.path(key), "rb") as src:
            shutil.copyfileobj(src, tmp)
        return tmp.name

    def adopt(self, staged_path: str, key: str, content_type: str | None = None) -> int:
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staged_path, target)  # same file system: a rename, no copy
        return target.stat().st_size

    def save_stream(self, key: str, stream: BinaryIO, max_bytes: int | None = None) -> int:
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        with self.staging_file() as tmp:
            try:
                size = copy_limited(stream, tmp, max_bytes)
            except BaseException:
                tmp.close()
                os.unlink(tmp.name)
                raise
        os.replace(tmp.name, target)
        return size

    def save_bytes(self, key: str, data: bytes, content_type: str | None = None) -> int:
        import io

        return self.save_stream(key, io.BytesIO(data))

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def size(self, key: str) -> int | None:
        path = self.path(key)
        return path.stat().st_size if path.is_file() else None

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def delete_prefix(self, prefix: str) -> int:
        folder = self.path(prefix.rstrip("/"))
        if not folder.is_dir():
            return 0
        count = sum(1 for p in folder.rglob("*") if p.is_file())
        shutil.rmtree(folder)
        return count

    def _signed(self, method: str, key: str, ttl_s: int, external: bool) -> str:
        query = urlencode(signing.sign(self._secret, method, check_key(key), ttl_s))
        path = f"/files/{key}?{query}"
        return f"{self._base}{path}" if external else path

    def get_url(self, key: str, ttl_s: int, *, external: bool = True) -> str:
        return self._signed("GET", key, ttl_s, external)

    def put_url(self, key: str, content_type: str, ttl_s: int) -> str:
        return self._signed("PUT", key, ttl_s, True)

    def iter_job_folders(self) -> Iterator[tuple[str, float]]:
        """``(job id, newest modification time)`` of every ``jobs/<id>/`` folder."""
        folder = self.root / "jobs"
        if not folder.is_dir():
            return
        for path in folder.iterdir():
            times = [p.stat().st_mtime for p in path.rglob("*")] + [path.stat().st_mtime]
            yield path.name, max(times)


class S3Storage(_Staged):
    def __init__(self, settings: Settings) -> None:
        import boto3
        from botocore.config import Config

        self.bucket = settings.s3_bucket
        kwargs = {
            "region_name": settings.aws_default_region,
            "config": Config(signature_version="s3v4", retries={"mode": "standard"}),
        }
        if settings.s3_endpoint_url:
            kwargs["endpoint_url"] = settings.s3_endpoint_url
        if settings.aws_access_key_id:
            kwargs["aws_access_key_id"] = settings.aws_access_key_id
            kwargs["aws_secret_access_key"] = settings.aws_secret_access_key
        self.client = boto3.client("s3", **kwargs)
        staging = Path(settings.storage_dir) / ".staging"
        staging.mkdir(parents=True, exist_ok=True)
        self.staging = staging

    def staging_file(self) -> BinaryIO:
        return tempfile.NamedTemporaryFile(dir=self.staging, delete=False, prefix=staging_prefix())  # noqa: SIM115

    def stage_copy(self, key: str) -> str:
        """A copy of a stored file in staging (a resubmitted job reuses its input)."""
        with self.staging_file() as tmp:
            self.client.download_fileobj(self.bucket, check_key(key), tmp)
        return tmp.name

    def adopt(self, staged_path: str, key: str, content_type: str | None = None) -> int:
        extra = {"ContentType": content_type} if content_type else None
        try:
            # upload_file streams in multipart chunks; the file is never read whole.
            self.client.upload_file(staged_path, self.bucket, check_key(key), ExtraArgs=extra)
            return os.path.getsize(staged_path)
        finally:
            os.unlink(staged_path)

    def save_stream(self, key: str, stream: BinaryIO, max_bytes: int | None = None) -> int:
        with self.staging_file() as tmp:
            try:
                copy_limited(stream, tmp, max_bytes)
            except BaseException:
                tmp.close()
                os.unlink(tmp.name)
                raise
        return self.adopt(tmp.name, key)

    def save_bytes(self, key: str, data: bytes, content_type: str | None = None) -> int:
        extra = {"ContentType": content_type} if content_type else {}
        self.client.put_object(Bucket=self.bucket, Key=check_key(key), Body=data, **extra)
        return len(data)

    def size(self, key: str) -> int | None:
        from botocore.exceptions import ClientError

        try:
            head = self.client.head_object(Bucket=self.bucket, Key=check_key(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        return int(head["ContentLength"])

    def exists(self, key: str) -> bool:
        return self.size(key) is not None

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=check_key(key))

    def delete_prefix(self, prefix: str) -> int:
        count = 0
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=check_key(prefix.rstrip("/"))):
            keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if keys:
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": keys})
                count += len(keys)
        return count

    def get_url(self, key: str, ttl_s: int, *, external: bool = True) -> str:
        # The browser opens result URLs: only allow-listed media may render (invariant 8).
        content_type, how = inert.disposition(check_key(key))
        params = {
            "Bucket": self.bucket,
            "Key": key,
            "ResponseContentType": content_type,
            "ResponseContentDisposition": how,
        }
        return self.client.generate_presigned_url("get_object", Params=params, ExpiresIn=ttl_s)

    def put_url(self, key: str, content_type: str, ttl_s: int) -> str:
        return self.client.generate_presigned_url(
            "put_object",
            Params={"Bucket": self.bucket, "Key": check_key(key), "ContentType": content_type},
            ExpiresIn=ttl_s,
        )

    def iter_job_folders(self) -> Iterator[tuple[str, float]]:
        newest: dict[str, float] = {}
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix="jobs/"):
            for item in page.get("Contents", []):
                job_id = item["Key"].split("/")[1]
                stamp = item["LastModified"].timestamp()
                newest[job_id] = max(stamp, newest.get(job_id, 0.0))
        yield from newest.items()


def make_storage(settings: Settings) -> Storage:
    if settings.storage_backend == "s3":
        return S3Storage(settings)
    return LocalStorage(settings.storage_dir, settings.secret_key, settings.public_base_url)


def staging_prefix() -> str:
    """Staged uploads are named for the host and process writing them (pid and start time,
    so a reused pid is not mistaken for the writer), so that the part left by a process that
    died mid-upload can be told from one still being written (``remove_orphaned_staging``)."""
    host = re.sub(r"[^A-Za-z0-9]", "_", socket.gethostname())[:64]
    pid = os.getpid()
    return f"up-{host}-{pid}.{_started(pid) or 0}-"


def remove_orphaned_staging(storage: Storage) -> int:
    """Delete staged uploads whose writing process, on this host, is gone; return how many."""
    host = staging_prefix().split("-")[1]
    removed = 0
    for path, _mtime in storage.iter_staging():
        parts = Path(path).name.split("-")
        if len(parts) < 4 or parts[0] != "up" or parts[1] != host:
            continue
        pid, _, started = parts[2].partition(".")
        if not pid.isdigit() or _writer_alive(int(pid), started):
            continue
        Path(path).unlink(missing_ok=True)
        removed += 1
    return removed


def _started(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (the number Linux keeps, so names
    written by earlier releases compare equal), or None when there is no such process."""
    try:
        created = psutil.Process(pid).create_time()
    except psutil.Error:
        return None
    return str(round((created - psutil.boot_time()) * os.sysconf("SC_CLK_TCK")))


def _writer_alive(pid: int, started: str) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    if started and started != "0":
        return _started(pid) in (started, None)
    return True


def remove_stale_staging(storage: Storage, older_than_s: float) -> int:
    """Delete upload temp files left by crashed requests."""
    cutoff = time.time() - older_than_s
    removed = 0
    for path, mtime in storage.iter_staging():
        if mtime < cutoff:
            Path(path).unlink(missing_ok=True)
            removed += 1
    return removed
