"""Progress lines through Python's `logging`: the engine logs them to the "sweep" logger, and
the front doors choose where they go. The command line prints them, `Search.run(say=...)` hands
each to a function, and a notebook or a service may configure the "sweep" logger instead
(`say=None`)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator

logger = logging.getLogger("sweep")
Say = Callable[[str], None]  # where a front door sends each line


class _Forward(logging.Handler):
    """Hands each line to a function; what the function raises reaches the code that logged."""

    def __init__(self, say: Say):
        super().__init__(logging.INFO)
        self.say = say

    def emit(self, record: logging.LogRecord) -> None:
        self.say(record.getMessage())


@contextlib.contextmanager
def lines_to(say: Say | None) -> Iterator[None]:
    """Hand every progress line to `say` while the block runs, and only to it; with None,
    leave the lines to logging's own configuration."""
    if say is None:
        yield
        return
    handler = _Forward(say)
    before = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(before[0])  # setLevel, not the attribute: it clears loggers' caches
        logger.propagate = before[1]
