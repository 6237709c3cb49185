"""Progress lines: the engine logs, the front door chooses where the lines go."""

import logging

import pytest

from sweep import log

engine = logging.getLogger("sweep.engine.tuner")  # a module's logger, as the engine uses


def test_lines_go_to_the_given_function_only_while_the_block_runs(caplog):
    lines = []
    caplog.set_level(logging.INFO)
    with log.lines_to(lines.append):
        engine.info("trial 0 started")
        engine.warning("chief: refused a call")
    engine.info("after the block")
    assert lines == ["trial 0 started", "chief: refused a call"]
    # only to it: not also to the root logger (no line twice), and the logger is as it was
    assert [r.getMessage() for r in caplog.records] == ["after the block"]
    assert log.logger.propagate and not log.logger.handlers


def test_without_a_function_lines_follow_loggings_own_configuration(caplog):
    with caplog.at_level(logging.INFO), log.lines_to(None):
        engine.info("trial 0 started")
    assert [r.getMessage() for r in caplog.records] == ["trial 0 started"]


def test_what_the_function_raises_reaches_the_code_that_logged():
    def interrupted(line):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt), log.lines_to(interrupted):
        engine.info("trial 0 started")
    assert not log.logger.handlers


def test_after_the_block_every_modules_level_is_as_it_was():
    root = logging.getLogger()
    before = root.level
    root.setLevel(logging.WARNING)
    try:
        with log.lines_to(lambda line: None):
            assert engine.isEnabledFor(logging.INFO)  # logging caches this answer
        assert not engine.isEnabledFor(logging.INFO)
    finally:
        root.setLevel(before)
