"""The oracle guards of `sweep.tuning` against KerasTuner 1.4.8's own oracle (no training)."""

import keras_tuner as kt
import pytest

from sweep import tuning


def _oracle(oracle_class, directory):
    oracle = oracle_class(objective=kt.Objective("val_accuracy", "max"), max_trials=4, seed=1,
                          max_consecutive_failed_trials=tuning.MAX_CONSECUTIVE_FAILURES)
    oracle._set_project_dir(str(directory), "search")
    hps = kt.HyperParameters()
    hps.Float("learning_rate", 1e-4, 1e-2, sampling="log", default=1e-3)
    oracle.update_space(hps)
    return oracle


def _end(oracle, worker, status="COMPLETED"):
    trial = oracle.create_trial(worker)
    if status == "COMPLETED":
        oracle.update_trial(trial.trial_id, {"val_accuracy": 0.5})
    trial.status = status
    trial.message = "Traceback ...\nFailedTrialError: boom" if status == "FAILED" else None
    oracle.end_trial(trial)
    return trial.trial_id


@pytest.mark.parametrize("oracle_class, requeued", [
    (kt.oracles.RandomSearchOracle, True),  # KerasTuner alone: KERASTUNER_PITFALLS.md #13
    (tuning.RandomOracle, False),
])
def test_a_reloaded_search_never_requeues_an_ended_trial(tmp_path, oracle_class, requeued):
    oracle = _oracle(oracle_class, tmp_path)
    trial_id = _end(oracle, "w1")  # oracle.json is saved while the trial is still ongoing
    reloaded = _oracle(oracle_class, tmp_path)
    reloaded.reload()
    assert (trial_id in reloaded._retry_queue) is requeued


def test_too_many_failures_stop_every_worker_and_keep_the_lock_free(tmp_path):
    oracle = _oracle(tuning.RandomOracle, tmp_path)
    for worker in ("w1", "w2", "w1"):
        _end(oracle, worker, status="FAILED")
    assert oracle.stop_reason == "3 trials failed in a row (last: boom)"
    assert oracle.ongoing_workers() == {}  # the oracle's lock was released: this call returns
    assert oracle.create_trial("w2").status == "STOPPED"
    assert oracle.search_done()


def test_a_silent_workers_trial_goes_back_to_the_queue_and_to_the_next_worker(tmp_path):
    oracle = _oracle(tuning.RandomOracle, tmp_path)
    taken = oracle.create_trial("w1").trial_id
    assert oracle.release_trial("w1") == taken
    assert oracle.create_trial("w2").trial_id == taken
    assert oracle.ongoing_workers() == {"w2": taken}


def test_after_a_chief_restart_running_trials_stay_with_their_workers(tmp_path):
    oracle = _oracle(tuning.RandomOracle, tmp_path)
    running = oracle.create_trial("w1").trial_id
    reloaded = _oracle(tuning.RandomOracle, tmp_path)
    reloaded.reload()
    assert reloaded._retry_queue == [running]  # KerasTuner queues it for anyone
    reloaded.keep_ongoing({"w1": running})
    assert reloaded.create_trial("w1").trial_id == running
    assert reloaded.create_trial("w2").trial_id != running


def test_a_repeated_end_of_a_trial_changes_nothing(tmp_path):
    oracle = _oracle(tuning.RandomOracle, tmp_path)
    trial_id = _end(oracle, "w1")
    trial = oracle.trials[trial_id]
    oracle.end_trial(trial)  # a worker retrying a call the chief had answered
    assert oracle.end_order == [trial_id] and oracle._run_times[trial_id] == 1
