import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from sweep import state
from sweep.errors import SweepError


def test_write_json_replaces_the_file_whole(tmp_path):
    path = tmp_path / "a.json"
    state.write_json(path, {"n": 1})
    inode = os.stat(path).st_ino
    state.write_json(path, {"n": 2, "nan": float("nan")})
    assert json.loads(path.read_text()) == {"n": 2, "nan": None}
    assert os.stat(path).st_ino != inode  # a new file renamed into place, not rewritten
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_a_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "a.json"
    state.write_json(path, {"n": 1})
    with pytest.raises(TypeError):
        state.atomic_write(path, object())
    assert json.loads(path.read_text()) == {"n": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_trial_folders_come_in_the_order_the_trials_were_made_whatever_their_width(tmp_path):
    for name in ["10", "06", "notes", "5", "0"]:  # made for 6 trials, extended to 14
        (tmp_path / f"trial_{name}").mkdir()
    (tmp_path / "trial_1.txt").write_text("")  # not a trial's folder
    assert [d.name for d in state.trial_dirs(tmp_path)] == [
        "trial_0", "trial_5", "trial_06", "trial_10", "trial_notes"]


def test_a_trial_is_found_by_its_number_whatever_the_width_it_was_named_in(tmp_path):
    for name in ["00", "03", "4", "06", "notes"]:  # made for 6 trials, extended to 14
        (tmp_path / f"trial_{name}").mkdir()
    unmatched = ["07", "best", str(sys.maxsize), "\u0664"]  # the caller says there is none
    named = {given: state.trial_id_named(tmp_path, given)
             for given in ["4", "04", "004", "3", "06", "6", *unmatched]}
    assert named == {"4": "4", "04": "4", "004": "4", "3": "03", "06": "06", "6": "06",
                     **{given: given for given in unmatched}}


def test_unreadable_json_is_a_sweep_error(tmp_path):
    path = tmp_path / "trial.json"
    path.write_text('{"trial_id": "0", "stat')
    with pytest.raises(SweepError, match="unreadable"):
        state.read_json(path)


def test_event_log_skips_a_torn_last_line(tmp_path):
    state.append_event(tmp_path, event="a")
    with open(tmp_path / state.EVENTS_FILE, "a") as f:
        f.write('{"event": "b"')
    [event] = state.read_events(tmp_path)
    assert event["event"] == "a" and event["time"]
    # The next entry starts on a line of its own, not glued to the torn one and lost with it.
    state.append_event(tmp_path, event="c")
    assert [e["event"] for e in state.read_events(tmp_path)] == ["a", "c"]


def test_second_holder_is_refused_and_a_dead_holder_frees_the_lock(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from pathlib import Path; from sweep.state import SearchLock\n"
         "with SearchLock(Path(sys.argv[1])):\n    print('locked', flush=True); time.sleep(60)",
         str(tmp_path)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with (
            pytest.raises(SweepError, match=f"in use by process {holder.pid}"),
            state.SearchLock(tmp_path),
        ):
            pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    time.sleep(0.1)
    with state.SearchLock(tmp_path):
        assert (tmp_path / state.LOCK_FILE).read_text() == (
            f"process {os.getpid()} on {socket.gethostname()}")
        assert state.lock_holder(tmp_path) == (socket.gethostname(), os.getpid())


def test_a_status_asking_whether_the_search_runs_does_not_make_a_run_refuse(tmp_path):
    """`lock_is_held` takes a shared lock for an instant; one taken at the moment a run starts
    was a refusal ("in use") before the run waited for it."""
    (tmp_path / state.LOCK_FILE).write_text("process 1 on elsewhere")
    asking = open(tmp_path / state.LOCK_FILE)  # noqa: SIM115 - released by the timer below
    fcntl.flock(asking, fcntl.LOCK_SH)
    threading.Timer(0.3, asking.close).start()
    with state.SearchLock(tmp_path):
        assert state.lock_is_held(tmp_path)
    assert not state.lock_is_held(tmp_path)


def test_a_restored_lock_leaves_the_disk_as_it_found_it(tmp_path):
    with state.SearchLock(tmp_path / "runs" / "new") as lock:
        lock.restore()
    assert list(tmp_path.iterdir()) == []
    (tmp_path / state.LOCK_FILE).write_text("process 1 on elsewhere")
    with state.SearchLock(tmp_path) as lock:
        assert state.lock_holder(tmp_path) == (socket.gethostname(), os.getpid())
        lock.restore()
    assert (tmp_path / state.LOCK_FILE).read_text() == "process 1 on elsewhere"
    assert state.lock_holder(tmp_path) == ("elsewhere", 1)


def test_best_epoch_and_failure_reason():
    history = [{"epoch": 0, "val_accuracy": 0.3}, {"epoch": 1, "val_accuracy": 0.5},
               {"epoch": 2, "val_accuracy": 0.5}, {"epoch": 3, "val_accuracy": None}]
    assert state.best_epoch(history)["epoch"] == 1
    assert state.best_epoch([]) is None
    message = "Traceback (most recent call last):\n  ...\nFailedTrialError: loss became nan\n"
    assert state.failure_reason(message) == "loss became nan"


def test_a_worker_holds_its_trial_until_the_chief_hands_it_on(tmp_path):
    assert state.holds_trial(tmp_path, "w1", "3")  # no oracle.json yet: no doubt cast
    state.write_json(tmp_path / state.ORACLE_FILE, {"ongoing_trials": {"w1": "3", "w2": "4"}})
    assert state.holds_trial(tmp_path, "w1", "3")
    state.write_json(tmp_path / state.ORACLE_FILE, {"ongoing_trials": {"w2": "3"}})
    assert not state.holds_trial(tmp_path, "w1", "3")
    (tmp_path / state.ORACLE_FILE).write_text('{"ongoing_tr')  # mid-write elsewhere: a doubt
    assert state.holds_trial(tmp_path, "w1", "3")
