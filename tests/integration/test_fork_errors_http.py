"""The errors of checkpoints and forks as the HTTP API answers them (issue 26), on the API
app in this process: a checkpoint past retention is 410, attempts that do not fit under
the active-run cap are 429 and make nothing, a turn out of range is 400. Each is refused
before any workflow would start, so no Temporal is needed."""

from __future__ import annotations

from pathlib import Path

import httpx

from api.app import create_app
from runyard.devserver import free_port
from runyard.settings import Settings
from runyard.store.orgs import ensure_org
from tests.conftest import Keys
from tests.integration.test_fork_service import _source

PROBLEM = "application/problem+json"


async def test_expired_checkpoints_and_groups_that_do_not_fit(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path, temporal_address=f"127.0.0.1:{free_port()}", max_active_runs=2
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        db = app.state.db
        key = await Keys(db).make("org-fork-http")
        async with db.write() as s:
            org = await ensure_org(s, "org-fork-http")
        source = await _source(db, org.id, turns=3)  # turn 1's checkpoint is 40 days old
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://api",
            headers={"Authorization": f"Bearer {key}"},
        ) as api:
            listed = (await api.get(f"/v1/runs/{source.id}/checkpoints")).json()
            assert [c["turn"] for c in listed["data"]] == [1]
            for resp in (
                await api.get(f"/v1/runs/{source.id}/checkpoints/1/diff"),
                await api.post(f"/v1/runs/{source.id}/fork", json={"turn": 2}),
            ):
                assert resp.status_code == 410, resp.text
                assert resp.headers["content-type"] == PROBLEM
                assert resp.json()["type"] == "CHECKPOINT_EXPIRED"
            resp = await api.post(f"/v1/runs/{source.id}/fork", json={"turn": 5})
            assert resp.status_code == 400 and resp.json()["errors"][0]["field"] == "turn"

            # Three attempts under a cap of two: 429, and none of them is made.
            body = {"turn": 2, "restore": "conversation", "attempts": 3}
            resp = await api.post(f"/v1/runs/{source.id}/fork", json=body)
            assert resp.status_code == 429, resp.text
            assert resp.json()["type"] == "CONCURRENT_RUN_LIMIT_EXCEEDED"
            assert resp.headers["Retry-After"]
            create = {"prompt": "p", "model": "scripted", "attempts": 3, "start": True}
            resp = await api.post("/v1/runs", json=create)
            assert resp.status_code == 429 and "3 attempts do not fit" in resp.json()["detail"]
            runs = (await api.get("/v1/runs")).json()
            assert [r["id"] for r in runs["data"]] == [source.id]
