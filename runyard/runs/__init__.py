"""Run creation as a service, without HTTP: ``resolve`` a request into a ``RunSpec``,
``create`` the run from it (with a ``Seed``: a thread's conversation …). Errors are typed
``RunyardError``s (runyard/errors.py); the API maps them to problem documents."""

from runyard.runs.service import Created, Engine, ForkSeed, RunService, Seed, ThreadSeed
from runyard.runs.spec import Guardrails, RunRequest, RunSpec, SandboxSpec, resolve

__all__ = [
    "Created",
    "Engine",
    "ForkSeed",
    "Guardrails",
    "RunRequest",
    "RunService",
    "RunSpec",
    "SandboxSpec",
    "Seed",
    "ThreadSeed",
    "resolve",
]
