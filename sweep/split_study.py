"""The challenge's open question: how much does the uncontrolled split matter?

The challenge's author blamed part of the overfitting on the random, unstratified split and
planned to compare a controlled one. `python -m sweep splits` retrains one finished trial's
configuration (default: the best) from scratch on `repeats` other random splits and as many
stratified ones: the same sizes, drawn from the same 50,000 training images (the test images
are never read). Each retraining is recorded in `splits.jsonl` as it ends, with its best
validation accuracy, each class's accuracy at that epoch and the class counts of its training
part (`sweep.reporting.splits` summarises them), so the study resumes where it stopped.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import keras_tuner as kt

from sweep import backend, ranking, spaces, state
from sweep import data as data_module
from sweep.data import CLASS_NAMES
from sweep.engine import trial as trial_module
from sweep.engine.hypermodel import SpaceHyperModel, training_task
from sweep.reporting import figures, splits
from sweep.search import check_searched_images, recorded_settings

log = logging.getLogger(__name__)
SEED_OFFSET = 1000  # the study's splits: seeds search seed + 1000, 1001, ...: never the search's


def study_seeds(search_seed: int, repeats: int) -> list[int]:
    return [search_seed + SEED_OFFSET + r for r in range(repeats)]


def run_study(project_dir: Path, data: str | os.PathLike | None, trial_id: str,
              repeats: int = 3, quiet: bool = False) -> list[dict]:
    """Retrain the trial on `repeats` random and `repeats` stratified splits (those not done
    yet), one study of a search at a time; return every recorded retraining of this trial."""
    hps = kt.HyperParameters.from_config(
        state.completed_trial_hyperparameters(project_dir, trial_id))
    with state.SearchLock(project_dir / state.SPLITS_DIR):
        return _study(project_dir, data, trial_id, hps, repeats, quiet)


def _study(project_dir: Path, data: str | os.PathLike | None, trial_id: str,
           hps: kt.HyperParameters, repeats: int, quiet: bool) -> list[dict]:
    settings = recorded_settings(project_dir)
    settings.data = data
    space = spaces.load(settings.space)
    backend.import_quietly()
    hypermodel = SpaceHyperModel(space, training_task(settings),
                                 backend.choose_precision(settings.precision))
    images, _ = data_module.load_training_images(data)
    check_searched_images(project_dir, images, "the study would compare other images")
    done = {(r["kind"], r["seed"]) for r in recorded(project_dir, trial_id)}
    # A random and a stratified split in turn: a study cut short still compares the two kinds.
    for seed in study_seeds(settings.seed, repeats):
        for kind in data_module.SPLIT_KINDS:
            if (kind, seed) in done:
                continue
            split = data_module.make_split(images, settings.train_size, settings.val_size, seed,
                                           kind)
            result = retrain(project_dir, trial_id, hps, hypermodel, split, settings, quiet)
            state.append_line(project_dir / state.SPLITS_FILE, result)
            log.info(f"trial {trial_id} on a {kind} split (seed {seed}): "
                     f"val_acc {result['val_accuracy']:.4f}")
    return recorded(project_dir, trial_id)


def retrain(project_dir: Path, trial_id: str, hps: kt.HyperParameters,
            hypermodel: SpaceHyperModel, split: data_module.Split, settings,
            quiet: bool) -> dict:
    """One retraining of the trial's configuration on `split`, from scratch on its schedule
    (resumed from its last epoch if an earlier run was stopped)."""
    kind, seed = split.record["kind"], split.record["seed"]
    training_data = trial_module.TrainingData.from_split(split, len(CLASS_NAMES))
    name = f"{trial_id}-{kind}-{seed}"
    folder = project_dir / state.SPLITS_DIR / name
    folder.mkdir(parents=True, exist_ok=True)
    model, best = trial_module.train_again(
        hypermodel, hps, seed=seed, name=name, folder=folder, data=training_data,
        epochs=ranking.trial_epochs(hps.values, settings.max_epochs),
        patience=settings.patience, quiet=quiet)
    trial_module.record_confusion(model, folder, training_data)
    per_class = figures.per_class_accuracy(
        figures.confusion_data(state.read_trial_record(folder)["confusion"]))
    trial_module.discard_backup(folder)
    return {
        "trial": trial_id, "kind": kind, "seed": seed, "val_accuracy": best["val_accuracy"],
        "train_accuracy": best["accuracy"],
        "class_accuracy": dict(zip(per_class["class"], per_class["accuracy"], strict=True)),
        "train_class_counts": split.record["train_class_counts"],
        "indices_sha256": split.record["indices_sha256"],
    }


def recorded(project_dir: Path, trial_id: str) -> list[dict]:
    return [r for r in state.read_lines(project_dir / state.SPLITS_FILE, splits.RETRAINING_KEYS)
            if r["trial"] == trial_id]
