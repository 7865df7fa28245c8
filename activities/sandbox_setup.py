"""The template's setup script: run once in the sandbox after provision and before the
first model turn, for every provider (they only offer ``exec``), its output recorded as
``sandbox.setup`` events.

The output is recorded in batches (about once a second, whole lines where it can), each
event ``{"stream", "output"}``, at most ``SETUP_OUTPUT_BYTES`` in all, from the start of
the output; the last event adds ``exitCode``, ``timedOut`` and, when output was left out,
``clipped: true`` and ``tail`` (the last ``TAIL_CHARS`` of each stream that was cut).
A non-zero exit (or the timeout) fails the activity with ``SandboxSetupFailed``: the run
ends ``failed``/``error`` with ``SANDBOX_SETUP_FAILED``, the exit code and the output's
tail in its message.

A retried activity never runs a script that succeeded again: success is stored as the
event under the key ``sandbox.setup.done`` in the same write as its last output, and a
retry that finds it returns at once. A script interrupted half way (its worker died) runs
again from the start, so a setup script should be safe to run twice.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from sqlmodel import col, select
from temporalio import activity

from activities._support import heartbeats, logger, typed_failures
from activities.sandbox import SandboxAccess
from runyard.db.tables import Run, RunEvent
from runyard.errors import (
    RunNotFound,
    SandboxSetupFailed,
    TemplateNotFound,
)
from runyard.events import data as ev
from runyard.events import keys
from runyard.sandbox.base import ToolError
from runyard.store.events import append_events, locked_run
from runyard.store.templates import find_template
from workflows.payloads import SandboxCall

# The most of a setup script's output kept as events (below the head that exec streams).
SETUP_OUTPUT_BYTES = 32 * 1024
BATCH_SECONDS = 1.0
TAIL_CHARS = 2000  # of the output, in the failure's message
DONE_KEY = keys.SETUP_DONE


class SetupOutput:
    """The script's output as it comes, cut into batches of whole lines, within a cap."""

    def __init__(self, cap: int = SETUP_OUTPUT_BYTES) -> None:
        self.cap = cap
        self.kept = 0  # bytes accepted so far
        self.left_out = 0  # bytes over the cap
        self.seen: dict[str, int] = {"stdout": 0, "stderr": 0}  # bytes streamed to us
        self.pending: dict[str, str] = {}

    def add(self, stream: str, text: str) -> None:
        data = text.encode()
        key = "stderr" if stream == "stderr" else "stdout"
        self.seen[key] += len(data)
        room = self.cap - self.kept
        if len(data) > room:
            self.left_out += len(data) - max(room, 0)
            data = data[: max(room, 0)]
            text = data.decode(errors="ignore")
        self.kept += len(data)
        if text:
            self.pending[key] = self.pending.get(key, "") + text

    def take(self, *, final: bool) -> list[dict[str, Any]]:
        """The batches ready: whole lines only, unless ``final``."""
        out: list[dict[str, Any]] = []
        for stream in sorted(self.pending):
            text = self.pending[stream]
            cut = len(text) if final else text.rfind("\n") + 1
            if cut > 0:
                out.append({"stream": stream, "output": text[:cut]})
            self.pending[stream] = text[cut:]
        return out


def _tail(stdout: str, stderr: str) -> str:
    text = stderr.strip() or stdout.strip()
    return text[-TAIL_CHARS:] if text else "(no output)"


class SandboxSetupActivities(SandboxAccess):
    @activity.defn(name="setup_sandbox")
    @typed_failures
    @heartbeats
    async def setup_sandbox(self, inp: SandboxCall) -> None:
        # A sandbox rebuilt after its host was lost (generation n) is set up again, under
        # keys of its own.
        gen = inp.sandbox.generation
        done_key = keys.setup_done(gen)
        async with self.db.session() as s:
            run = await s.get(Run, inp.run_id)
            done = (
                await s.execute(
                    select(col(RunEvent.id)).where(
                        col(RunEvent.run_id) == inp.run_id, col(RunEvent.key) == done_key
                    )
                )
            ).first()
        if run is None:
            raise RunNotFound(f"{inp.run_id} is not in the store")
        if done is not None:
            return  # a retry after the script succeeded: never run it twice
        template = await self.db.read(lambda s: find_template(s, run.org_id, run.template))
        if template is None:
            raise TemplateNotFound(f"template {run.template!r} is gone")
        script = template.setup_script
        if not script:
            return
        sandbox = await self._provider(inp.sandbox.provider).get(inp.sandbox.sandbox_id)
        log = logger(run.id, sandbox_id=inp.sandbox.sandbox_id, org_id=run.org_id)
        attempt = activity.info().attempt
        output = SetupOutput()
        written = 0

        async def record(batches: list[dict[str, Any]], end: dict[str, Any] | None) -> None:
            nonlocal written
            if end is not None:
                batches = batches or [{"stream": "stdout", "output": ""}]
                batches[-1] = {**batches[-1], **end}
            if not batches:
                return
            events = []
            for i, data in enumerate(batches):
                last = end is not None and i == len(batches) - 1
                ok = last and end is not None and end["exitCode"] == 0
                key = done_key if ok else keys.setup_batch(gen, attempt, written)
                events.append(ev.SandboxSetup.model_validate(data).event(key))
                written += 1
            await self.db.transact(lambda s: append_events(s, locked_run(s, run.id), events))

        finished = asyncio.Event()

        async def flush_every_second() -> None:
            while not finished.is_set():  # a write under way is never cut short
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(finished.wait(), BATCH_SECONDS)
                if not finished.is_set():  # the rest goes with the last event
                    await record(output.take(final=False), None)

        timeout = self.settings.setup_timeout_seconds
        flusher = asyncio.create_task(flush_every_second())
        try:
            res = await sandbox.exec(script, timeout=timeout, on_output=output.add)
        except ToolError as exc:
            raise SandboxSetupFailed(f"the setup script could not run: {exc}") from exc
        finally:
            finished.set()
            await flusher
        code = 124 if res.timed_out else res.exit_code
        end: dict[str, Any] = {"exitCode": code, "timedOut": res.timed_out}
        # Cut here (the cap), or by exec (it streams only the head; the result has the tail).
        whole = {"stdout": res.stdout, "stderr": res.stderr}
        cut = {k: v for k, v in whole.items() if len(v.encode()) > output.seen[k]}
        if output.left_out or cut:
            end["clipped"] = True
            end["tail"] = {k: v[-TAIL_CHARS:] for k, v in (cut or whole).items() if v}
        await record(output.take(final=True), end)
        if res.timed_out:
            raise SandboxSetupFailed(
                f"the setup script timed out after {timeout} s: {_tail(res.stdout, res.stderr)}"
            )
        if code != 0:
            why = " (the sandbox's memory limit was hit)" if res.oom_killed else ""
            raise SandboxSetupFailed(
                f"the setup script exited {code}{why}: {_tail(res.stdout, res.stderr)}"
            )
        log.info("sandbox.setup_done", events=written, clipped="clipped" in end)
