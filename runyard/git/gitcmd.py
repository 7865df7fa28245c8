"""Running git on the worker or the API host, where a repository's own files must not
steer it: no system or global config, no prompts, only the allowed transports, no hooks,
a deadline and bounded output. Credentials travel in the environment of one call
(``GIT_CONFIG_COUNT``), never in a file or on the command line."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_PASS_THROUGH = (
    "PATH",
    "HOME",  # ssh keys and known_hosts of the operator
    "SSH_AUTH_SOCK",
    "GIT_SSL_CAINFO",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "HTTPS_PROXY",
    "https_proxy",
    "NO_PROXY",
    "no_proxy",
)
_OUTPUT_CAP = 64 * 1024

# Config that no repository may override for a Runyard-run git command.
_HARDENING = {
    "core.hooksPath": "/dev/null",
    "core.fsmonitor": "false",
    "core.sshCommand": "ssh -o BatchMode=yes -o ConnectTimeout=15",
    "credential.helper": "",
    "http.followRedirects": "false",
    "protocol.ext.allow": "never",
    "submodule.recurse": "false",
    "gc.auto": "0",
}


class GitError(RuntimeError):
    """A git command failed; ``str()`` is a message fit for a tool result or a run error."""


@dataclass(frozen=True)
class GitResult:
    code: int
    stdout: str
    stderr: str


def auth_header(token: str) -> str:
    """The http header that authenticates git over https (GitHub, GitLab, Gitea …)."""
    basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
    return f"Authorization: Basic {basic}"


def git_env(protocols: str, config: dict[str, str] | None = None) -> dict[str, str]:
    """A clean environment: operator essentials only, plus ``config`` as env-scoped config."""
    env = {k: v for k in _PASS_THROUGH if (v := os.environ.get(k)) is not None}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    env |= {
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ASKPASS": "/bin/false",
        "SSH_ASKPASS": "/bin/false",
        "GIT_ALLOW_PROTOCOL": protocols,
        "LC_ALL": "C",
    }
    merged = _HARDENING | (config or {})
    env["GIT_SSH_COMMAND"] = merged["core.sshCommand"]  # the variable wins over the config
    items = list(merged.items())
    env["GIT_CONFIG_COUNT"] = str(len(items))
    for i, (key, value) in enumerate(items):
        env[f"GIT_CONFIG_KEY_{i}"] = key
        env[f"GIT_CONFIG_VALUE_{i}"] = value
    return env


async def _drain(stream: asyncio.StreamReader | None, cap: int) -> bytes:
    if stream is None:
        return b""
    kept = bytearray()
    while chunk := await stream.read(65536):
        if len(kept) < cap:
            kept += chunk[: cap - len(kept)]
    return bytes(kept)


async def run_git(
    *args: str,
    protocols: str = "https:ssh",
    config: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 120,
    check: bool = True,
    output_cap: int = _OUTPUT_CAP,
    umask: int = -1,
) -> GitResult:
    """``git *args`` with the hardened environment; GitError on failure when ``check``.
    ``umask``: the file mode mask of git (and of the receive-pack it starts for a local
    push), when it must not be the process's own private one. Set in the child before exec
    (``preexec_fn``): uvloop, the API's loop, takes no ``umask`` argument."""
    extra: dict[str, Any] = {}
    if umask != -1:
        extra["preexec_fn"] = functools.partial(os.umask, umask)
    proc = await asyncio.create_subprocess_exec(
        "git",
        *args,
        cwd=str(cwd) if cwd else None,
        env=git_env(protocols, config),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
        **extra,
    )
    try:
        out, err = await asyncio.wait_for(
            asyncio.gather(_drain(proc.stdout, output_cap), _drain(proc.stderr, output_cap)),
            timeout,
        )
        code = await asyncio.wait_for(proc.wait(), 5)
    except (TimeoutError, asyncio.CancelledError) as exc:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 9)
        await proc.wait()
        if isinstance(exc, asyncio.CancelledError):
            raise
        raise GitError(f"git {args[0]} timed out after {timeout:.0f} s") from exc
    res = GitResult(code, out.decode(errors="replace"), err.decode(errors="replace"))
    if check and code != 0:
        raise GitError(f"git {args[0]} failed: {res.stderr.strip()[-1500:] or res.stdout[-500:]}")
    return res
