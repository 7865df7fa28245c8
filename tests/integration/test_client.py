"""``runyard.client`` (sync ``Runyard`` and async ``AsyncRunyard``) against the real stack."""

from __future__ import annotations

import asyncio

import pytest

from runyard.client import AsyncRunyard, Runyard, RunyardAPIError
from runyard.devserver import free_port
from tests.conftest import Keys, script
from tests.stack import Stack


async def test_sync_client_run_lifecycle(stack: Stack, keys: Keys) -> None:
    key = await keys.make("client-sync")

    def scenario() -> None:
        with Runyard(stack.api_url, key) as ry:
            queued = ry.create(
                script({"ask": "Colour?"}, {"text": "ok"}),
                model="scripted",
                metadata={"k": "v"},
                max_turns=5,
            )
            assert queued.status == "queued" and queued.guardrails.max_turns == 5
            assert queued.metadata == {"k": "v"}
            accepted = ry.exec(queued.id)
            assert accepted.status == "pending" and accepted.workflow_id == queued.id
            with pytest.raises(RunyardAPIError) as again:
                ry.exec(queued.id)
            assert again.value.code == "RUN_ALREADY_STARTED" and again.value.status == 409
            assert again.value.problem.request_id
            waited = None
            for ev in ry.events(queued.id):
                if ev.type == "run.waiting_for_input":
                    waited = ev.data["question"]
                    ry.answer(queued.id, "teal")
            assert waited == "Colour?"
            done = ry.wait(queued.id, timeout=30)
            assert done.status == "completed" and done.text == "ok"
            assert done.usage.turns == 2 and done.usage.input_tokens > 0
            listed = ry.list(status="completed")
            assert [r.id for r in listed.data] == [queued.id] and listed.pagination.total == 1
            assert ry.get(queued.id).outputs[0].text == "ok"
            log = ry.logs(queued.id)
            assert [e.seq for e in log] == list(range(1, len(log) + 1))
            received = [e for e in log if e.type == "run.input_received"]
            assert received[0].data["content"] == "teal"
            assert ry.cancel(queued.id).status == "completed"  # ended: its status, no error

    await asyncio.to_thread(scenario)


async def test_problems_and_unreachable_api(stack: Stack, keys: Keys) -> None:
    key = await keys.make("client-errors")
    async with AsyncRunyard(stack.api_url, key) as ry:
        with pytest.raises(RunyardAPIError) as missing:
            await ry.get("run_nope")
        assert missing.value.code == "RUN_NOT_FOUND" and missing.value.status == 404
        assert missing.value.problem.title == "Run not found"
        with pytest.raises(RunyardAPIError) as bad:
            await ry.create("x", model="scripted", max_turns=0)
        assert bad.value.code == "VALIDATION_FAILED"
        assert [e.field for e in bad.value.problem.errors] == ["maxTurns"]
        run = await ry.create(script({"text": "x"}), model="scripted")
        with pytest.raises(RunyardAPIError) as not_waiting:
            await ry.answer(run.id, "hello")
        assert not_waiting.value.code == "RUN_NOT_WAITING_FOR_INPUT"
        assert (await ry.cancel(run.id)).status == "cancelled"
    async with AsyncRunyard(stack.api_url, "ry_live_unknown") as wrong:
        with pytest.raises(RunyardAPIError) as unauthorized:
            await wrong.list()
        assert unauthorized.value.code == "API_KEY_INVALID"
    async with AsyncRunyard(f"http://127.0.0.1:{free_port()}", key) as nowhere:
        with pytest.raises(RunyardAPIError) as down:
            await nowhere.list()
        assert down.value.code == "CONNECTION_ERROR" and down.value.status == 0
        assert "cannot reach the Runyard API" in str(down.value)


async def test_async_stream_cut_and_resumed_with_last_event_id(stack: Stack, keys: Keys) -> None:
    """Close the stream mid-run, resume from the last seq seen: no gap, no repeat."""
    key = await keys.make("client-resume")
    steps = [{"tool": "bash", "input": {"command": f"echo step-{i}"}} for i in range(4)]
    async with AsyncRunyard(stack.api_url, key) as ry:
        run = await ry.create(
            script(*steps, {"sleep": 1.5}, {"text": "finished"}), model="scripted", start=True
        )
        first: list[int] = []
        async for ev in ry.events(run.id):
            first.append(ev.seq)
            if ev.type == "tool.result":
                break  # the stream is closed here, mid-run
        assert not (await ry.get(run.id)).is_terminal, "the cut must come before the end"
        rest = [ev async for ev in ry.events(run.id, after=first[-1])]
        seqs = first + [ev.seq for ev in rest]
        assert seqs == list(range(1, len(seqs) + 1))
        assert rest[-1].type == "run.completed"
        assert [e.seq for e in await ry.logs(run.id)] == seqs
        # Resuming after the end of an ended run answers nothing and returns.
        assert [ev async for ev in ry.events(run.id, after=seqs[-1])] == []
        jsonrpc = await ry.create(script({"sleep": 30}, {"text": "never"}), model="scripted")
        await ry.exec(jsonrpc.id)
        assert await ry.command(jsonrpc.id, "cancel") is not None
        assert (await ry.wait(jsonrpc.id, timeout=30)).status == "cancelled"
        with pytest.raises(RunyardAPIError) as unknown:
            await ry.command(jsonrpc.id, "dance")
        assert unknown.value.code == "COMMAND_FAILED" and "-32601" in str(unknown.value)
