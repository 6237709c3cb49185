"""Ctrl-C and SIGTERM: a search stops where stopping is safe, and always stops.

Python runs a signal handler at whatever bytecode the main thread executes next. During training
that is often code that C++ called back (a garbage-collection hook, a TensorFlow or JAX
callback): an exception raised there is printed and dropped (a SIGTERM once let a search run on
to its end with status 0), or aborts the process (status -6). So inside `deferred()` the handler
only records the request, and `check()`, called at safe points (before each training and
validation batch, between trials), raises it. Outside, it raises at once, as Python's own does.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager

SIGNALS = (signal.SIGINT, signal.SIGTERM)
_requested = False
_deferring = 0


def handle(signum, frame) -> None:
    """The first signal asks the search to stop; a second one stops the process at once (every
    file is written atomically, so nothing is corrupted)."""
    global _requested
    _requested = True
    for each in SIGNALS:
        signal.signal(each, signal.SIG_DFL)
    if not _deferring:
        raise KeyboardInterrupt


def check() -> None:
    """A safe point: stop here if a signal asked to."""
    if _requested:
        raise KeyboardInterrupt


@contextmanager
def deferred() -> Iterator[None]:
    """Within, a signal is raised by the next `check()` rather than where it lands."""
    global _deferring
    _deferring += 1
    try:
        yield
    finally:
        _deferring -= 1


@contextmanager
def installed() -> Iterator[None]:
    """`handle` for SIGINT and SIGTERM while the block runs. The caller's handlers come back
    afterwards unless a signal arrived (then a second one must still stop at once): the command
    line may be called from a program or a test."""
    global _requested
    _requested = False
    previous = {each: signal.signal(each, handle) for each in SIGNALS}
    try:
        yield
    finally:
        if not _requested:
            for each, handler in previous.items():
                signal.signal(each, handler)
        _requested = False
