"""Caps on the event streams (SSE) an API process holds open: per organization, per API
key and per connection token.

A stream past a cap is refused before it reads anything: 429 ``RATE_LIMIT_EXCEEDED``
with ``Retry-After``. A connection token's streams count for its run's tokens together
(as its rate limit does: minting another token opens no more), for the key that asked
for the token, and for the organization; so spreading streams over tokens evades none of
the caps.

The counts are this process's, not the deployment's, unlike the request rate limit
(``api/ratelimit.py``), which the store counts for every replica. What they protect is
per process: a stream lives its whole life in one API process, holding that process's
socket, memory, event-loop time and store reads (the burst that made ``/healthz`` fail
was one process's). Counted here they are exact, cost no store write per stream, and
cannot leak: a replica that dies takes its counts with it, where counts in the store
would need leases renewed by every replica and expired after a crash. So with N API
replicas an organization may hold up to N times each cap in all, and at most each cap
in any one replica; docs/operations.md says so.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import AsyncIterable

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from api.auth import Principal
from api.errors import ProblemError
from runyard.domain import ErrorCode


class StreamLease:
    """One open stream's place in its buckets; released once, whatever happens."""

    def __init__(self, caps: StreamCaps, buckets: list[tuple[str, str]]) -> None:
        self._caps, self._buckets = caps, buckets

    def release(self) -> None:
        buckets, self._buckets = self._buckets, []
        self._caps._release(buckets)


class StreamCaps:
    def __init__(self, *, per_token: int, per_key: int, per_org: int, retry_after: float) -> None:
        self.caps = {"token": per_token, "key": per_key, "org": per_org}
        # A stream of a run that ended closes within a ping interval: try again then.
        self.retry_after = max(1, math.ceil(retry_after))
        self._open: Counter[tuple[str, str]] = Counter()

    def acquire(self, principal: Principal) -> StreamLease:
        """A place for one more stream of ``principal``, or 429 if a cap is reached."""
        buckets = [("org", principal.org_id), ("key", principal.key_id)]
        if principal.run_id is not None:  # a connection token: its run's tokens together
            buckets.append(("token", principal.run_id))
        for kind, ident in buckets:
            if self._open[(kind, ident)] >= self.caps[kind]:
                raise self._refused(kind)
        for bucket in buckets:  # no await since the check: nothing else ran in between
            self._open[bucket] += 1
        return StreamLease(self, buckets)

    def _release(self, buckets: list[tuple[str, str]]) -> None:
        for bucket in buckets:
            self._open[bucket] -= 1
            if self._open[bucket] <= 0:
                del self._open[bucket]

    def _refused(self, kind: str) -> ProblemError:
        whose = {
            "org": "this organization",
            "key": "this API key (with the connection tokens it asked for)",
            "token": "this run's connection tokens",
        }[kind]
        return ProblemError(
            429,
            ErrorCode.RATE_LIMIT_EXCEEDED,
            f"{whose} already has {self.caps[kind]} event streams open on this API process, "
            f"the most allowed; close one, or retry in {self.retry_after} s",
            headers={"Retry-After": str(self.retry_after)},
        )


class LeasedStream(StreamingResponse):
    """A streaming answer that gives its lease back when it ends, however it ends: the
    body finished, the client went away, or sending failed."""

    def __init__(
        self,
        lease: StreamLease,
        content: AsyncIterable[bytes],
        *,
        media_type: str,
        headers: dict[str, str],
    ) -> None:
        super().__init__(content, media_type=media_type, headers=headers)
        self.lease = lease

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.lease.release()
