"""``Runyard``: the blocking client, method for method the same as ``AsyncRunyard``.

Generated from ``_async.py`` by ``scripts/gen_sync_client.py``: do not edit.
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Iterator
from typing import Any

import httpx
from httpx_sse import SSEError, connect_sse

from runyard.checkpoints.api_model import CheckpointPage
from runyard.client import _core, _forks
from runyard.client.models import (
    TERMINAL_STATUSES,
    Approval,
    ApprovalList,
    ApprovalPage,
    Event,
    ExecAccepted,
    MessageAccepted,
    Run,
    RunGroup,
    RunMessage,
    RunMessagePage,
    RunPage,
    RunStatusInfo,
    RunyardAPIError,
    ThreadRunCreated,
)
from runyard.client.schedules import (
    Schedule,
    ScheduleBackfilled,
    SchedulePage,
    ScheduleTriggered,
    list_schedules_call,
    note_body,
    schedule_body,
)


class Runyard:
    """A client of one Runyard API with one API key.

    ``base_url`` and ``api_key`` default to ``RUNYARD_API_URL`` (else
    ``http://127.0.0.1:8000``) and ``RUNYARD_API_KEY``. Every failure raises
    ``RunyardAPIError``, whose ``problem`` is the API's problem document.
    """

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url, headers = _core.base_settings(base_url, api_key)
        self._http = httpx.Client(
            base_url=self.base_url, headers=headers, timeout=timeout, transport=transport
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Runyard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, call: _core.Call) -> httpx.Response:
        try:
            return self._http.request(
                call.method, call.path, json=call.json, params=call.params, headers=call.headers
            )
        except httpx.HTTPError as exc:
            raise _core.connection_error(self.base_url, exc) from exc

    # Runs -------------------------------------------------------------------------------

    def create(
        self,
        prompt: str,
        *,
        start: bool = False,
        idempotency_key: str | None = None,
        repo: str | None = None,
        model: str | None = None,
        template: str | None = None,
        agent_id: str | None = None,
        thread_id: str | None = None,
        guidance: str | None = None,
        env: dict[str, str] | None = None,
        max_turns: int | None = None,
        max_cost_usd: float | None = None,
        timeout_seconds: int | None = None,
        callback_url: str | None = None,
        metadata: dict[str, Any] | None = None,
        attempts: int | None = None,
    ) -> Run:
        """Create a run: ``queued``, or ``pending`` with ``start=True``. With ``attempts``
        (1 to 4, best-of-N) that many runs are made in one group, all or none: the answer is
        the first; ``group(run.group_id)`` lists them all."""
        fields = {k: v for k, v in locals().items() if k not in ("self", "prompt", "start")}
        fields.pop("idempotency_key")
        call = _core.create_call(
            prompt, start=start, idempotency_key=idempotency_key, fields=fields
        )
        return _core.parse(self._send(call), Run)

    def exec(self, run_id: str) -> ExecAccepted:
        """Start a queued run."""
        return _core.parse(self._send(_core.Call("POST", f"/v1/runs/{run_id}/exec")), ExecAccepted)

    def get(self, run_id: str) -> Run:
        return _core.parse(self._send(_core.Call("GET", f"/v1/runs/{run_id}")), Run)

    def status(self, run_id: str) -> RunStatusInfo:
        call = _core.Call("GET", f"/v1/runs/{run_id}/status")
        return _core.parse(self._send(call), RunStatusInfo)

    def list(
        self,
        *,
        status: str | builtins.list[str] | None = None,
        thread_id: str | None = None,
        agent_id: str | None = None,
        template: str | None = None,
        page: int = 1,
        limit: int = 20,
        group_id: str | None = None,
    ) -> RunPage:
        """One page of the organization's runs, newest first."""
        call = _core.list_call(status, thread_id, agent_id, template, page, limit, group_id)
        return _core.parse(self._send(call), RunPage)

    def cancel(self, run_id: str) -> RunStatusInfo:
        """Cancel the run; a run that has ended answers its status."""
        call = _core.Call("POST", f"/v1/runs/{run_id}/cancel")
        return _core.parse(self._send(call), RunStatusInfo)

    def answer(self, run_id: str, content: str, *, idempotency_key: str | None = None) -> None:
        """Answer the question a ``waiting_for_input`` run asked."""
        _core.checked(self._send(_core.answer_call(run_id, content, idempotency_key)))

    def command(self, run_id: str, method: str, params: dict[str, Any] | None = None) -> Any:
        """A JSON-RPC command (``user_message``, ``cancel``, ``close``); answers its result."""
        return _core.command_result(self._send(_core.command_call(run_id, method, params)))

    def create_thread(self, metadata: dict[str, Any] | None = None) -> str:
        """A new thread; its id (``thr_…``)."""
        call = _core.Call("POST", "/v1/threads", json={"metadata": metadata or {}})
        return str(_core.checked(self._send(call)).json()["id"])

    def create_thread_run(
        self,
        thread_id: str,
        prompt: str,
        *,
        multitask_strategy: str = "reject",
        start: bool = True,
        **fields: Any,
    ) -> ThreadRunCreated:
        """A run that continues the thread. ``multitask_strategy`` says what happens to a
        run of the thread still open: ``reject`` (409), ``enqueue``, ``interrupt`` or
        ``rollback``."""
        call = _core.thread_run_call(thread_id, prompt, multitask_strategy, start, fields)
        return _core.parse(self._send(call), ThreadRunCreated)

    def send_message(
        self,
        run_id: str,
        content: str,
        *,
        mode: str = "steer",
        expected_turn: int | None = None,
    ) -> MessageAccepted:
        """A message to a busy run: ``steer`` (read before its next model call) or
        ``queue`` (read when the agent would otherwise finish)."""
        call = _core.message_call(run_id, content, mode, expected_turn)
        return _core.parse(self._send(call), MessageAccepted)

    def messages(
        self, run_id: str, *, status: str | None = None, page: int = 1, limit: int = 20
    ) -> RunMessagePage:
        """One page of the messages sent to the run, oldest first."""
        call = _core.messages_call(run_id, status, page, limit)
        return _core.parse(self._send(call), RunMessagePage)

    def delete_message(self, run_id: str, message_id: str) -> RunMessage:
        """Withdraw a message the agent has not read yet."""
        call = _core.Call("DELETE", f"/v1/runs/{run_id}/messages/{message_id}")
        return _core.parse(self._send(call), RunMessage)

    def approvals(
        self, run_id: str, *, status: str | None = None, page: int = 1, limit: int = 20
    ) -> ApprovalPage:
        """One page of the run's approvals (``status="pending"``: those that wait)."""
        call = _core.approvals_call(run_id, status, page, limit)
        return _core.parse(self._send(call), ApprovalPage)

    def approve(
        self,
        run_id: str,
        approval_id: str,
        *,
        input: dict[str, Any] | None = None,
        message: str | None = None,
        scope: str = "once",
        idempotency_key: str | None = None,
    ) -> Approval:
        """Approve a tool call; with ``input``, it runs with that input instead (an edit).
        ``scope="run"`` allows that tool and match for the rest of the run."""
        body = {
            "decision": "approve" if input is None else "edit",
            "input": input,
            "message": message,
            "scope": scope,
        }
        call = _core.decision_call(run_id, approval_id, body, idempotency_key)
        return _core.parse(self._send(call), Approval)

    def deny(
        self,
        run_id: str,
        approval_id: str,
        *,
        message: str | None = None,
        idempotency_key: str | None = None,
    ) -> Approval:
        """Deny a tool call; the model reads ``message`` in the call's error result."""
        body = {"decision": "deny", "message": message}
        call = _core.decision_call(run_id, approval_id, body, idempotency_key)
        return _core.parse(self._send(call), Approval)

    def decide(
        self,
        run_id: str,
        decisions: builtins.list[dict[str, Any]],
        *,
        idempotency_key: str | None = None,
    ) -> builtins.list[Approval]:
        """Several decisions (``{"id", "decision", "input"?, "message"?, "scope"?}``),
        applied all or none."""
        call = _core.decision_call(run_id, None, {"decisions": decisions}, idempotency_key)
        return _core.parse(self._send(call), ApprovalList).data

    def logs(self, run_id: str) -> builtins.list[Event]:
        """Every stored event of the run."""
        return _core.log_events(self._send(_core.Call("GET", f"/v1/runs/{run_id}/logs")))

    def event_page(self, run_id: str, *, after: int = 0, limit: int = 1000) -> builtins.list[Event]:
        """Stored events after seq ``after`` (no waiting)."""
        call = _core.Call(
            "GET",
            f"/v1/runs/{run_id}/events",
            params={"after_seq": after, "limit": limit},
            headers={"Accept": "application/json"},
        )
        return _core.event_list(self._send(call))

    # Checkpoints, forks and groups (issue 26) ------------------------------------------

    def fork(
        self,
        run_id: str,
        turn: int,
        *,
        restore: str = "both",
        prompt: str | None = None,
        attempts: int = 1,
        model: str | None = None,
        start: bool = True,
        metadata: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> builtins.list[Run]:
        """New runs that start where ``run_id`` stood at the end of ``turn``: its code, its
        conversation or ``both``; ``attempts`` of them in one group (best-of-N)."""
        call = _forks.fork_call(
            run_id,
            turn,
            restore=restore,
            prompt=prompt,
            attempts=attempts,
            model=model,
            start=start,
            metadata=metadata,
            idempotency_key=idempotency_key,
        )
        return _core.parse(self._send(call), RunGroup).data

    def group(self, group_id: str) -> builtins.list[Run]:
        """The runs of a group (best-of-N attempts, a fork's attempts), oldest first."""
        page = self.list(group_id=group_id, limit=100)
        return builtins.list(reversed(page.data))

    def checkpoints(self, run_id: str, *, page: int = 1, limit: int = 20) -> CheckpointPage:
        """The run's checkpoints, oldest first."""
        call = _forks.checkpoints_call(run_id, page, limit)
        return _core.parse(self._send(call), CheckpointPage)

    def checkpoint_diff(self, run_id: str, turn: int, *, vs: str = "previous") -> str:
        """A checkpoint's changes as a git diff, against the ``previous`` one or the ``base``."""
        return _forks.diff_text(self._send(_forks.diff_call(run_id, turn, vs)))

    # Waiting ----------------------------------------------------------------------------

    def events(
        self, run_id: str, *, after: int = 0, reconnect: bool = True, max_retries: int = 10
    ) -> Iterator[Event]:
        """The run's events after seq ``after``, live, until its terminal event.

        A cut connection is resumed with ``Last-Event-ID``: no event is missed or repeated.
        Pass the last ``seq`` you saw as ``after`` to resume yourself later.
        """
        cursor, failures = after, 0
        timeout = httpx.Timeout(30.0, read=_core.STREAM_READ_TIMEOUT)
        while True:
            try:
                path = f"/v1/runs/{run_id}/events"
                headers = _core.stream_headers(cursor)
                with connect_sse(
                    self._http, "GET", path, headers=headers, timeout=timeout
                ) as source:
                    if source.response.status_code >= 400:
                        source.response.read()
                        _core.checked(source.response)
                    try:
                        for sse in source.iter_sse():
                            ev = _core.stream_event(sse)
                            if ev is None or ev.seq <= cursor:
                                continue
                            cursor, failures = ev.seq, 0
                            yield ev
                            if ev.is_terminal:
                                return
                    except SSEError as exc:  # not text/event-stream: some other server
                        raise RunyardAPIError(_core.not_runyard(source.response)) from exc
            except httpx.HTTPError as exc:
                failures += 1
                if not reconnect or failures > max_retries:
                    raise _core.connection_error(self.base_url, exc) from exc
                _core.sleep(min(5.0, 0.2 * 2**failures))
                continue
            # Closed without a terminal event: the run may have ended before ``after``.
            if not reconnect or (self.status(run_id)).status in TERMINAL_STATUSES:
                return

    def wait(self, run_id: str, *, timeout: float | None = None, poll: float = 1.0) -> Run:
        """Block until the run has ended (or ``timeout`` seconds passed); answer the run."""
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.2
        while (self.status(run_id)).status not in TERMINAL_STATUSES:
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"{run_id} did not end within {timeout} s")
            _core.sleep(delay)
            delay = min(poll, delay * 2)
        return self.get(run_id)

    def run(self, prompt: str, **fields: Any) -> Run:
        """Create and start a run, wait for its end and answer it."""
        run = self.create(prompt, start=True, **fields)
        return self.wait(run.id)

    # Schedules --------------------------------------------------------------------------

    def create_schedule(
        self,
        *,
        spec: dict[str, Any],
        run: dict[str, Any],
        name: str | None = None,
        thread_id: str | None = None,
        overlap: str | None = None,
        catchup_window_seconds: int | None = None,
        pause_on_failure: bool | None = None,
        max_runs: int | None = None,
        enabled: bool | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Schedule:
        """Create a schedule: ``spec`` (``{"cron": [...]}`` or ``{"interval":
        {"everySeconds"}}``, ``timezone`` …) fires ``run`` (a ``POST /v1/runs`` body)."""
        body = schedule_body({k: v for k, v in locals().items() if k != "self"})
        call = _core.Call("POST", "/v1/schedules", json=body)
        return _core.parse(self._send(call), Schedule)

    def list_schedules(
        self,
        *,
        enabled: bool | None = None,
        thread_id: str | None = None,
        template: str | None = None,
        page: int = 1,
        limit: int = 20,
    ) -> SchedulePage:
        call = list_schedules_call(enabled, thread_id, template, page, limit)
        return _core.parse(self._send(call), SchedulePage)

    def get_schedule(self, schedule_id: str) -> Schedule:
        call = _core.Call("GET", f"/v1/schedules/{schedule_id}")
        return _core.parse(self._send(call), Schedule)

    def update_schedule(self, schedule_id: str, **fields: Any) -> Schedule:
        """Change the fields given (snake_case names, as ``create_schedule`` takes)."""
        call = _core.Call("PATCH", f"/v1/schedules/{schedule_id}", json=schedule_body(fields))
        return _core.parse(self._send(call), Schedule)

    def delete_schedule(self, schedule_id: str) -> None:
        """Delete the schedule; its runs in flight go on."""
        _core.checked(self._send(_core.Call("DELETE", f"/v1/schedules/{schedule_id}")))

    def pause_schedule(self, schedule_id: str, note: str | None = None) -> Schedule:
        path = f"/v1/schedules/{schedule_id}/pause"
        return _core.parse(self._send(_core.Call("POST", path, json=note_body(note))), Schedule)

    def unpause_schedule(self, schedule_id: str, note: str | None = None) -> Schedule:
        path = f"/v1/schedules/{schedule_id}/unpause"
        return _core.parse(self._send(_core.Call("POST", path, json=note_body(note))), Schedule)

    def trigger_schedule(self, schedule_id: str) -> ScheduleTriggered:
        """Fire the schedule now; answers the run it made (a skipped fire raises)."""
        call = _core.Call("POST", f"/v1/schedules/{schedule_id}/trigger")
        return _core.parse(self._send(call), ScheduleTriggered)

    def backfill_schedule(self, schedule_id: str, start_at: str, end_at: str) -> ScheduleBackfilled:
        """Fire the schedule for each time it matches in [start_at, end_at] (at most 100)."""
        body = {"startAt": start_at, "endAt": end_at}
        call = _core.Call("POST", f"/v1/schedules/{schedule_id}/backfill", json=body)
        return _core.parse(self._send(call), ScheduleBackfilled)


__all__ = ["Runyard", "RunyardAPIError"]
