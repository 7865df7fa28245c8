"""The tools that produce outputs: ``create_pull_request``, ``create_issue``,
``save_artifact``, and the push forwarding that follows a ``bash`` command.

They run against the ``Sandbox`` protocol and the run's ``ToolContext``; what they record
(outputs, artifact rows) is returned in the ``ToolOutput`` and written by the activity
with the tool result.
"""

from __future__ import annotations

import shlex
from dataclasses import replace
from typing import Any

from pydantic import Field, field_validator
from pydantic.json_schema import SkipJsonSchema

from runyard.artifacts.save import store_artifact
from runyard.git.clone import valid_branch
from runyard.git.provider import ProviderError
from runyard.git.relay import describe, log_pushes
from runyard.sandbox.base import Sandbox
from runyard.sandbox.capped import read_capped
from runyard.tools.base import Call, Tool, ToolArgs, ToolOutput, not_null, unlisted
from runyard.tools.context import ToolContext

_PUSH_HINT = (
    "To publish your work: commit it, then run `git push origin <branch>` in bash "
    "(origin needs no credentials; Runyard forwards the branch to the real repository), "
    "or call create_pull_request, which commits and pushes for you."
)


def might_push(command: str) -> bool:
    """Whether a ``bash`` command may have pushed (then its branches are forwarded)."""
    return "push" in command


async def after_bash(
    sandbox: Sandbox, ctx: ToolContext, args: dict[str, Any], out: ToolOutput
) -> ToolOutput:
    """Forward what a ``bash`` command pushed; say so in its result."""
    if not might_push(str(args.get("command", ""))):
        return out
    pushes = await ctx.relay(sandbox).forward()
    if not pushes:
        return out
    log_pushes(pushes, run_id=ctx.run_id, org_id=ctx.org_id)
    outputs = tuple(p.output for p in pushes if p.output is not None)
    return replace(out, text=f"{out.text}\n{describe(pushes)}", outputs=out.outputs + outputs)


def _context(call: Call) -> ToolContext:
    assert call.ctx is not None  # run_tool gives every output tool the run's context
    return call.ctx


class ArtifactArgs(ToolArgs):
    path: str
    name: str | SkipJsonSchema[None] = Field(
        default=None, description="Download name (default: the file's)."
    )

    _name_not_null = field_validator("name", mode="before")(not_null)


async def _save_artifact(sandbox: Sandbox, args: ArtifactArgs, call: Call) -> ToolOutput:
    ctx = _context(call)
    data = await read_capped(sandbox, args.path, ctx.settings.artifact_max_bytes)
    assert ctx.store is not None
    art = await store_artifact(
        ctx.store,
        org_id=ctx.org_id,
        run_id=ctx.run_id,
        name=args.path if args.name is None else args.name,
        data=data,
    )
    return ToolOutput(
        f"saved {args.path} as artifact {art.id} ({art.name}, {art.size} bytes)",
        artifacts=(art,),
    )


async def _gate(name: str, ctx: ToolContext) -> ToolOutput | None:
    """Why a call that reaches the git host cannot run now, or None."""
    if ctx.provider is None:
        return ToolOutput(
            f"{name} is not available: this run's repository has no pull request provider "
            "(a repository on the operator's GitHub host and RUNYARD_GITHUB_TOKEN are needed). "
            + ("" if name == "create_issue" else _PUSH_HINT),
            is_error=True,
        )
    if not await ctx.still_active():
        return ToolOutput(f"{name} was not run: the run has ended", is_error=True)
    return None


class IssueArgs(ToolArgs):
    title: str
    body: str = unlisted("")
    labels: list[str] | SkipJsonSchema[None] = None


async def _create_issue(sandbox: Sandbox, args: IssueArgs, call: Call) -> ToolOutput:
    ctx = _context(call)
    refused = await _gate("create_issue", ctx)
    if refused is not None:
        return refused
    assert ctx.provider is not None
    try:
        issue = await ctx.provider.create_issue(
            title=args.title, body=args.body, labels=args.labels or []
        )
    except ProviderError as exc:
        return ToolOutput(str(exc), is_error=True)
    output = {"type": "issue", "number": issue.number, "url": issue.url}
    return ToolOutput(f"opened issue #{issue.number}: {issue.url}", outputs=(output,))


class PullRequestArgs(ToolArgs):
    title: str
    body: str = unlisted("")
    branch: str | SkipJsonSchema[None] = Field(
        default=None, description="Default: runyard/<run id>."
    )
    base: str | SkipJsonSchema[None] = None
    draft: bool | SkipJsonSchema[None] = None

    _branch_not_null = field_validator("branch", mode="before")(not_null)


async def _create_pull_request(sandbox: Sandbox, args: PullRequestArgs, call: Call) -> ToolOutput:
    ctx = _context(call)
    refused = await _gate("create_pull_request", ctx)
    if refused is not None:
        return refused
    try:
        return await _pull_request(sandbox, args, ctx)
    except ProviderError as exc:
        return ToolOutput(str(exc), is_error=True)


async def _pull_request(sandbox: Sandbox, args: PullRequestArgs, ctx: ToolContext) -> ToolOutput:
    assert ctx.provider is not None
    branch = f"runyard/{ctx.run_id}" if args.branch is None else args.branch
    if not args.title.strip():
        raise ValueError("'title' must not be empty")
    if not valid_branch(branch):
        raise ValueError(f"'{branch}' is not a valid branch name")
    base = args.base or await ctx.provider.default_branch()
    refspec = shlex.quote(f"HEAD:refs/heads/{branch}")
    res = await sandbox.exec(
        "git add -A && { git diff --cached --quiet || git commit -q -m "
        f"{shlex.quote(args.title)}; }} && git push -q origin {refspec} 2>&1",
        timeout=ctx.settings.git_timeout_seconds,
    )
    pushes = await ctx.relay(sandbox).forward()
    outputs = tuple(p.output for p in pushes if p.output is not None)
    if res.exit_code != 0:
        text = f"pushing HEAD to {branch} failed:\n{res.stdout[-1500:]}\n{describe(pushes)}"
        return ToolOutput(text.strip(), is_error=True, outputs=outputs)
    mine = next((p for p in pushes if p.branch == branch), None)
    if mine is not None and not mine.forwarded:
        return ToolOutput(f"{describe(pushes)}\n{res.stdout[-1500:]}", True, outputs)
    if mine is None and branch not in ctx.known:
        return ToolOutput(f"pushing HEAD to {branch} failed:\n{res.stdout[-1500:]}", True, outputs)
    if not await ctx.still_active():
        text = f"{describe(pushes)}\nno pull request opened: the run has ended"
        return ToolOutput(text.strip(), is_error=True, outputs=outputs)
    pr = await ctx.provider.create_pull_request(
        title=args.title, body=args.body, head=branch, base=base, draft=bool(args.draft)
    )
    opened = f"opened pull request #{pr.number} ({branch} into {base}): {pr.url}"
    output = {"type": "pr", "number": pr.number, "url": pr.url, "branch": branch}
    return ToolOutput(f"{describe(pushes)}\n{opened}".strip(), outputs=(*outputs, output))


CREATE_PULL_REQUEST = Tool(
    "create_pull_request",
    "Open a pull request with your changes. Commits any uncommitted "
    "changes (message = title), pushes HEAD to `branch` and opens a pull request into "
    "`base` (default: the repository's default branch). " + _PUSH_HINT,
    PullRequestArgs,
    "output",
    _create_pull_request,
)
CREATE_ISSUE = Tool(
    "create_issue",
    "Open an issue in the repository, e.g. for a problem you found but should not fix now.",
    IssueArgs,
    "output",
    _create_issue,
)
SAVE_ARTIFACT = Tool(
    "save_artifact",
    "Save a file of the workspace (a report, a build, a screenshot) as "
    "an artifact of the run that the user can download.",
    ArtifactArgs,
    "output",
    _save_artifact,
)
