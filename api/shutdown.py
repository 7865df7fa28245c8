"""Event streams end by themselves when the server is asked to stop.

An event stream never ends on its own while its run goes on, so a server's graceful
shutdown (uvicorn's, on SIGTERM or SIGINT) waited ``timeout_graceful_shutdown`` for it,
then cancelled its task, and uvicorn printed the cancellation as a 57-line "Exception in
ASGI application" traceback. Now the signal that starts the shutdown also tells the
notifier, every stream returns at once (its client resumes with ``Last-Event-ID``, on
another replica or after the restart), and the server stops without cancelling anything.

The handler is chained in front of whatever handles the signal (uvicorn's ``handle_exit``,
in any of its modes, or Python's default), for the lifetime of the app, and only in the
main thread, where signals are delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def on_stop_signal(callback: Callable[[], None]) -> Iterator[None]:
    """Call ``callback`` in the running loop when SIGINT or SIGTERM arrives, then hand the
    signal on to the handler that was there."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    loop = asyncio.get_running_loop()
    previous: dict[int, Any] = {sig: signal.getsignal(sig) for sig in _SIGNALS}

    def handler(sig: int, frame: FrameType | None) -> None:
        loop.call_soon_threadsafe(callback)
        before = previous[sig]
        if callable(before):
            before(sig, frame)
        elif before == signal.SIG_DFL:  # what the signal would have done: end the process
            signal.signal(sig, signal.SIG_DFL)
            signal.raise_signal(sig)

    for sig in _SIGNALS:
        signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig in _SIGNALS:
            if signal.getsignal(sig) is handler:
                signal.signal(sig, previous[sig])
