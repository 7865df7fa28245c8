"""Credits: granted by the operator, charged per completed turn, enforced before the next."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlmodel import col

from runyard.db.engine import Database
from runyard.db.tables import CreditEntry
from tests.conftest import Keys, async_db_url, script, wait_for
from tests.integration.test_accounts import client
from tests.integration.test_api_errors import assert_problem
from tests.integration.test_cli import runyard
from tests.stack import Stack

# 1000 input tokens of a sonnet-priced model: $0.003, three credits.
THREE_CREDITS = {"inputTokens": 1000, "outputTokens": 0}
FREE = {"inputTokens": 0, "outputTokens": 0}


def bash_turn() -> dict[str, Any]:
    return {"tool": "bash", "input": {"command": "true"}, "usage": THREE_CREDITS}


def grant(stack: Stack, org: str, amount: int) -> int:
    out = runyard(stack, "credits", "grant", "--org", org, str(amount))
    assert out.returncode == 0, out.stderr
    return int(out.stdout)


async def test_credits_run_out_mid_run(stack: Stack, keys: Keys) -> None:
    org = "credits-" + secrets.token_hex(4)
    key = await keys.make(org)
    assert grant(stack, org, 5) == 5
    async with client(stack, key) as api:
        assert (await api.get("/v1/usage")).json()["creditsBalance"] == 5
        # Turn 1 leaves 2 credits, turn 2 leaves -1: turn 3 is never called.
        lines = [bash_turn(), bash_turn(), {"text": "never reached"}]
        body = {"prompt": script(*lines), "model": "scripted", "start": True}
        run = (await api.post("/v1/runs", json=body)).json()
        done = await wait_for(api, run["id"], {"completed", "failed", "cancelled"})
        assert done["status"] == "failed" and done["failReason"] == "error", done
        assert done["error"]["code"] == "USAGE_INSUFFICIENT_CREDITS", done
        assert done["usage"]["turns"] == 2 and done["usage"]["creditsUsed"] == 6
        usage = (await api.get("/v1/usage")).json()
        assert usage["creditsBalance"] == -1 and usage["creditsUsed"] == 6
        # No credit left: create-with-start is refused; a queued create is not.
        resp = await api.post("/v1/runs", json=body)
        assert_problem(resp, 402, "USAGE_INSUFFICIENT_CREDITS")
        queued = await api.post("/v1/runs", json=body | {"start": False})
        assert queued.status_code == 201, queued.text
        assert grant(stack, org, 10) == 9
        ok = {"prompt": script({"text": "ok"}), "model": "scripted", "start": True}
        again = await api.post("/v1/runs", json=ok)
        assert again.status_code == 201, again.text
        await wait_for(api, again.json()["id"], {"completed"})
        await api.post(f"/v1/runs/{queued.json()['id']}/cancel")


@pytest.mark.parametrize("which", ["stack", "pg_stack"])
async def test_concurrent_turns_are_charged_exactly(
    which: str, request: pytest.FixtureRequest
) -> None:
    stack: Stack = request.getfixturevalue(which)
    db = Database(async_db_url(stack.env))
    try:
        org = "credits-many-" + secrets.token_hex(4)
        key = await Keys(db).make(org)
        grant(stack, org, 1000)
        async with client(stack, key) as api:
            body = {
                "prompt": script(*[bash_turn()] * 3, {"text": "done", "usage": FREE}),
                "model": "scripted",
            }
            created = await asyncio.gather(
                *(api.post("/v1/runs", json=body | {"start": True}) for _ in range(8))
            )
            assert all(r.status_code == 201 for r in created), [r.text for r in created]
            runs = await asyncio.gather(
                *(wait_for(api, r.json()["id"], {"completed"}, timeout=60) for r in created)
            )
            assert sum(r["usage"]["creditsUsed"] for r in runs) == 8 * 9
            usage = (await api.get("/v1/usage")).json()
            assert usage["creditsBalance"] == 1000 - 8 * 9 and usage["creditsUsed"] == 8 * 9
        # The ledger: one charge per turn, and nothing else for these runs.
        async with db.session() as s:
            charges = (
                await s.execute(
                    select(func.count(), func.sum(CreditEntry.amount)).where(
                        col(CreditEntry.run_id).in_([r["id"] for r in runs])
                    )
                )
            ).one()
        assert tuple(charges) == (8 * 3, -8 * 9)
    finally:
        await db.dispose()
