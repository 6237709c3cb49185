"""Evaluate finished trials on the 10,000 test images: the only code that reads them.

Each evaluation rebuilds the trial's model from its hyperparameters, loads its best epoch's
weights, and appends what it measured to `evaluations.jsonl` in the search folder, so the report
can show test accuracy for evaluated trials, labelled as such.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

import numpy as np

from sweep import data as data_module
from sweep import report, spaces, state
from sweep import trial as trial_module
from sweep.errors import SweepError
from sweep.search import SearchSettings


def choose_trials(project_dir: Path, trial_ids: list[str] | None, top: int | None) -> list[str]:
    """The trials to evaluate: those named, else the `top` best (default: the best one)."""
    ranked = report.load_trials(project_dir)
    completed = ranked[ranked["rank"].notna()]
    if trial_ids:
        unknown = [t for t in trial_ids if t not in set(completed["trial"])]
        if unknown:
            raise SweepError(
                f"No completed trial {', '.join(unknown)} in {project_dir}. "
                f"Completed: {', '.join(completed['trial']) or 'none'}."
            )
        return trial_ids
    if completed.empty:
        raise SweepError(f"{project_dir} has no completed trial to evaluate yet.")
    return list(completed["trial"].head(top or 1))


def _load_model(project_dir: Path, space: spaces.Space, settings: SearchSettings, trial_id: str):
    import keras_tuner as kt

    from sweep import tuning

    trial_dir = project_dir / f"trial_{trial_id}"
    config = state.read_json(trial_dir / "trial.json")["hyperparameters"]
    model = space.build(kt.HyperParameters.from_config(config), tuning.training_task(settings))
    if model.optimizer is not None and not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)  # the checkpoint holds its state too
    model.load_weights(str(trial_dir / trial_module.CHECKPOINT_FILE))
    return model


def evaluate(
    project_dir: Path, data: str | os.PathLike | None, trial_ids: list[str] | None = None,
    top: int | None = None,
) -> list[dict]:
    """Test accuracy of the chosen trials, recorded in the search folder and returned."""
    record = state.read_json(project_dir / state.SETTINGS_FILE)
    recorded = record["settings"]
    space = spaces.load(recorded["space"])
    if space.source_hash() != recorded["space_sha256"]:
        raise SweepError(
            f"The code of search space {recorded['space']!r} changed since {project_dir} was "
            "made: its trials can no longer be rebuilt."
        )
    chosen = choose_trials(project_dir, trial_ids, top)
    settings = SearchSettings(
        space=recorded["space"], max_epochs=recorded["max_epochs"],
        train_size=record["split"]["train_size"], val_size=record["split"]["val_size"],
    )
    test = data_module.load_test_images(data)
    normalization = record["split"]["normalization"]
    x_test = data_module.normalize(test.x, normalization["mean"], normalization["std"])
    scores = report.load_trials(project_dir).set_index("trial")
    results = []
    for trial_id in chosen:
        model = _load_model(project_dir, space, settings, trial_id)
        predicted = np.argmax(model.predict(x_test, batch_size=500, verbose=0), axis=1)
        result = {
            "trial": trial_id,
            "when": datetime.now().isoformat(timespec="seconds"),
            "test_accuracy": float(np.mean(predicted == test.y)),
            "val_accuracy": float(scores.loc[trial_id, "val_accuracy"]),
            "test_images": len(test.y),
            "test_sha256": data_module.checksum(test),
        }
        state.append_line(project_dir / state.EVALUATIONS_FILE, result)
        results.append(result)
    return results
