"""`sweep.engine.normalization`: Keras's batch normalisation on TensorFlow's fused kernel."""

import keras
import keras_tuner as kt
import numpy as np
import pytest

from sweep import backend
from sweep.engine import normalization
from sweep.engine.hypermodel import SpaceHyperModel
from sweep.spaces import TrainingTask, load

pytestmark = pytest.mark.skipif(backend.name() != "tensorflow", reason="TensorFlow's kernel")
IMAGES = np.random.default_rng(0).normal(2.0, 3.0, (32, 8, 8, 3)).astype("float32")


def _pair(precision="bfloat16"):
    """Two equal small nets, the second with its batch normalisation fused."""
    def net():
        with backend.building_in(precision):
            return keras.Sequential([
                keras.Input((8, 8, 3)), keras.layers.Conv2D(16, 3),
                keras.layers.BatchNormalization(momentum=0.5), keras.layers.Flatten(),
                keras.layers.Dense(4), keras.layers.BatchNormalization(),  # 2-D: Keras's path
                keras.layers.Dense(2, dtype="float32")])

    keras.utils.set_random_seed(0)
    keras_own, fused = net(), net()
    fused.set_weights(keras_own.get_weights())
    return keras_own, fused, normalization.fuse(fused)


def _numpy(tensor):
    return keras.ops.convert_to_numpy(tensor).astype("float32")


@pytest.mark.parametrize("precision", ["bfloat16", "float16"])
def test_the_fused_layer_computes_what_keras_computes(precision):
    keras_own, fused, swapped = _pair(precision)
    assert swapped == 2 and type(fused.layers[1]) is normalization.BatchNormalization
    np.testing.assert_allclose(_numpy(fused(IMAGES, training=True)),
                               _numpy(keras_own(IMAGES, training=True)), atol=0.02)
    ours, theirs = fused.layers[1], keras_own.layers[1]
    np.testing.assert_allclose(_numpy(ours.moving_mean), _numpy(theirs.moving_mean), atol=1e-5)
    # From 1, one update: Keras's takes the batch's variance, the kernel's the unbiased one.
    values, kept = 32 * 6 * 6, ours.momentum
    batch_variance = (_numpy(theirs.moving_variance) - kept) / (1 - kept)
    unbiased_update = kept + (1 - kept) * batch_variance * values / (values - 1)
    np.testing.assert_allclose(_numpy(ours.moving_variance), unbiased_update, rtol=2e-5)
    np.testing.assert_allclose(_numpy(fused(IMAGES)), _numpy(keras_own(IMAGES)), atol=0.05)


def test_a_training_step_moves_the_weights_as_keras_does():
    keras_own, fused, _ = _pair()
    before = [_numpy(w) for w in keras_own.trainable_weights]
    labels = keras.utils.to_categorical(np.arange(32) % 2, 2)
    for model in (keras_own, fused):
        model.compile(keras.optimizers.SGD(0.1), "categorical_crossentropy")
        model.train_on_batch(IMAGES, labels)
    for start, theirs, ours in zip(before, keras_own.trainable_weights, fused.trainable_weights,
                                   strict=True):
        step = _numpy(theirs) - start
        assert np.abs(step).max() > 0
        assert np.abs(_numpy(ours) - start - step).max() <= 0.05 * np.abs(step).max(), ours.path


@pytest.mark.parametrize("saved_by", ["fused", "keras_own"])
def test_weights_saved_with_either_layer_load_into_the_other(tmp_path, saved_by):
    """Keras names weights after the layer's class: resumed trials, evaluate and export rely
    on the fused layer keeping the name."""
    models = dict(zip(["keras_own", "fused"], _pair()[:2], strict=True))
    source, target = models.pop(saved_by), models.popitem()[1]
    source(IMAGES, training=True)  # moving statistics of its own
    source.save_weights(tmp_path / "saved.weights.h5")
    target.load_weights(tmp_path / "saved.weights.h5")
    for theirs, ours in zip(source.get_weights(), target.get_weights(), strict=True):
        np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_allclose(_numpy(target(IMAGES)), _numpy(source(IMAGES)), atol=0.05)


def test_a_model_saved_whole_loads_with_keras_own_layer(tmp_path):
    """A `.keras` file of a model with the fused layer needs nothing of this tool to load."""
    _, fused, _ = _pair()
    fused(IMAGES, training=True)
    fused.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    assert type(loaded.layers[1]) is keras.layers.BatchNormalization
    np.testing.assert_allclose(_numpy(loaded(IMAGES)), _numpy(fused(IMAGES)), atol=0.05)


@pytest.mark.parametrize("precision", ["float32", "bfloat16_weights"])
def test_models_without_a_mixed_reduced_policy_keep_keras_layer(precision):
    """Float32 models, and layers with bfloat16 weights: the kernel's statistics are float32."""
    policy = {"bfloat16_weights": "bfloat16"}.get(precision, precision)
    with backend.building_in("float32"):
        model = keras.Sequential([keras.Input((8, 8, 3)),
                                  keras.layers.BatchNormalization(dtype=policy)])
    assert normalization.fuse(model) == 0
    assert type(model.layers[0]) is keras.layers.BatchNormalization


def test_a_search_builds_the_fused_layer_in_bfloat16_once_the_rules_passed_keras_own():
    task = TrainingTask(input_shape=(32, 32, 3), num_classes=10, train_size=100, epochs=2)
    model = SpaceHyperModel(load("small_cnn"), task, "bfloat16").build(kt.HyperParameters())
    kinds = {type(layer) for layer in model.layers
             if isinstance(layer, keras.layers.BatchNormalization)}
    assert kinds == {normalization.BatchNormalization}
