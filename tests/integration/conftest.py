"""Fixtures of the integration tests that several modules share."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from runyard.sandbox.local import LocalSandboxProvider


@pytest.fixture(params=["bwrap", "plain"])
async def provider(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[LocalSandboxProvider]:
    """A local provider with bubblewrap and one without (``RUNYARD_SANDBOX_BWRAP=off``);
    its sandboxes are destroyed (unmounted) after the test. Modules with a provider of
    their own (another size, other settings) define ``provider`` themselves."""
    bwrap = shutil.which("bwrap")
    if request.param == "bwrap" and bwrap is None:
        pytest.skip("bubblewrap is not installed")
    p = LocalSandboxProvider(tmp_path / "sbx", bwrap=bwrap if request.param == "bwrap" else None)
    yield p
    for d in list(p.root.glob("sbx_*")):
        await p.destroy(d.name)
