"""The runner's code as a sandbox sees it: its two source files and their bytecode.

Inside bubblewrap ``runner.py`` and ``runner_procs.py`` are bound read-only at
``/runyard``, where Python can write no ``__pycache__``: every runner would compile both
from source again (5 ms of CPU per sandbox, a sixth of its start). So the provider has
the sandbox's own Python compile them once, into ``<sandboxes>/.runner/<key>/__pycache__``
on the data dir, and binds that directory read-only at ``/runyard/__pycache__``.

The bytecode is *checked* (PEP 552): Python compares it with a hash of the bound source
at every start, so a stale or foreign ``.pyc`` is never run, only ignored (the source is
then compiled in memory, as without this). ``key`` changes with the sources and the
interpreter, so an upgraded Runyard or Python gets a directory of its own.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
from pathlib import Path

import structlog

log = structlog.get_logger("runyard.sandbox")

RUNNER = Path(__file__).with_name("runner.py")
SOURCES = (RUNNER, RUNNER.with_name("runner_procs.py"))
_TIMEOUT = 30.0
# Run by the sandbox's Python: argv = [out_dir, source, …]; each is compiled as the
# sandbox names it (/runyard/<name>.py), for its own version's cache tag.
_COMPILE = """
import py_compile, sys
out = sys.argv[1]
for src in sys.argv[2:]:
    name = src.rsplit("/", 1)[-1][:-3]
    py_compile.compile(
        src,
        cfile=f"{out}/{name}.{sys.implementation.cache_tag}.pyc",
        dfile=f"/runyard/{name}.py",
        doraise=True,
        invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH,
    )
"""


def source_binds(pycache: Path | None) -> list[str]:
    """bubblewrap's arguments that put the runner at ``/runyard``."""
    argv: list[str] = []
    for src in SOURCES:
        argv += ["--ro-bind", str(src), f"/runyard/{src.name}"]
    if pycache is not None:
        argv += ["--ro-bind", str(pycache), "/runyard/__pycache__"]
    return argv


class RunnerBytecode:
    """The ``__pycache__`` directory to bind, compiled at the first sandbox start."""

    def __init__(self, cache_root: Path, python: str) -> None:
        digest = hashlib.sha256(os.path.realpath(python).encode())
        for src in SOURCES:
            digest.update(src.read_bytes())
        self.python = python
        self.path = cache_root / digest.hexdigest()[:16] / "__pycache__"
        self._lock = asyncio.Lock()
        self._tried = False

    async def directory(self) -> Path | None:
        """The compiled directory, or None if it could not be made (logged once: the
        runner then compiles its source at every start, as it would without this)."""
        if not self._tried:
            async with self._lock:
                if not self._tried and not self.path.is_dir():
                    try:
                        await self._compile()
                    except (OSError, RuntimeError) as exc:
                        log.warning("sandbox.runner_not_precompiled", error=str(exc)[:500])
                self._tried = True
        return self.path if self.path.is_dir() else None

    async def _compile(self) -> None:
        part = self.path.with_name(f"__pycache__.{os.getpid()}.part")
        shutil.rmtree(part, ignore_errors=True)
        part.mkdir(parents=True)
        try:
            proc = await asyncio.create_subprocess_exec(
                self.python, "-I", "-S", "-c", _COMPILE, str(part), *map(str, SOURCES),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                env={"PATH": "/usr/bin:/bin"},
            )  # fmt: skip
            try:
                async with asyncio.timeout(_TIMEOUT):
                    _, err = await proc.communicate()
            except TimeoutError:
                proc.kill()
                raise RuntimeError("compiling the runner timed out") from None
            if proc.returncode != 0:
                raise RuntimeError(err.decode(errors="replace")[-500:])
            part.chmod(0o755)  # the data dir is the worker's alone (umask 077)
            for pyc in part.iterdir():
                pyc.chmod(0o644)
            try:
                part.rename(self.path)
            except OSError:  # another worker of this data dir was first: keep its copy
                if not self.path.is_dir():
                    raise
        finally:
            shutil.rmtree(part, ignore_errors=True)
