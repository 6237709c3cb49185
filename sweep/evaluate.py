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

from sweep import backend, ranking, state
from sweep import data as data_module
from sweep.errors import SweepError
from sweep.reporting import report
from sweep.search import check_rebuildable, check_searched_images


def choose_trials(project_dir: Path, trial_ids: list[str] | None, top: int | None) -> list[str]:
    """The trials to evaluate: those named, else the `top` best (default: the best one)."""
    ranked = report.load_trials(project_dir)
    completed = ranking.ranked_rows(ranked)
    if trial_ids:
        trial_ids = [state.trial_id_named(project_dir, t) for t in trial_ids]
        finished = ranked[ranked["status"].eq(state.COMPLETED)]
        unknown = [t for t in trial_ids if t not in set(finished["trial"])]
        if unknown:
            raise SweepError(
                f"No completed trial {', '.join(unknown)} in {project_dir}. "
                f"Completed: {', '.join(finished['trial']) or 'none'}."
            )
        return list(dict.fromkeys(trial_ids))  # each once, in the order named
    if completed.empty:
        raise SweepError(f"{project_dir} has no fully trained trial to evaluate yet.")
    return list(completed["trial"].head(top or 1))


def evaluate(
    project_dir: Path, data: str | os.PathLike | None, trial_ids: list[str] | None = None,
    top: int | None = None,
) -> list[dict]:
    """Test accuracy of the chosen trials, recorded in the search folder and returned."""
    record = state.read_search_record(project_dir)
    chosen = choose_trials(project_dir, trial_ids, top)
    check_rebuildable(project_dir, chosen)  # before any result is recorded
    test = data_module.load_test_images(data)
    check_searched_images(project_dir, data_module.load_training_images(data)[0],
                          "its test accuracy would be another copy's")
    backend.import_quietly()  # TensorFlow loads here, once every check has passed
    from sweep import models
    normalization = record["split"]["normalization"]
    x_test = data_module.normalize(test.x, normalization["mean"], normalization["std"])
    scores = report.load_trials(project_dir).set_index("trial")
    results = []
    for trial_id in chosen:
        model = models.load_trial_model(project_dir, trial_id)
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
