"""Ctrl-C and SIGTERM in-process: raised at once outside training, at the next safe point within."""

import os
import signal

import pytest

from sweep import interrupts


@pytest.fixture
def own_handlers():
    """pytest's handlers, put back after a test that leaves the default ones (as a stop must)."""
    saved = {each: signal.getsignal(each) for each in interrupts.SIGNALS}
    yield
    for each, handler in saved.items():
        signal.signal(each, handler)


def test_a_signal_during_training_waits_for_the_next_safe_point(own_handlers):
    lived_on = False
    with pytest.raises(KeyboardInterrupt), interrupts.installed(), interrupts.deferred():
        os.kill(os.getpid(), signal.SIGTERM)  # lands mid-batch, maybe in a C++ callback
        lived_on = True
        interrupts.check()  # the next batch raises it
        pytest.fail("check() did not raise")
    assert lived_on
    # After a signal, a second one must stop the process at once: the default handlers stay.
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    assert signal.getsignal(signal.SIGINT) is signal.SIG_DFL


def test_a_signal_outside_training_is_raised_at_once(own_handlers):
    with pytest.raises(KeyboardInterrupt), interrupts.installed():
        os.kill(os.getpid(), signal.SIGINT)
        pytest.fail("the signal was not raised")


def test_without_a_signal_the_callers_handlers_come_back():
    caller = signal.getsignal(signal.SIGINT)
    with interrupts.installed():
        interrupts.check()  # nothing asked: nothing raised
    assert signal.getsignal(signal.SIGINT) is caller
