"""The ``ArtifactStore`` protocol and its two implementations: a local directory in the
data dir (downloads are HMAC-signed URLs the API serves) and any S3-compatible bucket
(``RUNYARD_ARTIFACTS_URL=s3://bucket/prefix``; real presigned URLs)."""

from __future__ import annotations

import asyncio
import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from runyard.artifacts.signing import signed_path
from runyard.secrets import secret_key
from runyard.settings import Settings


class ArtifactStore(Protocol):
    async def put(self, storage_path: str, data: bytes, content_type: str) -> None: ...

    async def get(self, storage_path: str, max_bytes: int) -> bytes:
        """The first ``max_bytes`` of what ``put`` stored (FileNotFoundError if nothing)."""
        ...

    async def presign(
        self, storage_path: str, expires_at: int, expires_in: int, api_base_url: str
    ) -> str:
        """A URL that downloads the bytes without an API key for ``expires_in`` seconds
        (until ``expires_at``, unix seconds)."""
        ...


def _safe(storage_path: str) -> str:
    parts = storage_path.split("/")
    if not storage_path or any(p in ("", ".", "..") for p in parts) or "\0" in storage_path:
        raise ValueError(f"bad storage path {storage_path!r}")
    return storage_path


class LocalArtifactStore:
    def __init__(self, root: Path, key: bytes) -> None:
        self.root = root
        self._key = key

    def path(self, storage_path: str) -> Path:
        return self.root / _safe(storage_path)

    async def put(self, storage_path: str, data: bytes, content_type: str) -> None:
        target = self.path(storage_path)

        def write() -> None:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(target.name + ".part")
            tmp.write_bytes(data)
            os.replace(tmp, target)

        await asyncio.to_thread(write)

    async def get(self, storage_path: str, max_bytes: int) -> bytes:
        target = self.path(storage_path)

        def read() -> bytes:
            with target.open("rb") as f:
                return f.read(max_bytes)

        return await asyncio.to_thread(read)

    async def presign(
        self, storage_path: str, expires_at: int, expires_in: int, api_base_url: str
    ) -> str:
        return api_base_url.rstrip("/") + signed_path(self._key, _safe(storage_path), expires_at)


class S3ArtifactStore:
    """boto3 against AWS or any S3-compatible endpoint (``AWS_ENDPOINT_URL``)."""

    def __init__(self, bucket: str, prefix: str, client: Any = None) -> None:
        import boto3
        from botocore.config import Config

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        # SigV4 presigned URLs (X-Amz-Signature, up to 7 days), as every region accepts.
        self._client = client or boto3.client("s3", config=Config(signature_version="s3v4"))

    def key(self, storage_path: str) -> str:
        path = _safe(storage_path)
        return f"{self.prefix}/{path}" if self.prefix else path

    async def put(self, storage_path: str, data: bytes, content_type: str) -> None:
        await asyncio.to_thread(
            self._client.put_object,
            Bucket=self.bucket,
            Key=self.key(storage_path),
            Body=data,
            ContentType=content_type,
        )

    async def get(self, storage_path: str, max_bytes: int) -> bytes:
        def read() -> bytes:
            try:
                got = self._client.get_object(
                    Bucket=self.bucket, Key=self.key(storage_path), Range=f"bytes=0-{max_bytes - 1}"
                )
            except self._client.exceptions.NoSuchKey as exc:
                raise FileNotFoundError(storage_path) from exc
            data: bytes = got["Body"].read(max_bytes)
            return data

        return await asyncio.to_thread(read)

    async def presign(
        self, storage_path: str, expires_at: int, expires_in: int, api_base_url: str
    ) -> str:
        url: str = self._client.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.bucket, "Key": self.key(storage_path)},
            ExpiresIn=expires_in,
        )
        return url


@lru_cache(maxsize=8)
def _cached(url: str | None, data_dir: str, key: bytes) -> ArtifactStore:
    if url and url.startswith("s3://"):
        parts = urlsplit(url)
        return S3ArtifactStore(parts.netloc, parts.path)
    if url:
        raise ValueError(f"RUNYARD_ARTIFACTS_URL must be s3://bucket/prefix, not {url!r}")
    return LocalArtifactStore(Path(data_dir) / "artifacts", key)


def artifact_store(settings: Settings) -> ArtifactStore:
    """The store this install is configured with (built once per process)."""
    key = b"" if (settings.artifacts_url or "").startswith("s3://") else secret_key(settings)
    return _cached(settings.artifacts_url, str(settings.data_dir.resolve()), key)
