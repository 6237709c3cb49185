"""A search survives kills, Ctrl-C, NaN, damaged state files, a time budget and a second run.

Real `python -m sweep run` processes on the real CIFAR-10 copy (tiny budgets), real signals.
"""

import json
import random
import signal
import socket
import time

import pytest
from conftest import (
    backed_up_epochs,
    epochs_recorded,
    run_sweep,
    signal_when,
    start_sweep,
    statuses,
    sweep_here,
    train_starts,
    wait_for,
)

from sweep import state

pytestmark = pytest.mark.cifar


def _args(data, *extra, trials=3, epochs=3, space="tiny_cnn"):
    return ["run", "--space", space, "--data", str(data), "--train-size", "500",
            "--val-size", "300", "--max-trials", str(trials), "--max-epochs", str(epochs),
            "--tuner", "random", *extra]


def _assert_whole(project, trials, epochs):
    """Every trial ended once, every epoch recorded once, no backup left, every file whole."""
    assert statuses(project) == {f"trial_{i}": "COMPLETED" for i in range(trials)}
    for trial_id in range(trials):
        record = json.loads((project / f"trial_{trial_id}" / state.TRIAL_RECORD_FILE).read_text())
        assert [e["epoch"] for e in record["history"]] == list(range(epochs))
        assert not (project / f"trial_{trial_id}" / state.BACKUP_DIR).exists()
    for path in project.rglob("*.json"):
        json.loads(path.read_text())


def test_sigkill_mid_trial_resumes_without_retraining(real_cifar_train_only, tmp_path):
    args = _args(real_cifar_train_only, epochs=6)
    project = tmp_path / "runs" / "tiny_cnn"

    # Kill 1: inside the very first trial, right after its first epoch is recorded, often while
    # its backup is being written (KerasTuner alone would restart the whole search here).
    signal_when(start_sweep(*args, cwd=tmp_path), lambda: epochs_recorded(project, "0") >= 1)
    # Kill 2: inside the second trial, once its first epoch is backed up.
    output = signal_when(start_sweep(*args, cwd=tmp_path),
                         lambda: backed_up_epochs(project, "1") >= 1)
    assert "resuming: 0 trials finished and kept, trial 0 interrupted: continuing it" in output

    final = run_sweep(*args, cwd=tmp_path)
    assert final.returncode == 0, final.stdout + final.stderr
    assert "resuming: 1 trials finished and kept, trial 1 interrupted" in final.stdout
    assert "trial 1: resuming at epoch" in final.stdout
    starts = train_starts(project)
    assert [t for t, _ in starts] == ["0", "0", "1", "1", "2"], starts  # none trained twice
    assert starts[3][1] >= 1, starts  # trial 1 continued from its backed-up epoch
    _assert_whole(project, 3, 6)
    shown = sweep_here("report", cwd=tmp_path)
    assert shown.returncode == 0 and "trials: 3 completed" in shown.stdout


def test_ctrl_c_sigterm_and_a_second_ctrl_c_save_and_resume(real_cifar_train_only, tmp_path):
    """One search stopped three times, inside a different trial each time: by Ctrl-C, by
    SIGTERM (a scheduler or `kill`: the same clean stop) and by an impatient second Ctrl-C (stops
    at once, no damage). While it runs, a second run is refused and `report` reads it without
    disturbing it. Each stop resumes from the interrupted trial's backed-up epoch."""
    rounds = [(signal.SIGINT,), (signal.SIGTERM,), (signal.SIGINT, signal.SIGINT)]
    args = _args(real_cifar_train_only, trials=len(rounds), epochs=6)
    project = tmp_path / "runs" / "tiny_cnn"
    resumed_at = {}
    for trial, signals in enumerate(rounds):
        search = start_sweep(*args, cwd=tmp_path)
        wait_for(search, lambda t=str(trial): backed_up_epochs(project, t) >= 1)
        if trial == 0:
            # Paused (still alive, still holding its lock) so that it cannot end, on however
            # fast a machine, while the second run and the report look at it.
            search.send_signal(signal.SIGSTOP)
            try:
                second = run_sweep(*args, cwd=tmp_path)
                live = sweep_here("report", cwd=tmp_path)
            finally:
                search.send_signal(signal.SIGCONT)
            assert second.returncode == 2
            assert f"is in use by process {search.pid}" in second.stderr
            assert live.returncode == 0 and "RUNNING" in live.stdout

        for signum in signals:
            search.send_signal(signum)
            time.sleep(0.2)
        output = search.communicate(timeout=120)[0]
        if len(signals) == 1:
            assert search.returncode == 130, output
            assert "interrupted: finished trials are saved. Run the same command again" in output
            assert "Traceback" not in output
        else:  # ended by the first (130) or, still unwinding, by the second (killed by SIGINT)
            assert search.returncode in (130, -signal.SIGINT), output
        assert {t for t, status in statuses(project).items() if status == "RUNNING"} == {
            f"trial_{trial}"}
        resumed_at[str(trial)] = backed_up_epochs(project, str(trial))

    final = run_sweep(*args, cwd=tmp_path)
    assert final.returncode == 0, final.stdout + final.stderr
    starts = train_starts(project)
    for trial, epoch in resumed_at.items():
        assert starts.count((trial, epoch)) == 1 + (epoch == 0), starts
    _assert_whole(project, len(rounds), 6)


NAN_SPACE = """
import keras
DESCRIPTION = "a space with an absurd learning rate"
def build(hp, task):
    lr = hp.Choice("learning_rate", [1e12, 1e-3], default=1e12)
    hp.Fixed("batch_size", 100)
    model = keras.Sequential([keras.Input(task.input_shape), keras.layers.Flatten(),
                              keras.layers.Dense(32, activation="relu"),
                              keras.layers.Dense(task.num_classes, activation="softmax")])
    model.compile(optimizer=keras.optimizers.SGD(lr), loss="categorical_crossentropy",
                  metrics=["accuracy"])
    return model
"""


def test_nan_fails_its_trial_and_damaged_state_is_repaired(real_cifar_train_only, tmp_path):
    (tmp_path / "nan_space.py").write_text(NAN_SPACE)
    args = _args(real_cifar_train_only, "--precision", "float32", trials=2, epochs=2,
                 space="nan_space.py")  # bfloat16 (auto on a CPU with it) saturates, no NaN
    project = tmp_path / "runs" / "nan_space"
    first = run_sweep(*args, cwd=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "trial 0 done [1/2]: FAILED: loss became nan at epoch 1" in first.stdout
    assert "search done: 1 completed, 1 failed" in first.stdout
    shown = sweep_here("report", cwd=tmp_path)
    assert "failed: loss became nan at epoch 1" in shown.stdout

    # Damage two state files by hand, as a full disk or an editor could.
    for path in (project / "oracle.json", project / "trial_1" / "trial.json"):
        path.write_text(path.read_text()[:25])
    shown = sweep_here("report", cwd=tmp_path)
    assert shown.returncode == 0 and "UNREADABLE" in shown.stdout
    repaired = run_sweep(*args, cwd=tmp_path)
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert "oracle.json was unreadable: restored its last good copy" in repaired.stdout
    assert "trial_1/trial.json was unreadable: restored" in repaired.stdout
    assert [t for t, _ in train_starts(project)] == ["0", "1"]  # nothing retrained

    # With no good copy left, a clear message and nothing touched.
    (project / "oracle.json.good").unlink()
    (project / "oracle.json").write_text("{")
    refused = run_sweep(*args, cwd=tmp_path)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "oracle.json is unreadable and has no good copy" in refused.stderr


def test_time_budget_stops_at_an_epoch_and_the_next_run_continues(real_cifar_train_only,
                                                                  tmp_path):
    args = _args(real_cifar_train_only, trials=2, epochs=3)
    project = tmp_path / "runs" / "tiny_cnn"
    budgeted = run_sweep(*args, "--time-budget", "1s", cwd=tmp_path)
    assert budgeted.returncode == 0, budgeted.stdout + budgeted.stderr
    assert "time budget of 0m01s reached: 0/2 trials ended" in budgeted.stdout
    assert epochs_recorded(project, "0") == 1 and statuses(project) == {"trial_0": "RUNNING"}
    # Where it trained, for the next run's estimates (it may be another machine).
    [epoch] = state.read_trial_record(project / "trial_0")["history"]
    assert epoch["machine"].startswith(f"{socket.gethostname()}, tensorflow, ")

    final = run_sweep(*args, cwd=tmp_path)
    assert final.returncode == 0, final.stdout + final.stderr
    assert train_starts(project) == [("0", 0), ("0", 1), ("1", 0)]
    _assert_whole(project, 2, 3)


def test_kill_torture(real_cifar_train_only, tmp_path):
    """SIGKILL at seeded random moments (first trial included), resume each time, then check
    that the search is whole: every trial once, every epoch once, every file readable."""
    trials, epochs = 5, 2
    args = _args(real_cifar_train_only, "--quiet", trials=trials, epochs=epochs)
    project = tmp_path / "runs" / "tiny_cnn"
    rng = random.Random(20261125)

    def epochs_done():
        return sum(epochs_recorded(project, str(t)) for t in range(trials))

    targets = sorted(rng.sample(range(1, trials * epochs), 4))
    targets[0] = 1  # once inside the first trial
    for target in targets:
        search = start_sweep(*args, cwd=tmp_path)
        wait_for(search, lambda t=target: epochs_done() >= t)
        # A random extra delay lands some kills mid-epoch and some in the middle of writes.
        time.sleep(rng.uniform(0, 1.5))
        signal_when(search, lambda: True)
    final = run_sweep(*args, cwd=tmp_path)
    assert final.returncode == 0, final.stdout + final.stderr
    _assert_whole(project, trials, epochs)
    started = [trial for trial, _ in train_starts(project)]
    # Trials run one after the other: a trial started again after a later one began would be a
    # finished trial trained twice. Each kill restarts at most the trial it interrupted.
    assert started == sorted(started, key=int), started
    assert sorted(set(started)) == [str(t) for t in range(trials)]
    assert len(started) <= trials + len(targets)
    shown = sweep_here("report", cwd=tmp_path)
    assert shown.returncode == 0 and f"trials: {trials} completed" in shown.stdout


def test_failures_in_a_row_stop_the_search_with_every_failed_trial_saved(
    real_cifar_train_only, tmp_path
):
    always_nan = NAN_SPACE.replace("[1e12, 1e-3], default=1e12", "[1e12, 1e13, 1e14], default=1e12")
    (tmp_path / "always_nan.py").write_text(always_nan)
    args = _args(real_cifar_train_only, "--precision", "float32", trials=5, epochs=1,
                 space="always_nan.py")
    stopped = run_sweep(*args, cwd=tmp_path)
    assert stopped.returncode == 2 and "Traceback" not in stopped.stderr
    assert "3 trials failed in a row (last: loss became nan at epoch 1)" in stopped.stderr
    # KerasTuner alone leaves the last one RUNNING, to be run again on resume.
    assert statuses(tmp_path / "runs" / "always_nan") == {
        f"trial_{i}": "FAILED" for i in range(3)}
