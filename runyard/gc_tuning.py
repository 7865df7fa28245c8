"""The garbage collector after start-up: what was made until then is kept out of its scans.

A full (oldest-generation) collection scans every tracked object. After start-up an
API process holds some hundreds of thousands of long-lived ones (FastAPI's routes and
models, SQLAlchemy's mappers, Temporal's client): a full collection took 30-50 ms, a
stall every request waiting on the loop paid (bench.api's get-run p99 50 ms against
a p50 of 17). ``gc.freeze()`` moves them to a permanent generation that collections
skip; what is made afterwards is collected as before. Once per process: an API app
started again in the same process (the tests') does not pay the collection again.
"""

from __future__ import annotations

import gc

_frozen = False


def freeze_heap() -> None:
    """Collect once, then keep everything still alive out of later collections."""
    global _frozen
    if _frozen:
        return
    _frozen = True
    gc.collect()
    gc.freeze()
