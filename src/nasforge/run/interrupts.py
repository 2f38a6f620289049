"""Keep Ctrl-C and SIGTERM out of the few steps that must happen together (a commit and its bookkeeping)."""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Any, Iterator

__all__ = ["deferred_interrupts"]

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def deferred_interrupts() -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM are held back and delivered again when it ends.

    A KeyboardInterrupt raised between a database COMMIT and the bookkeeping that follows it would leave the
    store believing committed writes were still queued (and write them twice), or a transaction open. Signals run
    their Python handlers in the main thread only, so elsewhere (and where handlers cannot be changed) the block
    runs as it is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in _SIGNALS}
    caught: list[int] = []

    def hold(signum: int, frame: Any) -> None:
        caught.append(signum)

    try:
        for s in _SIGNALS:
            signal.signal(s, hold)
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)
        for signum in dict.fromkeys(caught):  # the handlers (or the default action) see it as if it came now
            signal.raise_signal(signum)
