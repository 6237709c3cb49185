"""One trial on tiny synthetic images: records, NaN failure, seeding."""

import math
import re
import statistics
import time

import keras
import numpy as np
import pytest
from keras_tuner import errors as kt_errors

from sweep import log, state
from sweep.engine import trial as trial_module


def _data(n=64):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 8, 8, 3)).astype(np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, size=n)]
    return trial_module.TrainingData(x, y, x[:32], y[:32])


def _model(learning_rate):
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3),
                              keras.layers.Flatten(), keras.layers.Dense(10, "softmax")])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate),
                  loss="categorical_crossentropy", metrics=["accuracy"])
    return model


def _fit(model, trial_dir, epochs=3, lines=None, **options):
    arguments = dict(trial_id="0", trial_dir=trial_dir, batch_size=16, data=_data(),
                     epochs=epochs, patience=10, tuner_callbacks=[])
    with log.lines_to(lines.append if lines is not None else lambda _: None):
        return trial_module.fit(model, **{**arguments, **options})


def test_quiet_trains_without_a_line_per_epoch(tmp_path):
    lines = []
    _fit(_model(0.01), tmp_path, lines=lines, quiet=True)
    assert lines == [] and len(state.read_json(tmp_path / state.TRIAL_RECORD_FILE)["history"]) == 3


def test_records_every_epoch_and_returns_the_best(tmp_path, monkeypatch):
    monkeypatch.setattr(trial_module, "BACKUP_SHARE", math.inf)  # every epoch backed up
    trial_dir = tmp_path / "trial_0"
    trial_dir.mkdir()
    lines = []
    metrics = _fit(_model(0.01), trial_dir, lines=lines, machine="here, tensorflow, float32")
    record = state.read_json(trial_dir / state.TRIAL_RECORD_FILE)
    assert [e["epoch"] for e in record["history"]] == [0, 1, 2]
    assert {e["machine"] for e in record["history"]} == {"here, tensorflow, float32"}
    # Metrics only: KerasTuner averages what `fit` returns (a string there failed every trial).
    assert metrics.keys() == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert metrics["val_accuracy"] == max(e["val_accuracy"] for e in record["history"])
    assert record["params"] == _model(0.01).count_params()
    assert record["latency_ms_1"] > 0  # ms an image, measured
    # Throughput: the typical validation pass (after the first, which traces), per image.
    passes = [e["val_seconds"] for e in record["history"]]
    assert 0 < passes[1] < record["history"][1]["seconds"]
    assert record["latency_ms_256"] == 1000 * statistics.median(passes[1:]) / len(_data().x_val)
    assert len(lines) == 3 and "epoch 3/3" in lines[-1]
    # Each epoch but the last says when the trial's schedule ends at its pace so far (under a
    # second here: too soon to say).
    state_line = re.compile(r"\(\d+\.\d s(; schedule ends in about \d+m\d\ds)?\)$")
    assert all(state_line.search(line) for line in lines) and lines[-1].endswith(" s)"), lines
    # Kept until the trial has ended (the tuner then discards it): see the test below.
    assert (trial_dir / state.BACKUP_DIR).exists() and record[state.FIT_ENDED]
    _assert_checkpoint_is_the_recorded_best(trial_dir)
    best = state.read_json(trial_dir / state.BACKUP_DIR / state.BACKUP_STATE_FILE)["best"]
    # A copy of the backup's, which holds them here.
    assert (trial_dir / state.CHECKPOINT_FILE).read_bytes() == \
        (trial_dir / state.BACKUP_DIR / best).read_bytes()
    [event] = state.read_events(tmp_path)
    assert {k: event[k] for k in ("event", "trial", "epoch")} == {
        "event": "train_start", "trial": "0", "epoch": 0}
    assert "confusion" not in record  # the tuner asks for the best trial's when a run ends
    assert [layer["kind"] for layer in record["layers"]] == ["Conv2D", "Flatten", "Dense"]


def test_the_whitening_layer_gets_the_training_patches_kernel_and_keeps_it(tmp_path):
    def whitened_model():
        model = keras.Sequential([keras.Input((8, 8, 3)),
                                  keras.layers.Conv2D(24, 2, use_bias=False, trainable=False,
                                                      name="whitening"),
                                  keras.layers.Flatten(), keras.layers.Dense(10, "softmax")])
        model.compile(optimizer="sgd", loss="categorical_crossentropy", metrics=["accuracy"])
        return model

    data = _data()
    _fit(whitened_model(), tmp_path, data=data)
    # The best epoch's weights carry it: what `evaluate` and `export` load into a new build.
    saved = whitened_model()
    trial_module.load_best_weights(saved, tmp_path)
    kernel = saved.get_layer("whitening").get_weights()[0]
    np.testing.assert_array_equal(kernel, data.whitening_kernel((2, 2)))  # set, not trained
    assert data.whitening_kernel([2, 2]) is data.whitening_kernel((2, 2))  # once a process


@pytest.mark.parametrize("layer", [
    lambda: [keras.layers.Conv2D(8, 2, trainable=False, name="whitening")],  # too narrow
    lambda: [keras.layers.Conv2D(24, 2, name="whitening")],  # would train
    lambda: [keras.layers.Conv2D(24, 2, dilation_rate=2, trainable=False, name="whitening")],
    lambda: [keras.layers.Dense(24, trainable=False, name="whitening")],
    # After another layer its inputs are no longer the images whose patches it whitens.
    lambda: [keras.layers.Rescaling(2.0),
             keras.layers.Conv2D(24, 2, trainable=False, name="whitening")],
])
def test_a_whitening_layer_that_cannot_whiten_fails_the_trial_with_the_reason(tmp_path, layer):
    model = keras.Sequential([keras.Input((8, 8, 3)), *layer(),
                              keras.layers.Flatten(), keras.layers.Dense(10, "softmax")])
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    with pytest.raises(kt_errors.FailedTrialError, match="must be the first layer, a fixed Conv2D"):
        _fit(model, tmp_path)


def test_nan_loss_fails_the_trial_with_its_reason(tmp_path):
    trial_dir = tmp_path / "trial_0"
    trial_dir.mkdir()
    with pytest.raises(kt_errors.FailedTrialError, match="loss became nan at epoch 1"):
        _fit(_model(1e12), trial_dir)


def test_trial_seed_depends_on_search_seed_and_values_only():
    a = trial_module.trial_seed(0, {"x": 1, "y": 0.5})
    assert a == trial_module.trial_seed(0, {"y": 0.5, "x": 1})
    assert a != trial_module.trial_seed(1, {"x": 1, "y": 0.5})
    assert a != trial_module.trial_seed(0, {"x": 2, "y": 0.5})


class _Crash(Exception):
    pass


class _CrashAfterEpoch(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            raise _Crash()


def _best_epoch(trial_dir, before=None):
    history = state.read_trial_record(trial_dir)["history"]
    return state.best_epoch([e for e in history if before is None or e["epoch"] < before])


def _assert_checkpoint_is_the_recorded_best(trial_dir):
    """The trial's checkpoint holds the weights of the epoch its record calls best."""
    model = _model(0.01)
    trial_module.load_best_weights(model, trial_dir)
    data = _data()
    measured = model.evaluate(data.x_val, data.y_val, verbose=0, return_dict=True)
    best = _best_epoch(trial_dir)
    assert measured["accuracy"] == pytest.approx(best["val_accuracy"])
    assert measured["loss"] == pytest.approx(best["val_loss"], rel=1e-4)  # no tie between epochs


def test_interrupted_fit_resumes_at_its_epoch_with_history_whole(tmp_path, monkeypatch):
    monkeypatch.setattr(trial_module, "BACKUP_SHARE", math.inf)  # every epoch backed up
    trial_dir = tmp_path / "trial_0"
    trial_dir.mkdir()
    with pytest.raises(_Crash):
        _fit(_model(0.01), trial_dir, epochs=4, tuner_callbacks=[_CrashAfterEpoch(1)])
    backup = trial_dir / state.BACKUP_DIR
    # The best weights as of the backup after the best epoch, kept while no epoch beats it.
    best = f"best{_best_epoch(trial_dir)['epoch'] + 1}.weights.h5"
    assert state.read_json(backup / state.BACKUP_STATE_FILE) == {
        "epoch": 2, "weights": "epoch2.weights.h5", "best": best}
    assert sorted(p.name for p in backup.glob("*.h5")) == sorted([best, "epoch2.weights.h5"])
    assert not (trial_dir / state.CHECKPOINT_FILE).exists()  # written when the fit ends
    _fit(_model(0.01), trial_dir, epochs=4)
    record = state.read_json(trial_dir / state.TRIAL_RECORD_FILE)
    assert [e["epoch"] for e in record["history"]] == [0, 1, 2, 3]
    starts = [e["epoch"] for e in state.read_events(tmp_path) if e["event"] == "train_start"]
    assert starts == [0, 2]
    # The first epoch of each fit traced its steps: no measure of the pace (perhaps of a
    # machine the trial has just moved to), nor of the validation pass's throughput.
    assert [e["traced"] for e in record["history"]] == [True, False, True, False]


def test_a_resumed_trial_trains_its_epochs_as_an_uninterrupted_one(tmp_path, monkeypatch):
    """The same order and the same dropout masks each epoch, whether the fit stopped or not: a
    resumed run began both sequences again, and met the first epochs' images and masks again."""
    monkeypatch.setattr(trial_module, "BACKUP_SHARE", math.inf)  # every epoch backed up

    def run(trial_dir, **options):
        keras.utils.set_random_seed(7)  # as every trial's run is, by its seed
        model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3),
                                  keras.layers.Flatten(), keras.layers.Dropout(0.5),
                                  keras.layers.Dense(10, "softmax")])
        model.compile(optimizer=keras.optimizers.Adam(0.01), loss="categorical_crossentropy",
                      metrics=["accuracy"])
        _fit(model, trial_dir, epochs=5, **options)

    def metrics(trial_dir):
        return [{k: e[k] for k in ("loss", "accuracy", "val_loss", "val_accuracy")}
                for e in state.read_trial_record(trial_dir)["history"]]

    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    run(whole)
    with pytest.raises(_Crash):
        run(resumed, tuner_callbacks=[_CrashAfterEpoch(1)])
    run(resumed)
    assert len(metrics(whole)) == 5 and metrics(resumed) == metrics(whole)


def test_patience_counts_on_over_a_resumed_trial_s_earlier_epochs(tmp_path, monkeypatch):
    monkeypatch.setattr(trial_module, "BACKUP_SHARE", math.inf)  # every epoch backed up

    def epochs_trained(trial_dir, **options):
        keras.utils.set_random_seed(3)
        _fit(_model(0.05), trial_dir, epochs=16, patience=1, **options)
        return [e["epoch"] for e in state.read_trial_record(trial_dir)["history"]]

    whole = epochs_trained(tmp_path / "whole")
    assert 8 < len(whole) < 16  # stopped by patience, counted from epoch 8
    with pytest.raises(_Crash):  # a stop one epoch before patience ran out
        epochs_trained(tmp_path / "resumed", tuner_callbacks=[_CrashAfterEpoch(whole[-2])])
    assert epochs_trained(tmp_path / "resumed") == whole


def test_epochs_between_backups_are_trained_again_and_the_best_stays_a_kept_one(
        tmp_path, monkeypatch):
    """Where backups would cost more than their share (`BACKUP_SHARE`; here none is due after
    a fit's first), a stop loses the epochs since the last one: they are trained again,
    recorded once, and the checkpoint is never the weights of an epoch that was lost."""
    monkeypatch.setattr(trial_module, "BACKUP_SHARE", 1e-12)
    trial_dir = tmp_path / "trial_0"
    trial_dir.mkdir()
    with pytest.raises(_Crash):
        _fit(_model(0.05), trial_dir, epochs=6, tuner_callbacks=[_CrashAfterEpoch(3)])
    saved = state.read_json(trial_dir / state.BACKUP_DIR / state.BACKUP_STATE_FILE)
    assert saved == {"epoch": 1, "weights": "epoch1.weights.h5", "best": "best1.weights.h5"}
    assert len(state.read_trial_record(trial_dir)["history"]) == 4  # recorded, not backed up
    _fit(_model(0.05), trial_dir, epochs=6)
    record = state.read_trial_record(trial_dir)
    assert [e["epoch"] for e in record["history"]] == [0, 1, 2, 3, 4, 5]
    starts = [e["epoch"] for e in state.read_events(tmp_path) if e["event"] == "train_start"]
    assert starts == [0, 1]
    _assert_checkpoint_is_the_recorded_best(trial_dir)


def test_a_backup_is_due_when_the_time_budget_is_spent(tmp_path, monkeypatch):
    """The time budget stops a trial at its next epoch: the epoch before is backed up however
    soon after the last backup it ends, so the next run loses nothing."""
    monkeypatch.setattr(trial_module, "BACKUP_SHARE", 1e-12)
    model, trial_dir = _model(0.01), tmp_path / "trial_0"
    trial_dir.mkdir()
    recorder = trial_module.EpochRecorder("0", trial_dir, {"history": []}, 4, quiet=True,
                                          deadline=time.monotonic() + 3600)
    backup = trial_module.AtomicBackupAndRestore(str(trial_dir / state.BACKUP_DIR), recorder)
    for callback in (recorder, backup):
        callback.set_model(model)

    def backed_up_after(epoch):
        recorder.on_epoch_begin(epoch)
        for callback in (recorder, backup):  # the fit's order
            callback.on_epoch_end(epoch, {"loss": 2.0, "val_accuracy": 0.1})
        return state.read_json(trial_dir / state.BACKUP_DIR / state.BACKUP_STATE_FILE)["epoch"]

    assert backed_up_after(0) == 1  # a fit's first epoch: always
    assert backed_up_after(1) == 1  # not due yet
    recorder.deadline = time.monotonic()  # spent during epoch 3
    assert backed_up_after(2) == 3
    with pytest.raises(trial_module.TimeBudgetReached):
        recorder.on_epoch_begin(3)


def test_a_backup_made_before_it_held_the_best_weights_resumes_with_the_checkpoint(
        tmp_path, monkeypatch):
    """A trial interrupted by an earlier version of the tool: its backup names no best
    weights, which were then written to the trial's checkpoint at every better epoch."""
    monkeypatch.setattr(trial_module, "BACKUP_SHARE", math.inf)
    trial_dir = tmp_path / "trial_0"
    trial_dir.mkdir()
    with pytest.raises(_Crash):
        _fit(_model(0.01), trial_dir, epochs=4, tuner_callbacks=[_CrashAfterEpoch(1)])
    backup = trial_dir / state.BACKUP_DIR
    saved = state.read_json(backup / state.BACKUP_STATE_FILE)
    (backup / saved.pop("best")).rename(trial_dir / state.CHECKPOINT_FILE)
    state.write_json(backup / state.BACKUP_STATE_FILE, saved)
    _fit(_model(0.01), trial_dir, epochs=4)
    assert [e["epoch"] for e in state.read_trial_record(trial_dir)["history"]] == [0, 1, 2, 3]
    _assert_checkpoint_is_the_recorded_best(trial_dir)


def test_a_trial_stopped_after_its_fit_ended_is_not_trained_again(tmp_path):
    """A stop between the fit's end and the trial's (the latency pass, the tuner's own end)
    resumes to no training at all: not from the first epoch (Keras deleted its backup at the
    fit's end), nor past an early stop."""
    trial_dir = tmp_path / "trial_0"
    trial_dir.mkdir()
    first = _fit(_model(0.01), trial_dir, epochs=3)
    ended = state.read_json(trial_dir / state.TRIAL_RECORD_FILE)
    again = _fit(_model(0.01), trial_dir, epochs=3)  # the same trial, resumed
    record = state.read_json(trial_dir / state.TRIAL_RECORD_FILE)
    assert again == first and record["history"] == ended["history"]
    assert record["train_seconds"] == ended["train_seconds"]
    assert [e["event"] for e in state.read_events(tmp_path)] == ["train_start"]
    trial_module.discard_backup(trial_dir)
    assert not (trial_dir / state.BACKUP_DIR).exists()


def test_tensorboard_logs_per_trial_when_asked(tmp_path):
    trial_dir = tmp_path / "trial_0"
    trial_dir.mkdir()
    _fit(_model(0.01), trial_dir, epochs=1, tensorboard=True)
    assert list((trial_dir / trial_module.TENSORBOARD_DIR).rglob("events.out.tfevents.*"))


def test_the_confusion_matrix_is_the_best_epochs_on_the_validation_images(tmp_path):
    trial_dir = tmp_path / "trial_0"
    trial_dir.mkdir()
    best = _fit(_model(0.05), trial_dir, epochs=4)
    # A model built afresh, as the tuner builds it once a run has ended: its optimizer unbuilt.
    seconds = trial_module.record_confusion(_model(0.05), trial_dir, _data())
    record = state.read_json(trial_dir / state.TRIAL_RECORD_FILE)
    matrix = np.array(record["confusion"])
    assert matrix.shape == (10, 10) and matrix.sum() == 32  # every validation image, once
    assert np.trace(matrix) / 32 == pytest.approx(best["val_accuracy"])  # the best epoch's
    assert record["confusion_seconds"] == seconds > 0
    assert len(record["history"]) == 4  # the rest of the record kept


def test_patience_stops_a_trial_that_stopped_improving_in_its_schedule_s_second_half(tmp_path):
    trial_dir = tmp_path / "trial_0"
    trial_dir.mkdir()
    _fit(_model(0.0), trial_dir, epochs=12, patience=2)  # a zero rate never improves
    record = state.read_json(trial_dir / state.TRIAL_RECORD_FILE)
    # Epochs 1-6 all run; from the 7th, patience counts: the 7th is its first best, 2 more.
    assert [e["epoch"] for e in record["history"]] == list(range(9))


class _StepCounter(keras.callbacks.Callback):
    """The optimizer's step count when training begins and after each epoch."""

    def __init__(self):
        super().__init__()
        self.counts = []

    def on_train_begin(self, logs=None):
        self.counts.append(int(self.model.optimizer.iterations))

    def on_epoch_end(self, epoch, logs=None):
        self.counts.append(int(self.model.optimizer.iterations))


def test_a_net_that_predicts_the_same_for_every_image_stops_after_five_such_epochs(tmp_path):
    """Zero weights: a uniform guess, loss ln 10, whatever it is shown (a dead net)."""
    dead = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(),
                             keras.layers.Dense(10, "softmax", kernel_initializer="zeros")])
    dead.compile(optimizer=keras.optimizers.SGD(0.0), loss="categorical_crossentropy",
                 metrics=["accuracy"])
    x = np.random.default_rng(0).normal(size=(60, 8, 8, 3)).astype(np.float32)
    y = np.eye(10, dtype=np.float32)[np.arange(60) % 10]  # every class alike: 10 % at chance
    lines = []
    _fit(dead, tmp_path, epochs=20, lines=lines, data=trial_module.TrainingData(x, y, x, y))
    history = state.read_json(tmp_path / state.TRIAL_RECORD_FILE)["history"]
    stops_after = trial_module.EPOCHS_BEFORE_COLLAPSE_COUNTS + trial_module.COLLAPSED_EPOCHS
    assert len(history) == stops_after
    assert "trial 0 stopped: for 5 epochs it has predicted the same for every image" in lines[-1]
    assert not trial_module.collapsed(history[:-1], 10)  # one epoch fewer: not yet
    learning = [{**e, "loss": 1.9, "accuracy": 0.3} for e in history]
    assert not trial_module.collapsed(learning, 10)


def test_a_resumed_fit_restores_the_optimizer_and_its_schedule(tmp_path, monkeypatch):
    """The learning-rate schedule follows the optimizer's step count: a resume that restored
    only the weights would restart the warmup. (Counted during training, by the callback.)"""
    def model():
        m = _model(0.01)
        schedule = keras.optimizers.schedules.CosineDecay(0.01, decay_steps=16)
        m.compile(optimizer=keras.optimizers.Adam(schedule), loss="categorical_crossentropy",
                  metrics=["accuracy"])
        return m

    monkeypatch.setattr(trial_module, "BACKUP_SHARE", math.inf)  # every epoch backed up
    trial_dir = tmp_path / "trial_0"
    trial_dir.mkdir()
    with pytest.raises(_Crash):
        _fit(model(), trial_dir, epochs=4, tuner_callbacks=[_CrashAfterEpoch(1)])
    counter = _StepCounter()
    _fit(model(), trial_dir, epochs=4, tuner_callbacks=[counter])
    assert counter.counts == [8, 12, 16]  # 64 images in batches of 16: 4 steps an epoch


def test_behind_the_best_counts_from_the_schedule_s_second_half_against_the_same_epoch():
    best = [{"epoch": e, "val_accuracy": v} for e, v in enumerate([0.3, 0.5, 0.45, 0.6, 0.7])]
    rule = trial_module.BehindTheBest.of(0.05, "07", best)
    assert rule.best_by_epoch == (0.3, 0.5, 0.5, 0.6, 0.7)  # the best so far, by each epoch
    ours = [{"epoch": e, "val_accuracy": v} for e, v in enumerate([0.1, 0.2, 0.54, 0.55])]
    assert rule.reason(ours[:2], 1, epochs=4) is None  # first half: 30 points behind, waits
    assert rule.reason(ours[:3], 2, epochs=4) is None  # 54 % against 50 %: ahead
    assert rule.reason(ours, 3, epochs=4) is None  # 55 % against 60 %: 5 points, not more
    worse = ours[:3] + [{"epoch": 3, "val_accuracy": float("nan")}]
    assert rule.reason(worse, 3, epochs=4) == (
        "its best validation accuracy, 54.00%, is 6.0 points under trial 07's 60.00% by "
        "epoch 4 (--stop-behind 5)")
    # Past the best trial's last epoch (it stopped early), its final best: 70 %.
    assert "16.0 points under trial 07's 70.00% by epoch 6" in rule.reason(worse, 5, epochs=8)
    # A NaN accuracy is recorded as null: no score, on either side.
    unscored = [{"epoch": 0, "val_accuracy": None}, {"epoch": 1, "val_accuracy": 0.6}]
    assert trial_module.BehindTheBest.of(0.05, "1", unscored).best_by_epoch == (-math.inf, 0.6)
    assert "is 60.0 points under" in trial_module.BehindTheBest.of(0.05, "1", unscored).reason(
        [{"epoch": 0, "val_accuracy": None}, {"epoch": 1, "val_accuracy": None}], 1, epochs=2)


def test_a_trial_far_behind_the_best_stops_and_says_why(tmp_path):
    trial_dir = tmp_path / "trial_0"
    trial_dir.mkdir()
    perfect = [{"epoch": e, "val_accuracy": 1.0} for e in range(6)]
    lines = []
    _fit(_model(0.01), trial_dir, epochs=6, lines=lines,
         behind=trial_module.BehindTheBest.of(0.05, "3", perfect))
    record = state.read_json(trial_dir / state.TRIAL_RECORD_FILE)
    assert len(record["history"]) == 4  # epochs 1-3, then the first of the second half
    assert "points under trial 3's 100.00% by epoch 4 (--stop-behind 5)" in record["stopped"]
    assert lines[-1] == f"  trial 0 stopped: {record['stopped']}"
    [event] = [e for e in state.read_events(tmp_path) if e["event"] == state.BEHIND_EVENT]
    assert (event["trial"], event["epoch"]) == ("0", 3)
