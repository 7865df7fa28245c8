"""The run's conversation, kept in the store (workflow history only carries ids)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from runyard.db.models import Run, RunMessage


def assistant_key(turn: int) -> str:
    return f"turn{turn}.assistant"


def result_key(turn: int, call_id: str) -> str:
    return f"turn{turn}.result.{call_id}"


async def get_message(session: AsyncSession, run_id: str, key: str) -> RunMessage | None:
    return (
        (
            await session.execute(
                select(RunMessage).where(
                    col(RunMessage.run_id) == run_id, col(RunMessage.key) == key
                )
            )
        )
        .scalars()
        .first()
    )


async def conversation(session: AsyncSession, run: Run) -> list[dict[str, Any]]:
    """The Anthropic ``messages`` for the run's next turn: prompt, turns, tool results.

    Tool results of one turn are stored one row per call and sent as one user message.
    """
    rows = (
        await session.execute(
            select(RunMessage).where(col(RunMessage.run_id) == run.id).order_by(col(RunMessage.id))
        )
    ).scalars()
    messages: list[dict[str, Any]] = [{"role": "user", "content": run.prompt}]
    for row in rows:
        if row.role == "tool_result":
            last = messages[-1]
            if last["role"] == "user" and isinstance(last["content"], list):
                last["content"].extend(row.content)
                continue
            messages.append({"role": "user", "content": list(row.content)})
        else:
            messages.append({"role": row.role, "content": list(row.content)})
    return messages


async def final_text(session: AsyncSession, run_id: str) -> str:
    row = (
        (
            await session.execute(
                select(RunMessage)
                .where(col(RunMessage.run_id) == run_id, col(RunMessage.role) == "assistant")
                .order_by(col(RunMessage.id).desc())
                .limit(1)
            )
        )
        .scalars()
        .first()
    )
    if row is None:
        return ""
    return "".join(b.get("text", "") for b in row.content if b.get("type") == "text")
