"""Encrypted workflow history on the real stack (``RUNYARD_PAYLOAD_KEYS``): read raw from
Temporal, a run's history holds neither its prompt nor a value of its ``env`` (quoted by a
failing setup script's error); the Temporal UI's decode call to the codec server, and the
Temporal CLI, return both; a key rotation keeps a run started under the old key readable
and running."""

from __future__ import annotations

import base64
import os
import re
import secrets
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from google.protobuf import json_format
from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload
from temporalio.client import Client, WorkflowHistory

from runyard.db.engine import Database
from runyard.encryption import ENCODING, KEY_ID, new_key_spec
from tests.conftest import TERMINAL, Keys, async_db_url, launch_stack, stack_env, wait_for
from tests.fakes.anthropic_server import FakeAnthropic
from tests.stack import Stack

UI = "http://127.0.0.1:8233"
K1, K2 = new_key_spec("k1"), new_key_spec("k2")


@pytest.fixture(scope="module")
def enc_stack(
    tmp_path_factory: pytest.TempPathFactory, temporal_server: str, fake_anthropic: FakeAnthropic
) -> Iterator[Stack]:
    """A stack with payload keys, configured as ``runyard dev`` configures its own."""
    data = tmp_path_factory.mktemp("runyard-enc")
    env = stack_env(
        data,
        temporal_server,
        fake_anthropic.base_url,
        # k2 is known everywhere before it is used: the first step of a rotation.
        RUNYARD_PAYLOAD_KEYS=f"{K1},{K2}",
        RUNYARD_CODEC_ORIGINS=UI,
        RUNYARD_CODEC_LOOPBACK_OPEN="true",
    )
    s = launch_stack(data, env)
    yield s
    # Its runs have ended: the worker need not take its graceful seconds to stop.
    for worker in list(s.workers):
        s.kill_worker(worker)
    s.stop()


@pytest.fixture
async def enc_api(enc_stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    db = Database(async_db_url(enc_stack.env))
    key = await Keys(db).make("org-" + secrets.token_hex(4))
    await db.dispose()
    async with httpx.AsyncClient(
        base_url=enc_stack.api_url, headers={"Authorization": f"Bearer {key}"}, timeout=30
    ) as client:
        yield client


async def raw_history(stack: Stack, run_id: str) -> WorkflowHistory:
    """The history as anyone with access to Temporal reads it: no codec."""
    client = await Client.connect(stack.env["TEMPORAL_ADDRESS"])
    return await client.get_workflow_handle(run_id).fetch_history()


def history_payloads(history: WorkflowHistory) -> list[Payload]:
    return [p for event in history.events for p in payloads_in(event)]


def payloads_in(message: Message) -> list[Payload]:
    """Every payload anywhere in a history's events (inputs, results, failures' encoded
    attributes, summaries, search attributes)."""
    found: list[Payload] = []
    for field, value in message.ListFields():
        if field.message_type is None:
            continue
        if field.message_type.GetOptions().map_entry:
            items = list(value.values())
        elif isinstance(value, Message):
            items = [value]
        else:  # a repeated field
            items = list(value)
        for item in items:
            if isinstance(item, Payload):
                found.append(item)
            elif isinstance(item, Message):
                found += payloads_in(item)
    return found


async def ui_decode(stack: Stack, payloads: list[Payload]) -> dict[str, Any]:
    """The Temporal UI's call (its data-encoder.ts): POST <endpoint>/decode from its
    origin, X-Namespace, no token (the dev UI has no login), proto3 JSON."""
    body = {"payloads": [json_format.MessageToDict(p) for p in payloads]}
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=30) as http:
        got = await http.post(
            "/codec/decode",
            json=body,
            headers={"X-Namespace": "default", "Origin": UI},
        )
    assert got.status_code == 200, got.text
    assert got.headers["access-control-allow-origin"] == UI
    out: dict[str, Any] = got.json()
    return out


def plain_text(decoded: dict[str, Any]) -> str:
    return "\n".join(
        base64.b64decode(p.get("data", "")).decode(errors="replace") for p in decoded["payloads"]
    )


async def test_history_is_ciphertext_and_the_ui_decodes_it(
    enc_api: httpx.AsyncClient, enc_stack: Stack
) -> None:
    token = "tok-" + secrets.token_hex(12)
    prompt = "Fix the flaky login test " + secrets.token_hex(6)
    slug = "t-" + secrets.token_hex(4)
    made = await enc_api.post(
        "/v1/templates",
        json={"slug": slug, "setupScript": 'echo "deploying with $DEPLOY_TOKEN"; exit 7'},
    )
    assert made.status_code == 201, made.text
    created = await enc_api.post(
        "/v1/runs",
        json={
            "prompt": prompt,
            "model": "scripted",
            "template": slug,
            "env": {"DEPLOY_TOKEN": token},
            "start": True,
        },
    )
    assert created.status_code == 201, created.text
    done = await wait_for(enc_api, created.json()["id"], TERMINAL, timeout=60)
    assert done["error"]["code"] == "SANDBOX_SETUP_FAILED", done
    assert token in done["error"]["message"]  # so the value went through the workflow

    history = await raw_history(enc_stack, done["id"])
    raw = b"".join(event.SerializeToString() for event in history.events)
    assert prompt.encode() not in raw and token.encode() not in raw
    assert ENCODING in raw
    found = history_payloads(history)
    # The run's search attributes are left readable (the UI lists and filters by them).
    assert b'"failed"' in [p.data for p in found]  # RunyardStatus

    decoded = plain_text(await ui_decode(enc_stack, found))
    assert prompt in decoded  # the workflow's summary
    assert token in decoded  # the setup failure's message (an encoded failure attribute)

    # The Temporal CLI, with an admin key, through the same codec server.
    db = Database(async_db_url(enc_stack.env))
    admin = await Keys(db).make("org-" + secrets.token_hex(4), ["admin"])
    await db.dispose()
    shown = subprocess.run(
        [
            str(Path(sys.executable).parent / "temporal"),
            "workflow",
            "show",
            "-w",
            done["id"],
            "--address",
            enc_stack.env["TEMPORAL_ADDRESS"],
            "--codec-endpoint",
            f"{enc_stack.api_url}/codec",
            "--codec-auth",
            f"Bearer {admin}",
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("TEMPORAL_")},
    )
    assert shown.returncode == 0, shown.stderr
    sealed = base64.b64encode(ENCODING).decode()
    assert sealed not in shown.stdout  # every payload came back decoded
    datas = re.findall(r'"data": "([A-Za-z0-9+/=]+)"', shown.stdout)
    assert token in "\n".join(base64.b64decode(d).decode(errors="replace") for d in datas)


async def test_a_rotated_key_keeps_old_runs_readable_and_running(
    enc_api: httpx.AsyncClient, enc_stack: Stack
) -> None:
    queued = await enc_api.post(
        "/v1/runs", json={"prompt": '#!scripted\n{"text": "done"}', "model": "scripted"}
    )
    assert queued.status_code == 201, queued.text
    run_id = queued.json()["id"]
    before = history_payloads(await raw_history(enc_stack, run_id))
    assert {p.metadata[KEY_ID] for p in before if p.metadata.get("encoding") == ENCODING} == {b"k1"}

    # The second step: k2 first, k1 kept. The worker is replaced by one with it: the old
    # one stops gracefully (its sticky queue goes with it, and it polls no more at once)
    # while the new one starts; the API, which already knows k2, reads what it writes.
    enc_stack.env["RUNYARD_PAYLOAD_KEYS"] = f"{K2},{K1}"
    [old] = enc_stack.workers
    os.killpg(old.pid, signal.SIGTERM)
    enc_stack.workers.clear()
    enc_stack.start_worker()
    old.wait(30)  # before the exec: only the new worker can take it

    # The run written under k1 is executed and ends under k2 (the new worker replays the
    # k1 history from the start).
    execed = await enc_api.post(f"/v1/runs/{run_id}/exec")
    assert execed.status_code == 202, execed.text
    done = await wait_for(enc_api, run_id, TERMINAL, timeout=60)
    assert done["status"] == "completed", done
    after = history_payloads(await raw_history(enc_stack, run_id))
    used = {p.metadata[KEY_ID] for p in after if p.metadata.get("encoding") == ENCODING}
    assert used == {b"k1", b"k2"}
    decoded = await ui_decode(enc_stack, after)
    assert not [p for p in decoded["payloads"] if "encryption-key-id" in p.get("metadata", {})]
    assert "#!scripted" in plain_text(decoded)  # the summary, written under k1
