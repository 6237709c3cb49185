"""Every private KerasTuner and Keras internal the tool relies on, in one place, and checked.

KerasTuner's public hooks (`run_trial`, `populate_space`, `Oracle`, `Tuner`) do not reach
everything a crash-safe search needs: atomic state files, a trial that trains on its own
schedule, an oracle that survives a killed chief. What they do not reach is listed here, and
private modules are imported only here (a test keeps it so); the tool's oracle and tuner
subclasses override or read the internals `TOUCHES` names. `check()` runs before every
search: if an installed KerasTuner or Keras no longer has one of these internals, the search
stops with one error that names it and the installed version, instead of running on with a
guarantee silently gone.

Nothing here changes KerasTuner for other code: `quiet_kerastuner` lasts as long as a search,
and the other touches are overrides in the tool's own subclasses.
"""

from __future__ import annotations

import contextlib
import dataclasses
import tempfile
from collections.abc import Callable, Iterator

import keras
import keras_tuner as kt
from keras.src.layers.merging.base_merge import Merge
from keras.src.layers.preprocessing.image_preprocessing.base_image_preprocessing_layer import (
    BaseImagePreprocessingLayer,
)
from keras_tuner.src import config as kt_config
from keras_tuner.src import protos
from keras_tuner.src.distribute import oracle_chief, oracle_client
from keras_tuner.src.engine import conditions, tuner_utils

from sweep.errors import SweepError

__all__ = [
    "Merge", "BaseImagePreprocessingLayer", "protos", "oracle_chief", "oracle_client",
    "KERAS_TUNER_CALLBACKS", "check", "local_oracle", "quiet_kerastuner", "set_client_timeout",
]

# KerasTuner's own per-epoch callbacks, which `sweep.engine.trial` leaves out of every fit.
KERAS_TUNER_CALLBACKS = (tuner_utils.SaveBestEpoch, tuner_utils.TunerCallback)


@dataclasses.dataclass(frozen=True)
class Touch:
    """One internal: `name` on what `owner()` returns (a class, or an instance for attributes
    set in `__init__`), and why the tool needs it."""

    library: str
    owner: Callable[[], object]
    name: str
    why: str

    def __str__(self) -> str:
        return self.name


def _oracle():
    return kt.oracles.RandomSearchOracle(objective="val_accuracy", max_trials=1)


def _bayesian():
    return kt.oracles.BayesianOptimizationOracle(objective="val_accuracy", max_trials=1)


def _sequential():
    return keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])


def _backup():
    return keras.callbacks.BackupAndRestore(tempfile.gettempdir())


TOUCHES = (
    Touch("keras-tuner", lambda: kt.Oracle, "_random_values",
          "the default point is every search's first trial"),
    Touch("keras-tuner", lambda: kt.Oracle, "_save_trial", "trial.json written atomically"),
    Touch("keras-tuner", lambda: kt.Oracle, "_get_oracle_fname", "oracle.json written atomically"),
    Touch("keras-tuner", lambda: kt.Oracle, "_get_trial_dir", "trial.json written atomically"),
    Touch("keras-tuner", _oracle, "ongoing_trials", "a killed chief never re-runs an ended trial"),
    Touch("keras-tuner", _oracle, "_retry_queue", "a silent worker's trial goes to another"),
    Touch("keras-tuner", _oracle, "tuner_ids", "the workers a chief has seen"),
    Touch("keras-tuner", lambda: kt.oracles.BayesianOptimizationOracle, "_vectorize_trials",
          "the Gaussian process fits only trials with a score of their own"),
    Touch("keras-tuner", lambda: kt.oracles.BayesianOptimizationOracle, "_nonfixed_space",
          "the Gaussian process fits only trials with a score of their own"),
    Touch("keras-tuner", _bayesian, "gpr", "the Gaussian process fits only trials with a score "
          "of their own"),
    Touch("keras-tuner", lambda: kt.Tuner, "_build_and_fit_model", "the tool's own trial"),
    Touch("keras-tuner", lambda: kt.Tuner, "_try_run_and_update_trial",
          "a worker's trial handed to another is neither failed nor ended"),
    Touch("keras-tuner", lambda: kt.Tuner, "_build_hypermodel", "each trial seeded by its values"),
    Touch("keras-tuner", lambda: kt.Tuner, "_try_build", "each trial seeded by its values"),
    Touch("keras-tuner", lambda: kt.Tuner, "_get_tuner_fname", "tuner file written atomically"),
    Touch("keras-tuner", lambda: kt.Tuner, "_is_worker", "tuner file written atomically"),
    Touch("keras-tuner", lambda: kt_config, "DEBUG", "a failed trial says its reason in one line"),
    Touch("keras-tuner", lambda: oracle_client, "TIMEOUT", "workers wait for a restarted chief"),
    Touch("keras", lambda: keras.callbacks.BackupAndRestore, "_save_model",
          "backups written atomically"),
    Touch("keras", _backup, "_current_epoch", "backups written atomically"),
    Touch("keras", lambda: keras.Sequential(), "_initial_epoch", "a resumed trial's first epoch"),
    Touch("keras", lambda: _sequential(), "_functional", "the rules see a Sequential's graph"),
    Touch("keras", lambda: _sequential()._functional, "_nodes_by_depth",
          "the rules see skip connections"),
)


def check() -> None:
    """Fail with one clear error if an internal the tool relies on is gone."""
    for touch in TOUCHES:
        if not hasattr(touch.owner(), touch.name):
            version = kt.__version__ if touch.library == "keras-tuner" else keras.__version__
            raise SweepError(
                f"sweep relies on {touch.name} in {touch.library} ({touch.why}), which "
                f"{touch.library} {version} does not have: install the versions pyproject.toml "
                f"allows (pip install -e .)."
            )


@contextlib.contextmanager
def quiet_kerastuner() -> Iterator[None]:
    """While a search runs: no traceback dump for each failed trial (KerasTuner ships with DEBUG
    on; the trial line says why, trial.json keeps the traceback), no chief chatter."""
    saved = kt_config.DEBUG, conditions.__dict__.get("print")
    kt_config.DEBUG = False
    conditions.print = lambda *args, **kwargs: None
    try:
        yield
    finally:
        kt_config.DEBUG = saved[0]
        if saved[1] is None:
            del conditions.print
        else:
            conditions.print = saved[1]


def local_oracle(client: oracle_client.OracleClient):
    """The oracle a worker's KerasTuner wrapped in its gRPC client (the search's own classes)."""
    return client._oracle


def set_client_timeout(seconds: float) -> None:
    """How long each worker call waits for the chief (a worker process is the tool's own)."""
    oracle_client.TIMEOUT = seconds
