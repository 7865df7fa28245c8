"""One exception hierarchy for what can go wrong in a run, drawn once, here.

::

    RunyardError                         code                           Temporal retries
    ├── RunNotFound                      RUN_NOT_FOUND                  no
    ├── RunNotActive                     RUN_NOT_ACTIVE                 no  (it ended meanwhile)
    ├── RunAlreadyStarted                RUN_ALREADY_STARTED            no
    ├── ConcurrentRunLimitExceeded       CONCURRENT_RUN_LIMIT_EXCEEDED  no
    ├── InsufficientCredits              USAGE_INSUFFICIENT_CREDITS     no
    ├── TemplateNotFound                 RUN_TEMPLATE_NOT_FOUND         no
    ├── ProviderKeyMissing               RUN_API_KEY_REQUIRED           no
    ├── NotWaitingForInput               RUN_NOT_WAITING_FOR_INPUT      no
    ├── OrchestratorUnavailable          RUN_ORCHESTRATOR_ERROR         (the API's: Temporal
    │                                                                   could not be reached)
    ├── ModelError                       MODEL_ERROR                    when the provider's
    │                                                                   answer says so (429,
    │                                                                   5xx, a cut stream)
    ├── SandboxError                     SANDBOX_UNAVAILABLE            yes (bounded by the
    │   │                                                               activity's policy)
    │   ├── SandboxUnavailable           SANDBOX_UNAVAILABLE            no  (this worker cannot
    │   │                                                               run sandboxes at all)
    │   ├── RepositoryNotFound           REPOSITORY_NOT_FOUND           no  (the clone found none)
    │   ├── RepositoryRefused            CALLBACK_URL_FORBIDDEN         no  (a forbidden address)
    │   ├── SandboxSetupFailed           SANDBOX_SETUP_FAILED           no
    │   └── ResourceLimitExceeded        RUN_RESOURCE_LIMIT_EXCEEDED    no
    ├── InternalError                    INTERNAL_ERROR                 no
    ├── InvalidInput                     VALIDATION_FAILED              (a refused create:
    │   └── AddressForbidden             CALLBACK_URL_FORBIDDEN          ``runyard.runs``)
    ├── AgentNotFound                    AGENT_NOT_FOUND
    ├── ThreadNotFound                   THREAD_NOT_FOUND
    ├── RepositoryMissing                REPOSITORY_NOT_FOUND
    ├── Conflict                         CONFLICT
    ├── NotServed                        NOT_IMPLEMENTED                (a LangGraph route or
    │                                                                   field not served: 501)
    ├── MessageNotFound                  MESSAGE_NOT_FOUND
    ├── MessageAlreadyDelivered          MESSAGE_ALREADY_DELIVERED
    ├── RunTurnMismatch                  RUN_TURN_MISMATCH
    ├── ScheduleSpecInvalid              SCHEDULE_SPEC_INVALID
    ├── ScheduleNotFound                 SCHEDULE_NOT_FOUND
    ├── ScheduleLimitExceeded            SCHEDULE_LIMIT_EXCEEDED
    └── CheckpointExpired                CHECKPOINT_EXPIRED
    ├── ApprovalNotFound                 APPROVAL_NOT_FOUND
    ├── ApprovalAlreadyDecided           APPROVAL_ALREADY_DECIDED
    └── ApprovalNotPending               APPROVAL_NOT_PENDING

Activities raise these; one boundary (``activities/_support.py``, ``typed_failures``)
turns each into the ``ApplicationError`` Temporal sees, ``type`` = its code and
``non_retryable`` from the class (or, for ``ModelError``, the instance). The workflow
reads the code back and ends the run ``failed``/``error`` with it as ``error.code``.
The API has its own errors, ``api.errors.ProblemError``: a problem document per code.

A tool's failure (a command that exits 1, a file that does not exist) is none of these:
it is a tool result the model reads, and the run goes on.
"""

from __future__ import annotations

from typing import ClassVar

from runyard.domain import ErrorCode


class RunyardError(Exception):
    code: ClassVar[ErrorCode] = ErrorCode.INTERNAL_ERROR
    retryable: ClassVar[bool] = False

    @property
    def field_errors(self) -> list[dict[str, str]]:
        """The request fields at fault (a problem document's ``errors``), if any."""
        return []

    @property
    def should_retry(self) -> bool:
        return self.retryable


class RunNotFound(RunyardError):
    code = ErrorCode.RUN_NOT_FOUND


class RunNotActive(RunyardError):
    code = ErrorCode.RUN_NOT_ACTIVE


class RunAlreadyStarted(RunyardError):
    code = ErrorCode.RUN_ALREADY_STARTED


class ConcurrentRunLimitExceeded(RunyardError):
    code = ErrorCode.CONCURRENT_RUN_LIMIT_EXCEEDED


class InsufficientCredits(RunyardError):
    code = ErrorCode.USAGE_INSUFFICIENT_CREDITS


class TemplateNotFound(RunyardError):
    code = ErrorCode.RUN_TEMPLATE_NOT_FOUND


class ProviderKeyMissing(RunyardError):
    code = ErrorCode.RUN_API_KEY_REQUIRED


class NotWaitingForInput(RunyardError):
    code = ErrorCode.RUN_NOT_WAITING_FOR_INPUT


class OrchestratorUnavailable(RunyardError):
    code = ErrorCode.RUN_ORCHESTRATOR_ERROR


class ModelError(RunyardError):
    """The model call failed; ``retryable`` comes from the provider's answer."""

    code = ErrorCode.MODEL_ERROR

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.transient = retryable

    @property
    def should_retry(self) -> bool:
        return self.transient


class SandboxError(RunyardError):
    """A sandbox could not be created or reached. ``permanent``: retrying cannot help."""

    code = ErrorCode.SANDBOX_UNAVAILABLE
    permanent: ClassVar[bool] = False

    @property
    def should_retry(self) -> bool:
        return not self.permanent


class SandboxUnavailable(SandboxError):
    """This worker cannot run sandboxes at all (isolation required but missing …)."""

    permanent = True


class RepositoryNotFound(SandboxError):
    code = ErrorCode.REPOSITORY_NOT_FOUND
    permanent = True


class RepositoryRefused(SandboxError):
    code = ErrorCode.CALLBACK_URL_FORBIDDEN
    permanent = True


class SandboxSetupFailed(SandboxError):
    code = ErrorCode.SANDBOX_SETUP_FAILED
    permanent = True


class ResourceLimitExceeded(SandboxError):
    """The sandbox went over its size's memory or disk."""

    code = ErrorCode.RUN_RESOURCE_LIMIT_EXCEEDED
    permanent = True


class InternalError(RunyardError):
    code = ErrorCode.INTERNAL_ERROR


class InvalidInput(RunyardError):
    """A field of a request is refused: ``field: message``, and the field's error."""

    code = ErrorCode.VALIDATION_FAILED

    def __init__(self, message: str, *, field: str | None = None, kind: str = "invalid") -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self._errors = [{"field": field, "message": message, "code": kind}] if field else []

    @property
    def field_errors(self) -> list[dict[str, str]]:
        return self._errors


class AddressForbidden(InvalidInput):
    """A URL (callbackUrl, a webhook, a repo's host) names an address Runyard may not call."""

    code = ErrorCode.CALLBACK_URL_FORBIDDEN


class AgentNotFound(RunyardError):
    code = ErrorCode.AGENT_NOT_FOUND


class ThreadNotFound(RunyardError):
    code = ErrorCode.THREAD_NOT_FOUND


class RepositoryMissing(RunyardError):
    """The create-time check found no such repository (the worker's clone raises
    ``RepositoryNotFound``, a sandbox error)."""

    code = ErrorCode.REPOSITORY_NOT_FOUND


class Conflict(RunyardError):
    code = ErrorCode.CONFLICT


class NotServed(RunyardError):
    """A LangGraph route, field or value that Runyard does not serve (``/lg``): 501."""

    code = ErrorCode.NOT_IMPLEMENTED


class MessageNotFound(RunyardError):
    code = ErrorCode.MESSAGE_NOT_FOUND


class MessageAlreadyDelivered(RunyardError):
    code = ErrorCode.MESSAGE_ALREADY_DELIVERED


class RunTurnMismatch(RunyardError):
    """A message's ``expectedTurn`` is not the run's turn any more."""

    code = ErrorCode.RUN_TURN_MISMATCH


class ScheduleSpecInvalid(InvalidInput):
    """A schedule's spec Temporal could not follow: a bad cron or zone, a short interval."""

    code = ErrorCode.SCHEDULE_SPEC_INVALID


class ScheduleNotFound(RunyardError):
    code = ErrorCode.SCHEDULE_NOT_FOUND


class ScheduleLimitExceeded(RunyardError):
    code = ErrorCode.SCHEDULE_LIMIT_EXCEEDED


class CheckpointExpired(RunyardError):
    """A checkpoint past its retention, or whose bundle was too large to keep (410)."""

    code = ErrorCode.CHECKPOINT_EXPIRED


class ApprovalNotFound(RunyardError):
    code = ErrorCode.APPROVAL_NOT_FOUND


class ApprovalAlreadyDecided(RunyardError):
    code = ErrorCode.APPROVAL_ALREADY_DECIDED


class ApprovalNotPending(RunyardError):
    """The approval expired or was cancelled: no decision can apply any more."""

    code = ErrorCode.APPROVAL_NOT_PENDING


def error_for(code: str, message: str) -> RunyardError:
    """The error of ``code``, as raised again on the far side of Temporal (an update's
    failure reaches the API as its ``ApplicationError`` type and message)."""
    for cls in _all_classes(RunyardError):
        if cls.code == code and cls is not ModelError:
            return cls(message)
    return InternalError(f"{code}: {message}")


def _all_classes(base: type[RunyardError]) -> list[type[RunyardError]]:
    found: list[type[RunyardError]] = []
    for sub in base.__subclasses__():
        found += [sub, *_all_classes(sub)]
    return found
