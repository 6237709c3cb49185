"""The oracle guards of `sweep.engine.oracles` against KerasTuner 1.4.8's own (no training)."""

import copy
import gc
import re
import threading
import weakref
from types import SimpleNamespace

import keras_tuner as kt
import numpy as np
import pytest
from keras_tuner.src.engine import oracle as kt_oracle

from sweep.engine import oracles
from sweep.engine import tuner as tuner_module
from sweep.settings import format_duration


def _oracle(oracle_class, directory):
    oracle = oracle_class(objective=kt.Objective("val_accuracy", "max"), max_trials=4, seed=1,
                          max_consecutive_failed_trials=oracles.MAX_CONSECUTIVE_FAILURES)
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
    (oracles.RandomOracle, False),
])
def test_a_reloaded_search_never_requeues_an_ended_trial(tmp_path, oracle_class, requeued):
    oracle = _oracle(oracle_class, tmp_path)
    trial_id = _end(oracle, "w1")  # oracle.json is saved while the trial is still ongoing
    reloaded = _oracle(oracle_class, tmp_path)
    reloaded.reload()
    assert (trial_id in reloaded._retry_queue) is requeued


def test_trial_ids_keep_their_width_when_a_resume_lowers_the_trial_count(tmp_path):
    made = _oracle(oracles.RandomOracle, tmp_path)
    made.max_trials = 14  # made with --max-trials 14
    made_ids = [_end(made, "w1") for _ in range(2)]
    resumed = _oracle(oracles.RandomOracle, tmp_path)  # resumed with --max-trials 4
    resumed.reload()
    # KerasTuner alone names the next two `2` and `3`.
    assert made_ids + [_end(resumed, "w1") for _ in range(2)] == ["00", "01", "02", "03"]
    assert resumed.create_trial("w1").status == "STOPPED"  # still exactly --max-trials
    assert str(copy.deepcopy(resumed.max_trials)) == "04"  # the count copies whole


def test_too_many_failures_stop_every_worker_and_keep_the_lock_free(tmp_path):
    oracle = _oracle(oracles.RandomOracle, tmp_path)
    for worker in ("w1", "w2", "w1"):
        _end(oracle, worker, status="FAILED")
    assert oracle.stop_reason == "3 trials failed in a row (last: boom)"
    assert oracle.ongoing_workers() == {}  # the oracle's lock was released: this call returns
    assert oracle.create_trial("w2").status == "STOPPED"
    assert oracle.search_done()


def test_a_silent_workers_trial_goes_back_to_the_queue_and_to_the_next_worker(tmp_path):
    oracle = _oracle(oracles.RandomOracle, tmp_path)
    taken = oracle.create_trial("w1").trial_id
    assert oracle.release_trial("w1") == taken
    assert oracle.create_trial("w2").trial_id == taken
    assert oracle.ongoing_workers() == {"w2": taken}


def test_a_worker_waits_while_the_last_trials_can_still_come_back_to_the_queue(tmp_path):
    """KerasTuner answers STOPPED once `max_trials` exist, even while another worker holds one:
    the asking worker would exit, and a trial released later would have no one to train it."""
    oracle = _oracle(oracles.RandomOracle, tmp_path)
    oracle.max_trials = 2
    held = oracle.create_trial("w1").trial_id
    _end(oracle, "w2")
    assert oracle.create_trial("w2").status == "IDLE"
    assert oracle.workers() == {"w1", "w2"}
    oracle.release_trial("w1")
    assert oracle.create_trial("w2").trial_id == held
    assert oracle.create_trial("w2").trial_id == held  # the trial it already holds
    _end(oracle, "w2")
    assert oracle.create_trial("w2").status == "STOPPED"
    assert oracle.search_done()


def test_the_chief_reads_its_workers_under_the_oracles_lock(tmp_path):
    oracle = _oracle(oracles.RandomOracle, tmp_path)
    oracle.create_trial("w1")
    read = []
    reader = threading.Thread(target=lambda: read.append(oracle.workers()))
    with kt_oracle.LOCKS[oracle]:  # as while a gRPC thread is in the oracle
        reader.start()
        reader.join(0.2)
        assert reader.is_alive()
    reader.join(5)
    assert read == [{"w1"}]
    read[0].add("w2")  # a copy: the oracle's own set is not shared
    assert oracle.workers() == {"w1"}


def test_after_a_chief_restart_running_trials_stay_with_their_workers(tmp_path):
    oracle = _oracle(oracles.RandomOracle, tmp_path)
    running = oracle.create_trial("w1").trial_id
    reloaded = _oracle(oracles.RandomOracle, tmp_path)
    reloaded.reload()
    assert reloaded._retry_queue == [running]  # KerasTuner queues it for anyone
    reloaded.keep_ongoing({"w1": running})
    assert reloaded.create_trial("w1").trial_id == running
    assert reloaded.create_trial("w2").trial_id != running


def test_a_repeated_end_of_a_trial_changes_nothing(tmp_path):
    oracle = _oracle(oracles.RandomOracle, tmp_path)
    trial_id = _end(oracle, "w1")
    trial = oracle.trials[trial_id]
    oracle.end_trial(trial)  # a worker retrying a call the chief had answered
    assert oracle.end_order == [trial_id] and oracle._run_times[trial_id] == 1


def _halving(directory, max_trials=9, finalists=1, max_epochs=9):
    oracle = oracles.SuccessiveHalvingOracle(
        objective=kt.Objective("val_accuracy", "max"), max_trials=max_trials, seed=1,
        max_consecutive_failed_trials=oracles.MAX_CONSECUTIVE_FAILURES)
    oracle.max_epochs, oracle.finalists = max_epochs, finalists
    oracle._set_project_dir(str(directory), "search")
    hps = kt.HyperParameters()
    hps.Float("learning_rate", 1e-4, 1e-2, sampling="log", default=1e-3)
    oracle.update_space(hps)
    return oracle


def _run_one(oracle, score_of):
    """Create the next trial, score it with `score_of(values)` and end it; its values."""
    trial = oracle.create_trial("w1")
    if trial.status != "RUNNING":
        return None
    values = dict(trial.hyperparameters.values)
    oracle.update_trial(trial.trial_id, {"val_accuracy": score_of(values)})
    trial.status = "COMPLETED"
    oracle.end_trial(trial)
    return values


def _lr_score(values):
    """A score that prefers larger learning rates, a little better with more epochs."""
    return values["learning_rate"] * 10 + values.get("tuner/epochs", 9) / 1000


def test_halving_screens_promotes_the_best_then_reseeds_the_finalist(tmp_path):
    oracle = _halving(tmp_path, max_trials=16)  # 14 searched: 9 on 1 epoch, 3 on 3, 2 on 9
    trials = [_run_one(oracle, _lr_score) for _ in range(16)]
    assert _run_one(oracle, _lr_score) is None  # exactly --max-trials
    assert [t["tuner/epochs"] for t in trials] == [1] * 9 + [3] * 3 + [9] * 4
    assert trials[0]["learning_rate"] == 1e-3  # the default point first
    first_rung = sorted((t["learning_rate"] for t in trials[:9]), reverse=True)
    assert first_rung.index(1e-3) > 2  # the default point did not earn a place on the next rung
    # The best third, best first, the default point in the last slot; then the best, and it.
    assert [t["learning_rate"] for t in trials[9:12]] == [*first_rung[:2], 1e-3]
    assert [t["learning_rate"] for t in trials[12:14]] == [first_rung[0], 1e-3]
    assert [t.get("tuner/replica") for t in trials[14:]] == [1, 2]
    assert {t["learning_rate"] for t in trials[14:]} == {first_rung[0]}


def test_a_small_search_screens_then_trains_the_best_and_the_default_point_fully(tmp_path):
    oracle = _halving(tmp_path)  # 9 trials: 5 on 1 epoch, 2 on 9, 1 finalist x 2 seeds
    lowest_first = lambda values: -_lr_score(values)  # noqa: E731 - the default (1e-3) ...
    trials = [_run_one(oracle, lowest_first) for _ in range(9)]
    assert _run_one(oracle, lowest_first) is None
    assert [t["tuner/epochs"] for t in trials] == [1] * 5 + [9] * 4
    assert trials[0]["learning_rate"] == 1e-3
    screened = sorted(t["learning_rate"] for t in trials[:5])
    assert screened[1] < 1e-3  # ... is not among the best two, yet trained fully
    assert [t["learning_rate"] for t in trials[5:7]] == [screened[0], 1e-3]  # the best, the default


def test_a_reloaded_halving_search_follows_the_same_plan(tmp_path):
    straight = [_run_one(_halving(tmp_path / "a"), _lr_score)]
    oracle = _halving(tmp_path / "a")
    oracle.reload()
    straight += [_run_one(oracle, _lr_score) for _ in range(8)]
    interrupted = _halving(tmp_path / "b")
    steps = []
    for _ in range(9):
        steps.append(_run_one(interrupted, _lr_score))
        interrupted = _halving(tmp_path / "b")
        interrupted.reload()
    assert steps == straight


def _schedules(trials):
    """(learning rate, epochs, seed) of each trial: what it trained."""
    return [(t["learning_rate"], t["tuner/epochs"], t.get("tuner/replica")) for t in trials]


def test_an_extended_halving_search_trains_nothing_twice_and_reseeds_its_new_best(tmp_path):
    oracle = _halving(tmp_path, max_trials=12)  # 8 on 1 epoch, 2 on 9, the best x 2 seeds
    first = [_run_one(oracle, _lr_score) for _ in range(12)]
    assert [t["tuner/epochs"] for t in first] == [1] * 8 + [9] * 4
    old_best = first[-1]["learning_rate"]
    extended = _halving(tmp_path, max_trials=20)  # the same search, with --max-trials 20
    extended.reload()
    tried = {t["learning_rate"] for t in first}
    new_first = lambda values: (  # noqa: E731 - new configurations beat every one tried before
        _lr_score(values) + (values["learning_rate"] not in tried))
    more = [_run_one(extended, new_first) for _ in range(8)]
    assert all(more) and _run_one(extended, new_first) is None  # exactly --max-trials
    trained = _schedules(first + more)
    assert len(set(trained)) == len(trained)  # no configuration on the same schedule twice
    # The new configurations are screened and promoted; the best of them, fully trained, is
    # reseeded in the slots left (here one: the plan for 18 searched trials ran to its end).
    new_best = more[-1]["learning_rate"]
    assert new_best != old_best and more[-1].get("tuner/replica") == 1
    assert (new_best, 9, None) in trained


def test_slots_given_back_to_a_halving_search_go_up_its_rungs(tmp_path):
    """20 trials, 2 finalists: both fully trained trials fail, so nothing is there to reseed:
    the 4 seed slots go to the search's plan (as laid out for 16 searched trials), which
    promotes the next best screened configurations to the whole schedule."""
    oracle = _halving(tmp_path, max_trials=20, finalists=2)
    ran = []
    while (trial := oracle.create_trial("w1")).status == "RUNNING":
        values = dict(trial.hyperparameters.values)
        ran.append(values)
        if values["tuner/epochs"] == 9 and len([v for v in ran if v["tuner/epochs"] == 9]) <= 2:
            trial.status = "FAILED"
        else:
            oracle.update_trial(trial.trial_id, {"val_accuracy": _lr_score(values)})
            trial.status = "COMPLETED"
        oracle.end_trial(trial)
    assert len(ran) == 20
    # The last slot, after the one configuration left to reseed had its seeds, promotes the
    # next best screened configuration to the whole schedule; none is screened anew.
    assert ran[-1]["tuner/epochs"] == 9 and "tuner/replica" not in ran[-1]


def test_slots_left_by_too_few_fully_trained_configurations_go_back_to_the_search(tmp_path):
    # 10 trials, 2 finalists wanted: 4 screened, 2 on the whole schedule, 2 x 2 seeds. One
    # fully trained trial fails, so one configuration is there to reseed: its 2 seeds leave
    # 2 slots, which promote the next best screened configuration: still 10 trials.
    oracle = _halving(tmp_path, max_trials=10, finalists=2)
    trials = [_run_one(oracle, _lr_score) for _ in range(4)]
    failed = oracle.create_trial("w1")
    failed.status = "FAILED"
    oracle.end_trial(failed)
    trials += [_run_one(oracle, _lr_score) for _ in range(5)]
    assert all(trials) and _run_one(oracle, _lr_score) is None
    full = [t for t in trials if t["tuner/epochs"] == 9]
    assert len(full) == 5 and len({t["learning_rate"] for t in full}) > 1


def test_a_trial_left_running_by_a_killed_process_does_not_hold_the_finalists_up(tmp_path):
    oracle = _oracle(oracles.RandomOracle, tmp_path)  # 4 trials: 2 searched, 1 finalist x 2
    oracle.max_epochs, oracle.finalists = 9, 1
    _run_one(oracle, _lr_score)
    orphan = oracle.create_trial("w1")
    del oracle.ongoing_trials["w1"]  # neither running nor queued: it never runs again
    assert orphan.status == "RUNNING"
    finalist = oracle.create_trial("w1")
    assert finalist.status == "RUNNING"  # not IDLE, which a single process would spin on
    assert finalist.hyperparameters.values["tuner/replica"] == 1


def _oracle_of(tuner, directory, **settings):
    """The oracle `tuner` makes, on a three-hyperparameter space."""
    from sweep.settings import SearchSettings

    oracle = oracles.make_oracle(SearchSettings(tuner=tuner, max_trials=10, max_epochs=9,
                                                **settings))
    oracle._set_project_dir(str(directory), "search")
    hps = kt.HyperParameters()
    hps.Float("learning_rate", 1e-4, 1e-2, sampling="log", default=3e-3)
    hps.Int("units", 8, 512, default=100)
    hps.Choice("activation", ["relu", "gelu", "elu"], default="gelu")
    oracle.update_space(hps)
    return oracle


TUNERS = ["halving", "bayesian", "random", "hyperband"]
DEFAULT_POINT = {"learning_rate": 3e-3, "units": 100, "activation": "gelu"}


@pytest.mark.parametrize("tuner", TUNERS)
def test_every_tuner_starts_with_the_space_default_point(tmp_path, tuner):
    first = _oracle_of(tuner, tmp_path).create_trial("w1").hyperparameters.values
    assert {k: first[k] for k in DEFAULT_POINT} == DEFAULT_POINT


@pytest.mark.parametrize("tuner", TUNERS)
def test_known_points_come_right_after_the_default_point(tmp_path, tuner):
    known = [{"units": 64, "activation": "relu"}, {"learning_rate": 3e-3}]  # 2nd: the default
    oracle = _oracle_of(tuner, tmp_path, known_points=known)
    proposed = []
    for worker in ("w1", "w2", "w3"):
        trial = oracle.create_trial(worker)
        proposed.append({k: trial.hyperparameters.values[k] for k in DEFAULT_POINT})
        oracle.update_trial(trial.trial_id, {"val_accuracy": 0.5})
        trial.status = "COMPLETED"
        oracle.end_trial(trial)
    assert proposed[:2] == [DEFAULT_POINT, {**DEFAULT_POINT, **known[0]}]
    assert proposed[2] not in proposed[:2]  # then the tuner's own choice, never a repeat


def _tuner_with_trials(directory, epoch_seconds: dict[str, list[float]], deadline=None,
                       schedules: dict[str, int] | None = None, running: tuple = ()):
    """A SweepTuner (no KerasTuner state) over trials whose epochs took these seconds, on this
    machine unless the trial id starts with "gpu" (another machine): ended, on a schedule of
    their epochs (or `schedules`), but those `running`."""
    from sweep import backend, state

    here = backend.machine("float32")
    trials = []
    for trial_id, seconds in epoch_seconds.items():
        machine = "elsewhere, jax, bfloat16" if trial_id.startswith("gpu") else here
        history = [{"epoch": i, "seconds": s, "machine": machine} for i, s in enumerate(seconds)]
        state.write_json(directory / f"trial_{trial_id}" / state.TRIAL_RECORD_FILE,
                         {"history": history, "train_seconds": sum(seconds)})
        schedule = (schedules or {}).get(trial_id, len(seconds))
        trials.append(SimpleNamespace(
            trial_id=trial_id, status="RUNNING" if trial_id in running else "COMPLETED",
            hyperparameters=SimpleNamespace(values={"tuner/epochs": schedule})))
    tuner = object.__new__(tuner_module.SweepTuner)
    tuner.deadline, tuner.known_trials = deadline, lambda: trials
    tuner.trial_dir = lambda trial_id: directory / f"trial_{trial_id}"
    tuner.settings = SimpleNamespace(precision="float32", max_epochs=10)
    tuner.worker, tuner.plan_timed = None, False
    return tuner


@pytest.mark.parametrize("epoch_seconds, trained_here, schedule, starts", [
    (0.5, True, 2, True), (15.0, True, 2, False), (15.0, False, 2, True),
    (4.0, True, 1, True), (4.0, True, 9, False),
])
def test_a_time_budget_starts_no_trial_that_would_not_end_in_time(
    tmp_path, epoch_seconds, trained_here, schedule, starts
):
    """10 s of budget left, after trials that trained their whole 2-epoch schedules: a search
    whose epochs take 0.5 s starts a 2-epoch trial, one whose epochs take 15 s stops before it,
    unless they took 15 s on another machine (a search resumed on a GPU after a CPU, say): then
    this machine's speed is unknown, and it starts. Each trial is judged by its own schedule:
    at 4 s an epoch, a 1-epoch rung fits, a 9-epoch one does not."""
    import time

    ids = ["0", "1"] if trained_here else ["gpu0", "gpu1"]
    tuner = _tuner_with_trials(tmp_path, {t: [epoch_seconds] * 2 for t in ids},
                               deadline=time.monotonic() + 10)
    values = {"tuner/epochs": schedule}
    following = SimpleNamespace(trial_id="2", hyperparameters=SimpleNamespace(values=values))
    if starts:
        tuner.check_time_for(following)
    else:
        expected = format_duration(epoch_seconds * schedule)
        with pytest.raises(tuner_module.TimeBudgetReached,
                           match=rf"trial 2 would take about {expected} here; 0m(09|10)s were"):
            tuner.check_time_for(following)


def test_the_time_left_counts_the_plans_epochs_at_this_machines_typical_epoch(tmp_path):
    """A search resumed on this CPU after a GPU: 20 planned epochs, of which the GPU's trial
    took 2, trial 1 its 6 (early stopping ended it after 4), and trial 2 has 1 so far: the 11
    left take this machine's 60 s (the median, leaving out each fit's first, tracing epoch)."""
    tuner = _tuner_with_trials(
        tmp_path, {"gpu0": [1.0, 1.0], "1": [90.0, 60.0, 58.0, 70.0], "2": [80.0]},
        schedules={"1": 6, "2": 10}, running=("2",))
    tuner.planned_epochs = lambda: 20
    assert tuner.time_left_line() == " | about 11m00s left (60 s an epoch here)"
    tuner.planned_epochs = lambda: None  # Hyperband: no plan to count
    assert tuner.time_left_line() == ""


def test_a_chief_that_trains_nothing_counts_the_time_left_at_the_workers_pace(tmp_path):
    tuner = _tuner_with_trials(tmp_path, {"gpu0": [9.0, 2.0, 2.0]})
    tuner.planned_epochs = lambda: 6
    assert tuner.time_left_line() == " | about 0m06s left (2 s an epoch)"  # not "here"


def test_the_plans_time_here_is_said_once_with_the_budget_that_cuts_it(tmp_path):
    import time

    from sweep import log

    tuner = _tuner_with_trials(tmp_path, {"0": [90.0, 60.0]},
                               deadline=time.monotonic() + 300)
    tuner.planned_epochs = lambda: 12
    said = []
    with log.lines_to(said.append):
        tuner.announce_plan_time()
        tuner.announce_plan_time()
    assert len(said) == 1  # once
    assert re.fullmatch(r"plan here: about 10m00s of training left at 60 s an epoch; the time "
                        r"budget ends this run in (4m59s|5m00s) \(run the same command again "
                        r"to continue\)", said[0])

    tuner.plan_timed, tuner.deadline = False, None  # no budget: the time alone
    with log.lines_to(said.append):
        tuner.announce_plan_time()
    assert said[1] == "plan here: about 10m00s of training left at 60 s an epoch"

    tuner.plan_timed, tuner.worker = False, "w1"  # a worker: the plan is the whole search's
    with log.lines_to(said.append):
        tuner.announce_plan_time()
    assert len(said) == 2


def test_the_plan_is_timed_after_a_fits_second_epoch_or_an_ended_trial():
    """The first epoch of a fit traces (and a trial resumed on a GPU at its epoch 24 compiles
    there): never the measure alone."""
    from types import SimpleNamespace

    tuner = SimpleNamespace(ended_here=0, asked=0)
    tuner.announce_plan_time = lambda: setattr(tuner, "asked", tuner.asked + 1)
    timer = tuner_module.PlanTimer(tuner)
    timer.on_epoch_end(23)  # the first epoch of a resumed fit
    assert tuner.asked == 0
    timer.on_epoch_end(24)
    assert tuner.asked == 1
    tuner.ended_here = 1  # a trial ended in this process: its epochs were timed
    tuner_module.PlanTimer(tuner).on_epoch_end(0)
    assert tuner.asked == 2


def test_the_tools_oracle_writes_keras_tuners_files_atomically_and_only_its_own(tmp_path):
    from keras_tuner.src import utils as kt_utils

    oracle = _oracle(oracles.RandomOracle, tmp_path)
    trial_id = _end(oracle, "w1")
    files = [tmp_path / "search" / "oracle.json",
             tmp_path / "search" / f"trial_{trial_id}" / "trial.json"]
    inodes = [path.stat().st_ino for path in files]
    oracle.save()
    oracle._save_trial(oracle.trials[trial_id])
    for path, inode in zip(files, inodes, strict=True):
        assert path.stat().st_ino != inode  # a new file renamed over the old one, not rewritten
        assert path.with_name(path.name + ".good").read_text() == path.read_text()
    # KerasTuner itself is left as it was, for the user's own tuners in the same program.
    assert kt_utils.save_json.__module__ == "keras_tuner.src.utils"



def _limited_oracle(tuner, directory):
    """An oracle with --max-params 90,000 on a space where a model has 1,000 parameters a unit:
    the default point (100 units) is over the limit."""
    from sweep.settings import SearchSettings

    oracle = oracles.make_oracle(
        SearchSettings(tuner=tuner, max_trials=10, max_epochs=9, max_params=90_000,
                       directory=str(directory), project="search"),
        count_params=lambda hp: hp.values["units"] * 1000)
    oracle._set_project_dir(str(directory), "search")
    (directory / "search").mkdir(exist_ok=True)
    hps = kt.HyperParameters()
    hps.Float("learning_rate", 1e-4, 1e-2, sampling="log", default=3e-3)
    hps.Int("units", 8, 512, default=100)
    oracle.update_space(hps)
    return oracle


@pytest.mark.parametrize("tuner", TUNERS)
def test_configurations_over_max_params_are_skipped_before_they_become_trials(tmp_path, tuner):
    from sweep import state

    oracle = _limited_oracle(tuner, tmp_path)
    units = []
    for worker in ("w1", "w2", "w3", "w4"):
        trial = oracle.create_trial(worker)
        units.append(trial.hyperparameters.values["units"])
        oracle.update_trial(trial.trial_id, {"val_accuracy": 0.5})
        trial.status = "COMPLETED"
        oracle.end_trial(trial)
    assert all(u <= 90 for u in units) and len(oracle.trials) == 4  # skipped: not trials
    skipped = [e for e in state.read_events(tmp_path / "search")
               if e["event"] == state.SKIPPED_EVENT]
    assert skipped[0]["values"]["units"] == 100 and skipped[0]["params"] == 100_000  # default
    assert all(e["values"]["units"] > 90 for e in skipped)
    configurations = {tuple(sorted(e["values"].items())) for e in skipped}
    assert len(configurations) == len(skipped)  # each recorded once


def test_a_bayesian_proposal_over_max_params_gives_way_to_one_within_it(tmp_path, monkeypatch):
    oracle = _limited_oracle("bayesian", tmp_path)
    over = {"status": "RUNNING", "values": {"learning_rate": 1e-3, "units": 400}}
    monkeypatch.setattr(kt.oracles.BayesianOptimizationOracle, "populate_space",
                        lambda self, trial_id: over)
    response = oracle.populate_space("7")
    assert response["status"] == "RUNNING" and response["values"]["units"] <= 90


def test_bayesian_search_models_after_a_quarter_of_its_trials(tmp_path, monkeypatch):
    """KerasTuner's random start (3 per hyperparameter: 9 here) is cut to a quarter of
    --max-trials (10 // 4 -> 3, the default point included): the 4th trial on is the
    Gaussian process's."""
    oracle = _oracle_of("bayesian", tmp_path)
    fits = []
    monkeypatch.setattr(oracle.gpr, "fit", lambda x, y: fits.append(len(y)))
    monkeypatch.setattr(oracle.gpr, "predict",
                        lambda x, return_std: (np.zeros(len(x)), np.ones(len(x))))
    for worker in ("w1", "w2", "w3", "w4", "w5"):
        trial = oracle.create_trial(worker)
        oracle.update_trial(trial.trial_id, {"val_accuracy": 0.5})
        trial.status = "COMPLETED"
        oracle.end_trial(trial)
    assert fits == [3, 4]


def test_a_bayesian_proposal_tried_before_gives_way_to_a_new_one(tmp_path, monkeypatch):
    oracle = _oracle_of("bayesian", tmp_path)
    trial = oracle.create_trial("w1")  # the default point
    oracle.update_trial(trial.trial_id, {"val_accuracy": 0.5})
    trial.status = "COMPLETED"
    oracle.end_trial(trial)
    monkeypatch.setattr(kt.oracles.BayesianOptimizationOracle, "populate_space",
                        lambda self, trial_id: {"status": "RUNNING", "values": DEFAULT_POINT})
    response = oracle.populate_space("1")
    assert response["status"] == "RUNNING" and response["values"] != DEFAULT_POINT


@pytest.mark.parametrize("tuner", ["bayesian", "random"])
def test_a_search_on_the_whole_schedule_ends_by_retraining_its_best(tmp_path, tuner):
    oracle = _oracle_of(tuner, tmp_path, finalists=1)  # 10 trials: 8 searched, 1 finalist x 2
    trials = [_run_one(oracle, _lr_score) for _ in range(10)]
    assert all(trials) and _run_one(oracle, _lr_score) is None
    best = max(trials[:8], key=_lr_score)
    assert [t.get("tuner/replica") for t in trials[8:]] == [1, 2]
    assert all(t["learning_rate"] == best["learning_rate"] for t in trials[8:])


def test_known_points_come_before_the_gaussian_process_s_proposals(tmp_path):
    """A random start of 3 completed trials (10 // 4), and 4 known points: all are tried, the
    last ones after the start, as a point added on a resume would be."""
    known = [{"units": units} for units in (16, 32, 64, 256)]
    oracle = _oracle_of("bayesian", tmp_path, known_points=known)
    trials = [_run_one(oracle, _lr_score) for _ in range(5)]
    assert [t["units"] for t in trials] == [100, 16, 32, 64, 256]  # the default point first


def test_a_trial_no_process_will_end_does_not_shape_the_gaussian_process(tmp_path):
    oracle = _oracle_of("bayesian", tmp_path)
    for _ in range(3):
        _run_one(oracle, _lr_score)
    orphan = oracle.create_trial("w1")
    del oracle.ongoing_trials["w1"]  # left RUNNING by a killed process, never queued again
    x, y = oracle._vectorize_trials()
    assert orphan.status == "RUNNING" and len(x) == len(y) == 3
    assert oracle.create_trial("w1").status == "RUNNING"  # KerasTuner alone: UnboundLocalError


def test_a_space_grown_while_a_trial_runs_does_not_stop_the_gaussian_process(tmp_path):
    """Distributed: trial 3 trains on a worker while a hyperparameter joins the space;
    KerasTuner would imagine its score with a fit one dimension short and raise."""
    oracle = _oracle_of("bayesian", tmp_path)
    for _ in range(3):
        _run_one(oracle, _lr_score)
    assert oracle.create_trial("w1").status == "RUNNING"  # proposed by a fit on 3 dimensions
    grown = oracle.hyperparameters.copy()
    grown.Int("depth", 1, 4, default=2)
    oracle.update_space(grown)
    for worker in ("w2", "w3"):  # the 2nd asks the process (the 1st might be a random draw)
        trial = oracle.create_trial(worker)
        # Not the default point again: the trials before counted the new one at its default.
        assert trial.status == "RUNNING" and trial.hyperparameters.values["units"] != 100


def test_a_space_with_nothing_within_max_params_stops_with_the_reason(tmp_path):
    oracle = _limited_oracle("random", tmp_path)
    oracle.max_params = 1  # no model is this small
    assert oracle.create_trial("w1").status == "STOPPED"
    assert "no new configuration has at most --max-params 1 parameters in 100 draws" \
        in oracle.stop_reason


def test_only_the_best_fully_trained_trials_keep_their_weights(tmp_path):
    """Trials 0-3 fully trained (scores 0.5, 0.7, 0.6, 0.4), 4 a screening trial, 5 failed, 6
    running: with --keep-checkpoints 2, only 1, 2 and the running 6 keep their weights."""
    from types import SimpleNamespace

    from sweep import ranking, state

    scores = {"0": 0.5, "1": 0.7, "2": 0.6, "3": 0.4, "4": 0.9}
    trials = [SimpleNamespace(trial_id=t, status="COMPLETED", score=score,
                              hyperparameters=SimpleNamespace(values={
                                  "units": int(t), **({"tuner/epochs": 3} if t == "4" else {})}))
              for t, score in scores.items()]
    trials += [SimpleNamespace(trial_id="5", status="FAILED", score=None,
                               hyperparameters=SimpleNamespace(values={"units": 5})),
               SimpleNamespace(trial_id="6", status="RUNNING", score=None,
                               hyperparameters=SimpleNamespace(values={"units": 6}))]
    for trial in trials:
        (tmp_path / f"trial_{trial.trial_id}").mkdir()
        (tmp_path / f"trial_{trial.trial_id}" / state.CHECKPOINT_FILE).write_bytes(b"weights")
    tuner = SimpleNamespace(
        settings=SimpleNamespace(keep_checkpoints=2, max_epochs=9), known_trials=lambda: trials,
        trial_dir=lambda trial_id: tmp_path / f"trial_{trial_id}",
        ranked=lambda: ranking.rank(oracles.runs_of(trials), 9))
    tuner_module.SweepTuner.prune_checkpoints(tuner)
    kept = sorted(p.parent.name for p in tmp_path.glob(f"trial_*/{state.CHECKPOINT_FILE}"))
    assert kept == ["trial_1", "trial_2", "trial_6"]


def test_the_best_trials_confusion_matrix_costs_a_warning_not_the_run_when_it_fails(tmp_path):
    """Trial 1 is the best; its checkpoint is unreadable (a partial copy, say): the run goes on
    with a warning and the record as it was. Once it has a matrix, nothing is built again."""
    from types import SimpleNamespace

    import keras
    import numpy as np

    from sweep import log, ranking, state
    from sweep.engine import trial as trial_module

    trials = [SimpleNamespace(trial_id=t, status="COMPLETED", score=score,
                              hyperparameters=SimpleNamespace(values={"units": int(t)}))
              for t, score in {"0": 0.5, "1": 0.7}.items()]
    for trial in trials:
        state.write_json(tmp_path / f"trial_{trial.trial_id}" / state.TRIAL_RECORD_FILE,
                         {"history": [{"epoch": 0, "val_accuracy": trial.score}]})
        (tmp_path / f"trial_{trial.trial_id}" / state.CHECKPOINT_FILE).write_bytes(b"partial")
    images = np.zeros((4, 8, 8, 3), np.float32)
    built = []

    def build(hp):
        built.append(hp.values)
        model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(),
                                  keras.layers.Dense(10, activation="softmax")])
        model.compile(optimizer="sgd", loss="categorical_crossentropy")
        return model

    tuner = SimpleNamespace(
        known_trials=lambda: trials, trial_dir=lambda trial_id: tmp_path / f"trial_{trial_id}",
        ranked=lambda: ranking.rank(oracles.runs_of(trials), 1), _try_build=build,
        data=trial_module.TrainingData(images, np.eye(10)[[0] * 4], images, np.eye(10)[[0] * 4]))
    lines = []
    with log.lines_to(lines.append):
        tuner_module.SweepTuner.record_best_confusion(tuner)
    assert built == [{"units": 1}] and len(lines) == 1, lines
    assert lines[0].startswith("no confusion matrix of trial 1 for the report (")
    assert "confusion" not in state.read_trial_record(tmp_path / "trial_1")

    record = state.read_trial_record(tmp_path / "trial_1")
    state.write_json(tmp_path / "trial_1" / state.TRIAL_RECORD_FILE,
                     {**record, "confusion": [[4]]})
    with log.lines_to(lines.append):
        tuner_module.SweepTuner.record_best_confusion(tuner)
    assert len(built) == 1 and len(lines) == 1  # it has one: nothing to do


def test_what_lasts_the_search_is_frozen_while_it_runs_and_garbage_is_still_collected():
    class Cycle:
        def __init__(self):
            self.itself = self

    def garbage_cycle():
        return weakref.ref(Cycle())  # only a collection frees it

    gc.disable()  # no automatic collection: only the one the search makes may free `before`
    try:
        before = garbage_cycle()
        with tuner_module.what_lasts_frozen():
            assert before() is None  # collected first: no garbage is frozen for good
            assert gc.get_freeze_count() > 0
            during = garbage_cycle()
            gc.collect()
            assert during() is None
    finally:
        gc.enable()
    assert gc.get_freeze_count() == 0


def test_the_search_unfreezes_what_it_froze_when_it_stops_and_keeps_a_callers_freeze():
    with pytest.raises(KeyboardInterrupt), tuner_module.what_lasts_frozen():
        assert gc.get_freeze_count() > 0
        raise KeyboardInterrupt
    assert gc.get_freeze_count() == 0

    gc.freeze()  # a caller's own (a server before it forks, say)
    try:
        frozen = gc.get_freeze_count()
        with tuner_module.what_lasts_frozen():
            within = gc.get_freeze_count()
        # Kept frozen, nothing added: frozen objects that die leave the count (another
        # thread's, during the block), so it may only shrink.
        assert 0 < gc.get_freeze_count() <= within <= frozen
    finally:
        gc.unfreeze()
