"""Artifacts: files a run produced, stored in an ``ArtifactStore`` with signed downloads."""
