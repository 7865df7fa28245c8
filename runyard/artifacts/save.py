"""Storing one artifact's bytes and describing it (the row the activity then writes)."""

from __future__ import annotations

import hashlib
import mimetypes
import re
from typing import Any

from runyard.artifacts.store import ArtifactStore
from runyard.db.tables import Artifact
from runyard.db.types import utcnow
from runyard.ids import new_id
from runyard.store.run_view import iso

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def clean_name(name: str) -> str:
    """A file name safe in a storage path and a Content-Disposition header."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = _UNSAFE.sub("_", base).strip("._")[:200]
    return cleaned or "artifact"


async def store_artifact(
    store: ArtifactStore, *, org_id: str, run_id: str, name: str, data: bytes
) -> Artifact:
    art_id = new_id("art")
    name = clean_name(name)
    content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    if name.endswith((".patch", ".diff")):
        content_type = "text/x-diff"
    storage_path = f"{org_id}/{run_id}/{art_id}/{name}"
    await store.put(storage_path, data, content_type)
    return Artifact(
        id=art_id,
        org_id=org_id,
        run_id=run_id,
        name=name,
        storage_path=storage_path,
        size=len(data),
        content_type=content_type,
        sha256=hashlib.sha256(data).hexdigest(),
        created_at=utcnow(),
    )


def artifact_object(a: Artifact) -> dict[str, Any]:
    return {
        "id": a.id,
        "object": "artifact",
        "name": a.name,
        "storagePath": a.storage_path,
        "size": a.size,
        "contentType": a.content_type,
        "sha256": a.sha256,
        "createdAt": iso(a.created_at),
    }
