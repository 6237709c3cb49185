"""A finished trial's model, rebuilt from its hyperparameters and best weights, and exported.

The exported file is a plain Keras model that includes its input normalization (the training
part's statistics as a `Normalization` layer), so `keras.saving.load_model` predicts on raw uint8
32x32x3 images with no code from this project.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import keras
import keras_tuner as kt
import numpy as np

from sweep import spaces, state
from sweep.data import CLASS_NAMES
from sweep.errors import SweepError
from sweep.reporting import report
from sweep.search import check_rebuildable, recorded_settings


def load_trial_model(project_dir: Path, trial_id: str) -> keras.Model:
    """The trial's model with the weights of its best epoch."""
    from sweep.engine import hypermodel
    from sweep.engine import trial as trial_module

    check_rebuildable(project_dir, [trial_id])
    record = state.read_search_record(project_dir)
    space = spaces.load(record["settings"]["space"])
    trial_dir = state.trial_dir(project_dir, trial_id)
    hps = kt.HyperParameters.from_config(
        state.completed_trial_hyperparameters(project_dir, trial_id))
    task = hypermodel.trial_task(
        hypermodel.training_task(recorded_settings(project_dir)), hps.values)
    model = space.build(hps, task)
    trial_module.load_best_weights(model, trial_dir)
    return model


def export(project_dir: Path, trial_id: str, path: Path) -> tuple[Path, Path]:
    """Write the trial's model, normalization included, to `path` (.keras) and a sidecar JSON."""
    record = state.read_search_record(project_dir)
    trained = load_trial_model(project_dir, trial_id)
    normalization = record["split"]["normalization"]
    mean = np.asarray(normalization["mean"], np.float32) * 255.0
    std = np.asarray(normalization["std"], np.float32) * 255.0
    standalone = keras.Sequential(
        [keras.Input(trained.input_shape[1:]),
         keras.layers.Normalization(mean=mean, variance=std**2, name="training_statistics"),
         *trained.layers],
        name=f"{project_dir.name}_trial_{trial_id}",
    )
    with state.atomic_file(path) as temporary:
        standalone.save(temporary)
    row = report.load_trials(project_dir).set_index("trial").loc[trial_id]
    sidecar = path.with_suffix(".json")
    state.write_json(sidecar, {
        "trial": trial_id,
        "search": str(project_dir),
        "space": record["settings"]["space"],
        "hyperparameters": state.read_json(
            state.trial_dir(project_dir, trial_id) / state.TRIAL_FILE)["hyperparameters"]["values"],
        "split": {k: record["split"][k] for k in ("seed", "train_size", "val_size",
                                                  "indices_sha256", "data_sha256")},
        "val_accuracy": row["val_accuracy"],
        "train_accuracy": row["train_accuracy"],
        "test_accuracy": row["test_accuracy"],
        "classes": CLASS_NAMES,
        "input": "uint8 RGB images, shape (N, 32, 32, 3); normalization is inside the model",
    })
    return path, sidecar


def predict_files(model_path: Path, image_paths: list[Path]) -> list[tuple[str, str, float]]:
    """(image, class, probability) for each image file, resized to 32x32 when needed."""
    from PIL import Image, UnidentifiedImageError
    from PIL.Image import DecompressionBombError

    if not model_path.is_file():
        raise SweepError(f"No model at {model_path}. Make one with: python -m sweep export")
    if model_path.suffix != ".keras":
        raise SweepError(f"{model_path} is not a .keras model (the first argument is the model "
                         "`python -m sweep export` wrote, then the images).")
    images = []
    for image_path in image_paths:
        try:
            with Image.open(image_path) as image:
                images.append(np.asarray(image.convert("RGB").resize((32, 32)), np.uint8))
        except (OSError, UnidentifiedImageError, DecompressionBombError) as e:
            raise SweepError(f"Cannot read image {image_path}: {e}") from None
    try:
        model = keras.saving.load_model(model_path)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
        raise SweepError(f"{model_path} is not a model Keras can read ({type(e).__name__}): "
                         "make one with: python -m sweep export") from None
    probabilities = model.predict(np.stack(images), verbose=0)
    return [
        (str(p), CLASS_NAMES[int(np.argmax(row))], float(np.max(row)))
        for p, row in zip(image_paths, probabilities, strict=True)
    ]
