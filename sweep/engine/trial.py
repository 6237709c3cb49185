"""What one trial does: seed, feed the fixed split, fit with per-epoch records and checkpoints.

Each trial keeps `record.json` in its KerasTuner trial folder: its parameter count and one entry
per finished epoch, written atomically after every epoch. A trial interrupted mid-way continues
from its last backed-up epoch (Keras's `BackupAndRestore`, made atomic, one backup folder per
trial, removed when the trial ends; every epoch on a CPU, every few on a GPU) and its record
keeps every epoch exactly once, so the curves stay whole.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
from keras_tuner import errors as kt_errors

from sweep import backend, interrupts, state
from sweep.data import Split, patch_whitening
from sweep.engine import compat
from sweep.errors import TimeBudgetReached, TrialTakenAway
from sweep.settings import format_duration
from sweep.spaces import WHITENING_LAYER

log = logging.getLogger(__name__)

# Inference only: the same result at any size. 256: each epoch's validation pass also times
# the trial's inference throughput at batch 256 (`inference_latency`).
VALIDATION_BATCH = 256
TENSORBOARD_DIR = "tensorboard"
# A net that predicts the same for every image for this many epochs stops (`collapsed`); its
# first epochs do not count: a learning-rate warm-up may hold a net near a uniform guess.
COLLAPSED_EPOCHS = 5
EPOCHS_BEFORE_COLLAPSE_COUNTS = 2
# Backups take at most about this share of a trial's time: an epoch is backed up once the time
# since the last backup is at least that backup's cost over it. On a CPU, whose epochs take
# seconds, that is every epoch; on a GPU, whose epochs of `small_cnn` took 0.13 to 0.34 s on an
# H200, one in several, where backing up each epoch (81 ms on the CPU that writes it) and
# writing each better epoch's weights (77 ms) had made the tool's epochs 2.4x plain Keras's
# (README, "Benchmarks"). A stop then loses at most about 20 times a backup's cost of training.
BACKUP_SHARE = 0.05


@dataclass(frozen=True)
class TrainingData:
    """The split as the model consumes it: one-hot labels (label smoothing needs them).

    Loaded, split and normalized once per process; every trial reads the same tensors.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray

    @classmethod
    def from_split(cls, split: Split, num_classes: int) -> TrainingData:
        one_hot = np.eye(num_classes, dtype=np.float32)
        return cls(split.x_train, one_hot[split.y_train], split.x_val, one_hot[split.y_val])

    def whitening_kernel(self, size: tuple[int, int]) -> np.ndarray:
        """The patch-whitening kernel of the training images, computed once per patch size:
        every trial of a process trains on the same images."""
        size = tuple(size)
        if size not in self._whitening_kernels:
            self._whitening_kernels[size] = patch_whitening(self.x_train, size)
        return self._whitening_kernels[size]

    @functools.cached_property
    def _whitening_kernels(self) -> dict:
        return {}

    @functools.cached_property
    def tensors(self) -> tuple:
        """x_train, y_train, x_val, y_val as the backend takes them (`backend.as_inputs`)."""
        return backend.as_inputs((self.x_train, self.y_train, self.x_val, self.y_val))


def shuffle_seed() -> int:
    """The seed of a trial's training order and dropout masks, drawn from NumPy's generator,
    which `keras.utils.set_random_seed` has just seeded with the trial's seed (`trial_seed`)."""
    return int(np.random.randint(2**31 - 1))


class EpochSeeds(keras.callbacks.Callback):
    """Each epoch's randomness from the trial's `seed` and the epoch's number alone: its dropout
    masks (the layers' seed generators, whose state `save_weights` does not keep) and, where
    Keras shuffles (JAX; `backend.training_input`), its order (NumPy's generator). Under torch
    Keras shuffles with torch's own generator, which this leaves alone.

    A resumed trial then trains its remaining epochs as an uninterrupted one would. Before, each
    run of a trial began those sequences again: its first epochs met the images in the order
    and under the masks of the first epochs of the run before. One resumed 3 epochs after its
    previous resume jumped from 82 to 92 and 97 % training accuracy for exactly those 3 epochs
    (`runs/reference120`, trial 1, epochs 39 to 41), then fell back to 82 %.
    """

    def __init__(self, seed: int):
        super().__init__()
        self.seed = seed

    def on_epoch_begin(self, epoch, logs=None):
        generators = [v for v in self.model.variables if v.name == "seed_generator_state"]
        seeds = np.random.SeedSequence([self.seed, epoch]).generate_state(1 + len(generators))
        np.random.seed(seeds[0])
        for state_variable, seed in zip(generators, seeds[1:], strict=True):
            state_variable.assign(keras.ops.convert_to_tensor(  # 31 bits: torch's are int32
                [int(seed) & 0x7FFFFFFF, 0], dtype=state_variable.dtype))


def trial_seed(search_seed: int, values: dict) -> int:
    """A seed from the search seed and the trial's hyperparameters: a re-run trial repeats."""
    text = f"{search_seed}|" + "|".join(f"{k}={values[k]}" for k in sorted(values))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big") % (2**31 - 1)


# What an epoch's record holds beside its metrics (KerasTuner averages what `fit` returns).
EPOCH_BOOKKEEPING = ("epoch", "seconds", "val_seconds", "traced", "ended", "machine")


@dataclass(frozen=True)
class BehindTheBest:
    """`--stop-behind`: stop a trial whose best validation accuracy so far is more than
    `margin` under the best trial's by the same epoch, counted from the schedule's second half
    (where patience counts too: before it, a strongly regularised net may stall and catch up).
    A trial that far behind after half its schedule would have to gain more than the best did
    over the rest of it; on 80-epoch schedules such trials cost half an hour each on a CPU."""

    margin: float  # accuracy, not points: 0.05 is 5 points
    trial: str  # the best trial
    # Its best validation accuracy by the end of each epoch it ran; after its last (an early
    # stop), its final best.
    best_by_epoch: tuple[float, ...]

    @classmethod
    def of(cls, margin: float, trial: str, history: list[dict]) -> BehindTheBest:
        best, by_epoch = -math.inf, []
        for entry in sorted(history, key=lambda e: e["epoch"]):
            best = max(best, _accuracy(entry))
            by_epoch.append(best)
        return cls(margin, trial, tuple(by_epoch))

    def reason(self, history: list[dict], epoch: int, epochs: int) -> str | None:
        """Why the trial stops after `epoch` (0-based) with `history`, or None."""
        if epoch < patience_starts(epochs) or not self.best_by_epoch:
            return None
        ours = max([0.0, *(_accuracy(e) for e in history)])
        theirs = self.best_by_epoch[min(epoch, len(self.best_by_epoch) - 1)]
        if not theirs - ours > self.margin:
            return None
        return (f"its best validation accuracy, {ours:.2%}, is {100 * (theirs - ours):.1f} "
                f"points under trial {self.trial}'s {theirs:.2%} by epoch {epoch + 1} "
                f"(--stop-behind {100 * self.margin:g})")


def _accuracy(epoch: dict) -> float:
    """An epoch's validation accuracy; -inf where it has none (NaN is recorded as null)."""
    value = epoch.get("val_accuracy")
    return value if value is not None and math.isfinite(value) else -math.inf


def save_weights_atomically(model: keras.Model, path: Path) -> None:
    """`save_weights`, whole or not at all: a stop while writing leaves the old file."""
    with state.atomic_file(path) as temporary:
        model.save_weights(str(temporary), overwrite=True)


class BestWeights:
    """The best epoch's weights so far, held in memory: copying them off the device takes
    milliseconds, where writing them at every better epoch took as long as a GPU's epoch. The
    backup writes them beside the epoch it names (a resumed trial gets the best of the epochs
    it keeps, never one of those it trains again) and the fit's end writes the trial's
    checkpoint."""

    def __init__(self) -> None:
        self.weights: list[np.ndarray] | None = None
        self.name: str | None = None  # their file in the backup folder, once written there

    def keep(self, model: keras.Model) -> None:
        self.weights, self.name = model.get_weights(), None

    def write(self, model: keras.Model, path: Path) -> None:
        """Save them as `save_weights` does (with the optimizer's current state, which a
        checkpoint's readers only build), whole or not at all; the model keeps its weights."""
        current = model.get_weights()
        model.set_weights(self.weights)
        try:
            save_weights_atomically(model, path)
        finally:
            model.set_weights(current)

    def write_checkpoint(self, model: keras.Model, path: Path, backup_dir: Path) -> None:
        """`write`, or where the last backup holds these very weights, a copy of its file."""
        if self.name is not None:
            try:
                with state.atomic_file(path) as temporary:
                    shutil.copyfile(backup_dir / self.name, temporary)
                return
            except FileNotFoundError:  # the backup discarded meanwhile: they are in memory
                pass
        self.write(model, path)

    def read(self, model: keras.Model, path: Path) -> None:
        """Take them from a file `write` made (through the model: load its own weights after)."""
        model.load_weights(str(path))
        self.weights = model.get_weights()


class EpochRecorder(keras.callbacks.Callback):
    """Writes the trial's record after every epoch, reports progress, keeps the best epoch's
    weights, and watches for NaN.

    It runs before `BackupAndRestore` in the callback list, so the record is never behind the
    backup: at worst it holds the epochs since the last backup, which the resumed ones
    overwrite.
    """

    def __init__(self, trial_id: str, trial_dir: Path, record: dict, epochs: int, quiet: bool,
                 deadline: float | None = None, worker: str | None = None,
                 machine: str | None = None, behind: BehindTheBest | None = None):
        super().__init__()
        self.behind = behind
        self.worker = worker
        self.machine = machine  # recorded with each epoch: a trial may move between machines
        self.deadline = deadline
        self.trial_id = trial_id
        self.trial_dir = trial_dir
        self.record = record
        self.epochs = epochs
        self.quiet = quiet  # no line per epoch
        self.non_finite: str | None = None
        self._epoch_start = self._validation_start = 0.0
        self._validation_seconds: float | None = None
        self._first_epoch = 0
        self._announced = False
        self.best = BestWeights()
        # Decided once at each epoch's end, for the backup and the next epoch's start alike.
        self.out_of_time = False

    def _line(self, line: str) -> None:
        if not self.quiet:
            log.info(line)

    def on_train_batch_begin(self, batch, logs=None):
        interrupts.check()

    def on_test_batch_begin(self, batch, logs=None):
        interrupts.check()

    def on_test_begin(self, logs=None):
        # Training steps may still be queued (JAX, a GPU): wait for the last one, which
        # counted its step, so that the pass is timed alone.
        keras.ops.convert_to_numpy(self.model.optimizer.iterations)
        self._validation_start = time.monotonic()

    def on_test_end(self, logs=None):
        self._validation_seconds = time.monotonic() - self._validation_start

    def on_epoch_begin(self, epoch, logs=None):
        interrupts.check()
        if self._announced and self.out_of_time:
            # The last epoch is recorded and backed up (the backup saw the deadline too): stop
            # here, the next run continues.
            raise TimeBudgetReached()
        if not self._announced:
            where = {"worker": self.worker} if self.worker else {}
            state.append_event(self.trial_dir.parent, event="train_start", trial=self.trial_id,
                               epoch=epoch, **where)
            if epoch:
                self._line(f"  trial {self.trial_id}: resuming at epoch {epoch + 1}")
            self._announced = True
            self._first_epoch = epoch  # this fit's: it traces
        self.record["history"] = [e for e in self.record["history"] if e["epoch"] < epoch]
        self._epoch_start = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        if self.worker and not state.holds_trial(self.trial_dir.parent, self.worker,
                                                 self.trial_id):
            raise TrialTakenAway()  # before this epoch writes anything: the folder is another's
        logs = {k: float(v) for k, v in (logs or {}).items()}
        seconds = time.monotonic() - self._epoch_start
        best_before = state.best_epoch(self.record["history"])
        if math.isfinite(logs.get("val_accuracy", math.nan)) and (
            best_before is None or logs["val_accuracy"] > best_before["val_accuracy"]
        ):
            self.best.keep(self.model)
        self.out_of_time = bool(self.deadline) and time.monotonic() > self.deadline
        # "ended": wall time, so the time between two epochs' ends counts every callback too
        bookkeeping = {"machine": self.machine} if self.machine else {}
        bookkeeping["traced"] = epoch == self._first_epoch
        if self._validation_seconds is not None:
            bookkeeping["val_seconds"] = self._validation_seconds
        self.record["history"].append(
            {"epoch": epoch, "seconds": seconds, "ended": time.time(), **bookkeeping, **logs}
        )
        self.record["train_seconds"] = self.record.get("train_seconds", 0.0) + seconds
        state.write_json(self.trial_dir / state.TRIAL_RECORD_FILE, self.record)
        left = state.schedule_time_left(self.record["history"], self.epochs)
        self._line(
            f"  trial {self.trial_id} epoch {epoch + 1}/{self.epochs}: "
            f"loss {logs.get('loss', math.nan):.4f} acc {logs.get('accuracy', math.nan):.4f} "
            f"val_acc {logs.get('val_accuracy', math.nan):.4f} ({seconds:.1f} s"
            + (f"; schedule ends in about {format_duration(left)})" if left >= 1 else ")")
        )
        loss = logs.get("loss", 0.0)
        if not math.isfinite(loss):
            self.non_finite = f"loss became {loss} at epoch {epoch + 1}"
            self.model.stop_training = True
        elif collapsed(self.record["history"], self.model.output_shape[-1]):
            self._line(f"  trial {self.trial_id} stopped: for {COLLAPSED_EPOCHS} epochs it has "
                       "predicted the same for every image (loss ln(classes), accuracy at "
                       "chance), which such a net does not recover from")
            self.model.stop_training = True
        elif self.behind and (why := self.behind.reason(self.record["history"], epoch,
                                                         self.epochs)):
            log.info(f"  trial {self.trial_id} stopped: {why}")
            self.record["stopped"] = why
            state.append_event(self.trial_dir.parent, event=state.BEHIND_EVENT,
                               trial=self.trial_id, epoch=epoch)
            self.model.stop_training = True


def backed_up_epoch(backup_dir: Path) -> int:
    """The epoch at which a trial's backup resumes it (`AtomicBackupAndRestore`); 0 without."""
    path = backup_dir / state.BACKUP_STATE_FILE
    return state.read_json(path)["epoch"] if path.exists() else 0


class AtomicBackupAndRestore(keras.callbacks.BackupAndRestore):
    """Keras's `BackupAndRestore`, made safe against a kill while it writes.

    Keras 3.15 rewrites `latest.weights.h5` in place, then the epoch number in a second file: a
    SIGKILL during the first write leaves an unreadable HDF5 file (the trial then fails), and
    one between the two writes pairs epoch k's weights with epoch k-1. Here each epoch's weights
    go to their own file (temp + rename), as do the best epoch's so far (`BestWeights`), and one
    atomic `state.json` names the files and the epoch, so a restore always sees a consistent
    set. It backs up an epoch when one is due (`BACKUP_SHARE`; always the first of a fit, and
    the last before the time budget stops it).

    It saves at an epoch's end only, so its per-batch hook does nothing: `async_safe` tells Keras
    so. Without it Keras turns off its asynchronous batch dispatch and waits for every step's
    logs (with KerasTuner's callback, below, the tool's epochs were 15 % slower than plain
    `model.fit`; 6 % without both: benchmarks/trial_speed.py).
    """

    async_safe = True

    def __init__(self, backup_dir: str, recorder: EpochRecorder):
        super().__init__(backup_dir, delete_checkpoint=False)
        self.recorder = recorder
        self._cost: float | None = None  # seconds the last backup took
        self._ended = 0.0  # when it ended

    def _state_path(self) -> Path:
        return Path(self.backup_dir) / state.BACKUP_STATE_FILE

    def on_train_begin(self, logs=None):
        if not self._state_path().exists():
            return
        folder = Path(self.backup_dir)
        saved = state.read_json(self._state_path())
        if self.model.optimizer is not None and not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)
        if "best" in saved:
            best = folder / saved["best"] if saved["best"] else None
        else:  # a backup made before the best weights moved into them: then, at each better
            best = folder.parent / state.CHECKPOINT_FILE  # epoch, they became the checkpoint
        if best and best.is_file():
            self.recorder.best.read(self.model, best)
            self.recorder.best.name = saved.get("best")
        self.model.load_weights(str(folder / saved["weights"]))
        self.model._initial_epoch = saved["epoch"]

    def on_epoch_end(self, epoch, logs=None):
        self._current_epoch = epoch + 1
        if self._cost is None or self.recorder.out_of_time or \
                time.monotonic() - self._ended >= self._cost / BACKUP_SHARE:
            started = time.monotonic()
            self._save_model()
            self._ended = time.monotonic()
            self._cost = self._ended - started

    def _save_model(self):
        folder = Path(self.backup_dir)
        folder.mkdir(parents=True, exist_ok=True)
        best = self.recorder.best
        if best.weights is not None and best.name is None:
            written = f"best{self._current_epoch}.weights.h5"  # the best as of this backup
            best.write(self.model, folder / written)
            best.name = written
        name = f"epoch{self._current_epoch}.weights.h5"
        save_weights_atomically(self.model, folder / name)
        state.write_json(self._state_path(), {"epoch": self._current_epoch, "weights": name,
                                              "best": best.name})
        for old in folder.glob("*.weights.h5"):
            if old.name not in (name, best.name):
                old.unlink()


def collapsed(history: list[dict], num_classes: int) -> bool:
    """Whether the last COLLAPSED_EPOCHS epochs, after the first ones, all had the training loss
    of a uniform guess (ln of the classes, label smoothing or not) and accuracy at chance: a
    dead net. In the 40-epoch reference search, plain nets of 9 to 12 convolutions without batch
    normalisation sat there from their second or third epoch on (trial 09: loss 2.302 and
    10.5 % for 27 epochs), and patience, which waits for the schedule's second half, let the
    first run 29 epochs for nothing."""
    last = [e for e in history if e["epoch"] >= EPOCHS_BEFORE_COLLAPSE_COUNTS]
    uniform = math.log(num_classes)
    return len(last) >= COLLAPSED_EPOCHS and all(
        abs(e.get("loss", math.nan) - uniform) < 0.01
        and e.get("accuracy", 1.0) < 1.5 / num_classes for e in last[-COLLAPSED_EPOCHS:])


class PatienceAcrossRuns(keras.callbacks.EarlyStopping):
    """Keras's `EarlyStopping` on validation accuracy, from `patience_starts`, whose count goes
    on over a resumed trial's earlier runs: Keras's starts again at every `fit`, so a trial
    resumed a few epochs before its patience ran out trained up to `patience` epochs more than
    an uninterrupted one (patience 1: stopped after epoch 12 instead of 10)."""

    def __init__(self, patience: int, epochs: int, earlier: list[dict]):
        super().__init__(monitor="val_accuracy", mode="max", patience=patience,
                         start_from_epoch=patience_starts(epochs))
        self.earlier = earlier  # the record's epochs before the one this run resumes at

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        for entry in self.earlier:
            self.on_epoch_end(entry["epoch"], {"val_accuracy": entry.get("val_accuracy")})


def patience_starts(epochs: int) -> int:
    """The epoch from which `--patience` counts: half the trial's schedule. Before it the
    learning rate is near its peak, where a strongly regularised net's validation accuracy
    stalls for many epochs while it still learns, and climbs once the rate decays: counted from
    the start, patience 8 stopped such a trial (large_cnn, 96 base filters, weight decay 0.2)
    at epoch 18 of 40 with 54 % validation and 69 % training accuracy, still rising."""
    return epochs // 2


def fit(
    model: keras.Model,
    *,
    trial_id: str,
    trial_dir: Path,
    batch_size: int,
    data: TrainingData,
    epochs: int,
    patience: int,
    tuner_callbacks: list[keras.callbacks.Callback],
    quiet: bool = False,
    deadline: float | None = None,
    tensorboard: bool = False,
    worker: str | None = None,
    machine: str | None = None,
    behind: BehindTheBest | None = None,
) -> dict:
    """Train one trial to `epochs` (resuming if a backup exists) and return its best metrics.

    `worker` names the distributed worker training it (the report shows it), None on one machine.
    `machine` (`backend.machine`) is recorded with each epoch, for the time budget's estimates.
    `behind` (`--stop-behind`) stops it once it is far behind the best trial.
    """
    record = state.read_trial_record(trial_dir)
    # That the fit ended is recorded before anything else: Keras would delete the backup then,
    # and a stop before the trial ends would train it again from its first epoch, or past its
    # early stop. So the backup stays until the trial has ended (`discard_backup`), and a
    # record that says so is not trained again.
    if not record.get(state.FIT_ENDED):
        if worker:
            record["worker"] = worker
        record["params"] = int(model.count_params())
        record["layers"] = layer_table(model)
        recorder = EpochRecorder(trial_id, trial_dir, record, epochs, quiet, deadline, worker,
                                 machine, behind)
        set_whitening(model, data)
        x_train, y_train, x_val, y_val = data.tensors
        seed = shuffle_seed()
        remaining = range(backed_up_epoch(trial_dir / state.BACKUP_DIR), epochs)
        with interrupts.deferred():  # a Ctrl-C stops the fit before its next batch
            model.fit(**backend.training_input(x_train, y_train, batch_size, seed, remaining),
                      epochs=epochs, validation_data=(x_val, y_val),
                      validation_batch_size=VALIDATION_BATCH,
                      callbacks=[EpochSeeds(seed), *_callbacks(recorder, trial_dir, remaining,
                                                               patience, tuner_callbacks,
                                                               tensorboard)],
                      verbose=0)
        if recorder.non_finite:
            raise kt_errors.FailedTrialError(recorder.non_finite)
        if recorder.best.weights is not None:
            recorder.best.write_checkpoint(model, trial_dir / state.CHECKPOINT_FILE,
                                           trial_dir / state.BACKUP_DIR)
        record[state.FIT_ENDED] = True
        state.write_json(trial_dir / state.TRIAL_RECORD_FILE, record)
    best = state.best_epoch(record["history"])
    if best is None:
        raise kt_errors.FailedTrialError("no epoch finished with a validation accuracy")
    record.update(inference_latency(model, data.x_val, record["history"], machine))
    state.write_json(trial_dir / state.TRIAL_RECORD_FILE, record)
    return {k: v for k, v in best.items() if k not in EPOCH_BOOKKEEPING}  # metrics only


def _callbacks(recorder: EpochRecorder, trial_dir: Path, epochs: range, patience: int,
               tuner_callbacks: list[keras.callbacks.Callback],
               tensorboard: bool) -> list[keras.callbacks.Callback]:
    """The records, the backup (kept when the fit ends), early stopping, and what the tuner
    adds. KerasTuner's own per-epoch callbacks are left out: EpochRecorder saves the best epoch
    instead (atomically), and TunerCallback only forwards to Tuner hooks that do nothing, but
    defines a per-batch hook, which makes Keras wait for every step's logs. `epochs`: those
    this run trains, from the one it resumes at."""
    earlier = [e for e in recorder.record["history"] if e["epoch"] < epochs.start]
    callbacks = [
        recorder,
        AtomicBackupAndRestore(str(trial_dir / state.BACKUP_DIR), recorder),
        PatienceAcrossRuns(patience, epochs.stop, earlier),
        *[c for c in tuner_callbacks if not isinstance(c, compat.KERAS_TUNER_CALLBACKS)],
    ]
    if tensorboard:
        callbacks.append(keras.callbacks.TensorBoard(str(trial_dir / TENSORBOARD_DIR)))
    return callbacks


def set_whitening(model: keras.Model, data: TrainingData) -> None:
    """Give the model's whitening layer (`spaces.WHITENING_LAYER`), where it has one, the kernel
    that whitens the training images' patches: a fixed linear map, the same for every image,
    computed from the training part only (as the inputs' normalization is). A resumed trial's
    backup then restores the same kernel with the other weights."""
    layer = next((layer for layer in model.layers if layer.name == WHITENING_LAYER), None)
    if layer is None:
        return
    kernel = (data.whitening_kernel(layer.kernel_size)
              if isinstance(layer, keras.layers.Conv2D) else None)
    if (kernel is None or layer is not model.layers[0]
            or tuple(layer.kernel.shape) != kernel.shape
            or tuple(layer.dilation_rate) != (1, 1) or layer.trainable):
        raise kt_errors.FailedTrialError(
            f"layer {WHITENING_LAYER!r} must be the first layer, a fixed Conv2D "
            "(trainable=False, no dilation) with twice as many filters as its patches hold "
            "values (24 for 2x2 patches of RGB images) to whiten them")
    layer.set_weights([kernel] + [np.zeros(layer.filters, np.float32)] * layer.use_bias)


def train_again(hypermodel, hps, *, seed: int, name: str, folder: Path, data: TrainingData,
                epochs: int, patience: int, quiet: bool) -> tuple[keras.Model, dict]:
    """Train a configuration outside a search (the split study, the lever benchmark): from
    scratch, seeded as a trial of search seed `seed` would be, on its whole schedule, resuming
    from `folder`'s backup if an earlier run stopped. Returns the model and its best metrics;
    the caller discards the backup (`discard_backup`) once what it records of them is safe."""
    keras.backend.clear_session()
    keras.utils.set_random_seed(trial_seed(seed, hps.values))
    model = hypermodel.build(hps)
    best = fit(model, trial_id=name, trial_dir=folder, batch_size=hps.get("batch_size"),
               data=data, epochs=epochs, patience=patience, tuner_callbacks=[], quiet=quiet)
    return model, best


def layer_table(model: keras.Model) -> list[dict]:
    """The architecture as the report shows it: layer, kind, output shape, parameters, and the
    dtype it computes in (bfloat16 or float16 under mixed precision, float32 at the output)."""
    return [
        {"layer": layer.name, "kind": type(layer).__name__,
         "output_shape": str(tuple(layer.output.shape)), "params": int(layer.count_params()),
         "computes_in": layer.compute_dtype}
        for layer in model.layers
    ]


def load_best_weights(model: keras.Model, trial_dir: Path) -> None:
    """The weights of the trial's best epoch (saved with an optimizer's state, of the fit's end or
    of the backup that wrote them, which a freshly built model must build first to read them)."""
    if model.optimizer is not None and not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    model.load_weights(str(trial_dir / state.CHECKPOINT_FILE))


def record_confusion(model: keras.Model, trial_dir: Path, data: TrainingData) -> float:
    """Add to the trial's record the confusion matrix (true class x predicted class) of its
    best epoch's weights on the validation images, and the seconds its pass took: the report
    shows it for the best trial only, so the tuner asks for it after a trial that changed the
    best (`SweepTuner.record_best_confusion`), not after every trial. Returns those seconds."""
    started = time.monotonic()
    load_best_weights(model, trial_dir)
    predicted = np.argmax(model.predict(data.x_val, batch_size=VALIDATION_BATCH, verbose=0),
                          axis=1)
    true = np.argmax(data.y_val, axis=1)
    classes = data.y_val.shape[1]
    matrix = np.zeros((classes, classes), dtype=int)
    np.add.at(matrix, (true, predicted), 1)
    record = state.read_trial_record(trial_dir)
    record["confusion"] = matrix.tolist()
    record["confusion_seconds"] = time.monotonic() - started
    state.write_json(trial_dir / state.TRIAL_RECORD_FILE, record)
    return record["confusion_seconds"]


LATENCY_CALLS = 20  # timed calls at batch 1, after as many warm-up calls


def inference_latency(model: keras.Model, images: np.ndarray, history: list[dict],
                      machine: str | None = None) -> dict[str, float]:
    """Milliseconds of inference per image at batch 1 (one image at a time, as a service
    answers), timed here after warm-up through Keras's compiled predict step (the median call),
    and at batch 256 (throughput), the typical validation pass over `images` of the trial's
    epochs on this `machine` (loss and metrics included, the last batch partial), leaving out
    passes that traced: measured while training, so it costs nothing more; absent when no
    such pass was timed (a 1-epoch trial). Trials recorded before timed their own batches of
    256 with `predict_on_batch`. A machine busy with other work measures slower: compare
    trials trained on the same machine."""
    timings = []
    for call in range(2 * LATENCY_CALLS):
        start = time.perf_counter()
        model.predict_on_batch(images[:1])
        if call >= LATENCY_CALLS:
            timings.append(time.perf_counter() - start)
    latency = {state.LATENCY_KEYS[1]: 1000 * float(np.median(timings))}
    validation = state.typical_epoch_seconds(history, key="val_seconds", traced_too=False,
                                             machine=machine)
    if validation:
        latency[state.LATENCY_KEYS[256]] = 1000 * validation / len(images)
    return latency


def discard_backup(trial_dir: Path) -> None:
    """A trial that ended (in any state) must not leave its backup for a later run to resume.
    Its state file goes first: a stop while the folder is deleted leaves no state naming a
    deleted file."""
    (trial_dir / state.BACKUP_DIR / state.BACKUP_STATE_FILE).unlink(missing_ok=True)
    shutil.rmtree(trial_dir / state.BACKUP_DIR, ignore_errors=True)
