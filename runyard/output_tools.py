"""The tools that produce outputs: ``create_pull_request``, ``create_issue``,
``save_artifact``, and the push forwarding that follows a ``bash`` command.

They run against the ``Sandbox`` protocol; what they record (outputs, artifact rows) is
returned in the ``ToolOutput`` and written by the activity with the tool result.
"""

from __future__ import annotations

import shlex
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from runyard.artifacts.save import store_artifact
from runyard.artifacts.store import ArtifactStore, artifact_store
from runyard.db.tables import Artifact
from runyard.git.clone import mirror_path, valid_branch
from runyard.git.provider import GitProvider, ProviderError, provider_for
from runyard.git.relay import Relay, describe, log_pushes
from runyard.sandbox.base import Sandbox
from runyard.sandbox.capped import read_capped
from runyard.settings import Settings

if TYPE_CHECKING:
    from runyard.tools import ToolOutput

_PUSH_HINT = (
    "To publish your work: commit it, then run `git push origin <branch>` in bash "
    "(origin needs no credentials; Runyard forwards the branch to the real repository), "
    "or call create_pull_request, which commits and pushes for you."
)

OUTPUT_TOOLS: list[dict[str, Any]] = [
    {
        "name": "create_pull_request",
        "description": "Open a pull request with your changes. Commits any uncommitted "
        "changes (message = title), pushes HEAD to `branch` and opens a pull request into "
        "`base` (default: the repository's default branch). " + _PUSH_HINT,
        "input_schema": {
            "type": "object",
            "properties": {
                "title": {"type": "string"},
                "body": {"type": "string"},
                "branch": {"type": "string", "description": "Default: runyard/<run id>."},
                "base": {"type": "string"},
                "draft": {"type": "boolean"},
            },
            "required": ["title"],
        },
    },
    {
        "name": "create_issue",
        "description": "Open an issue in the repository, e.g. for a problem you found "
        "but should not fix now.",
        "input_schema": {
            "type": "object",
            "properties": {
                "title": {"type": "string"},
                "body": {"type": "string"},
                "labels": {"type": "array", "items": {"type": "string"}},
            },
            "required": ["title"],
        },
    },
    {
        "name": "save_artifact",
        "description": "Save a file of the workspace (a report, a build, a screenshot) as "
        "an artifact of the run that the user can download.",
        "input_schema": {
            "type": "object",
            "properties": {
                "path": {"type": "string"},
                "name": {"type": "string", "description": "Download name (default: the file's)."},
            },
            "required": ["path"],
        },
    },
]
NAMES = frozenset(t["name"] for t in OUTPUT_TOOLS)


@dataclass
class ToolContext:
    """What the output tools need about the run; built by the ``run_tool`` activity."""

    run_id: str
    org_id: str
    repo: str | None
    settings: Settings
    sandbox_id: str
    known: dict[str, str] = field(default_factory=dict)  # branches forwarded: name → sha
    provider: GitProvider | None = None
    store: ArtifactStore | None = None
    # The store's answer, asked right before anything leaves for the outside (a push, a
    # pull request, an issue): is the run still active? Nothing leaves once it has ended.
    active: Callable[[], Awaitable[bool]] | None = None

    @staticmethod
    def build(
        settings: Settings,
        run_id: str,
        org_id: str,
        repo: str | None,
        sandbox_id: str,
        known: dict[str, str],
        active: Callable[[], Awaitable[bool]] | None = None,
    ) -> ToolContext:
        return ToolContext(
            run_id,
            org_id,
            repo,
            settings,
            sandbox_id,
            dict(known),
            provider_for(repo, settings),
            artifact_store(settings),
            active,
        )

    def relay(self, sandbox: Sandbox) -> Relay:
        return Relay(
            sandbox,
            mirror_path(self.settings, self.sandbox_id),
            self.settings,
            self.known,
            self.active,
        )

    async def still_active(self) -> bool:
        return self.active is None or await self.active()


async def after_bash(
    sandbox: Sandbox, ctx: ToolContext, args: dict[str, Any], out: ToolOutput
) -> ToolOutput:
    """Forward what a ``bash`` command pushed; say so in its result."""
    if "push" not in str(args.get("command", "")):
        return out
    pushes = await ctx.relay(sandbox).forward()
    if not pushes:
        return out
    log_pushes(pushes, run_id=ctx.run_id, org_id=ctx.org_id)
    outputs = tuple(p.output for p in pushes if p.output is not None)
    return replace(out, text=f"{out.text}\n{describe(pushes)}", outputs=out.outputs + outputs)


def _str(args: dict[str, Any], name: str, default: str | None = None) -> str:
    value = args.get(name, default)
    if not isinstance(value, str):
        raise ValueError(f"'{name}' must be a string")
    return value


async def run_output_tool(
    sandbox: Sandbox, name: str, args: dict[str, Any], ctx: ToolContext
) -> ToolOutput:
    from runyard.tools import ToolOutput

    if name == "save_artifact":
        path = _str(args, "path")
        data = await read_capped(sandbox, path, ctx.settings.artifact_max_bytes)
        assert ctx.store is not None
        art = await store_artifact(
            ctx.store,
            org_id=ctx.org_id,
            run_id=ctx.run_id,
            name=_str(args, "name", path),
            data=data,
        )
        return ToolOutput(
            f"saved {path} as artifact {art.id} ({art.name}, {art.size} bytes)", artifacts=(art,)
        )
    if ctx.provider is None:
        return ToolOutput(
            f"{name} is not available: this run's repository has no pull request provider "
            "(a repository on the operator's GitHub host and RUNYARD_GITHUB_TOKEN are needed). "
            + ("" if name == "create_issue" else _PUSH_HINT),
            is_error=True,
        )
    if not await ctx.still_active():
        return ToolOutput(f"{name} was not run: the run has ended", is_error=True)
    try:
        if name == "create_issue":
            labels = args.get("labels") or []
            if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
                raise ValueError("'labels' must be a list of strings")
            issue = await ctx.provider.create_issue(
                title=_str(args, "title"), body=_str(args, "body", ""), labels=labels
            )
            output = {"type": "issue", "number": issue.number, "url": issue.url}
            return ToolOutput(f"opened issue #{issue.number}: {issue.url}", outputs=(output,))
        return await _pull_request(sandbox, args, ctx)
    except ProviderError as exc:
        return ToolOutput(str(exc), is_error=True)


async def _pull_request(sandbox: Sandbox, args: dict[str, Any], ctx: ToolContext) -> ToolOutput:
    from runyard.tools import ToolOutput

    assert ctx.provider is not None
    title = _str(args, "title")
    branch = _str(args, "branch", f"runyard/{ctx.run_id}")
    if not title.strip():
        raise ValueError("'title' must not be empty")
    if not valid_branch(branch):
        raise ValueError(f"'{branch}' is not a valid branch name")
    base = args.get("base") or await ctx.provider.default_branch()
    if not isinstance(base, str):
        raise ValueError("'base' must be a string")
    refspec = shlex.quote(f"HEAD:refs/heads/{branch}")
    res = await sandbox.exec(
        "git add -A && { git diff --cached --quiet || git commit -q -m "
        f"{shlex.quote(title)}; }} && git push -q origin {refspec} 2>&1",
        timeout=ctx.settings.git_timeout_seconds,
    )
    pushes = await ctx.relay(sandbox).forward()
    outputs = [p.output for p in pushes if p.output is not None]
    if res.exit_code != 0:
        text = f"pushing HEAD to {branch} failed:\n{res.stdout[-1500:]}\n{describe(pushes)}"
        return ToolOutput(text.strip(), is_error=True, outputs=tuple(outputs))
    mine = next((p for p in pushes if p.branch == branch), None)
    if mine is not None and not mine.forwarded:
        return ToolOutput(
            f"{describe(pushes)}\n{res.stdout[-1500:]}", is_error=True, outputs=tuple(outputs)
        )
    if mine is None and branch not in ctx.known:
        return ToolOutput(
            f"pushing HEAD to {branch} failed:\n{res.stdout[-1500:]}",
            is_error=True,
            outputs=tuple(outputs),
        )
    if not await ctx.still_active():
        return ToolOutput(
            f"{describe(pushes)}\nno pull request opened: the run has ended".strip(),
            is_error=True,
            outputs=tuple(outputs),
        )
    pr = await ctx.provider.create_pull_request(
        title=title,
        body=_str(args, "body", ""),
        head=branch,
        base=base,
        draft=bool(args.get("draft", False)),
    )
    outputs.append({"type": "pr", "number": pr.number, "url": pr.url, "branch": branch})
    opened = f"opened pull request #{pr.number} ({branch} into {base}): {pr.url}"
    return ToolOutput(f"{describe(pushes)}\n{opened}".strip(), outputs=tuple(outputs))


__all__ = ["NAMES", "OUTPUT_TOOLS", "Artifact", "ToolContext", "after_bash", "run_output_tool"]


def needs_context(name: str, args: dict[str, Any]) -> bool:
    """Whether a tool call needs the run's context (a store read): output tools, and a
    ``bash`` command that may push."""
    return name in NAMES or (name == "bash" and "push" in str(args.get("command", "")))
