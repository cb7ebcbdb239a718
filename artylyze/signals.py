"""Stop signals as exceptions, and the short critical sections that hold them back.

The CLI runs every command under :func:`stop_signals`: SIGINT, SIGTERM and SIGHUP raise
:class:`~artylyze.errors.Interrupted` in the main thread, so the code that is running
commits what is done, removes its temp files and releases its locks on the way out. A
second signal is not caught: it stops the process at once (still safe, every output is
written crash-safely).

:func:`critical` marks a few milliseconds that must not be cut in half by an exception,
such as swapping a new output in and removing the old one: a signal that arrives then is
held and raised when the section ends. Signal handlers are process-wide, so the held
signals are too (module state, touched only from the main thread).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from artylyze.errors import Interrupted

STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP")
                     if hasattr(signal, n))
_held: list[int] | None = None  # signals that arrived inside a critical section


def _on_signal(signum: int, _frame: Any) -> None:
    if _held is not None:
        _held.append(signum)
        return
    for sig in STOP_SIGNALS:  # a second signal is not caught: it stops at once
        if signal.getsignal(sig) is _on_signal:
            signal.signal(sig, signal.SIG_DFL)
    raise Interrupted(signum)


@contextmanager
def stop_signals() -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP raise :class:`Interrupted` while the block runs (main
    thread only; a signal that was ignored, as under ``nohup``, stays ignored)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}
    for sig in STOP_SIGNALS:
        current = signal.getsignal(sig)
        if current not in (signal.SIG_IGN, _on_signal):
            previous[sig] = current
            signal.signal(sig, _on_signal)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextmanager
def critical() -> Iterator[None]:
    """Hold stop signals until the block ends, then raise the first one (if the block
    itself did not fail)."""
    global _held
    if _held is not None or threading.current_thread() is not threading.main_thread():
        yield
        return
    _held = []
    try:
        yield
    finally:
        held, _held = _held, None
    if held:
        _on_signal(held[0], None)
