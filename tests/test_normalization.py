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
    assert swapped == 2 and type(fused.layers[1]).__module__ == normalization.__name__
    np.testing.assert_allclose(_numpy(fused(IMAGES, training=True)),
                               _numpy(keras_own(IMAGES, training=True)), atol=0.02)
    ours, theirs = fused.layers[1], keras_own.layers[1]
    np.testing.assert_allclose(_numpy(ours.moving_mean), _numpy(theirs.moving_mean), atol=1e-5)
    values = 32 * 6 * 6  # per channel: the kernel's batch variance is the unbiased one
    ratio = _numpy(ours.moving_variance) / _numpy(theirs.moving_variance)
    assert np.all(ratio >= 1 - 1e-6) and np.all(ratio <= values / (values - 1) + 1e-6)
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


def test_weights_saved_with_either_layer_load_into_the_other(tmp_path):
    """Keras names weights after the layer's class: resumed trials, evaluate and export rely
    on the fused layer keeping the name."""
    keras_own, fused, _ = _pair()
    fused(IMAGES, training=True)  # moving statistics of its own
    fused.save_weights(tmp_path / "fused.weights.h5")
    keras_own.load_weights(tmp_path / "fused.weights.h5")
    np.testing.assert_array_equal(_numpy(keras_own(IMAGES)), _numpy(fused(IMAGES)))


def test_float32_models_keep_keras_layer():
    _, fused, swapped = _pair("float32")
    assert swapped == 0 and type(fused.layers[1]) is keras.layers.BatchNormalization


def test_a_search_trains_the_fused_layer_in_bfloat16_and_checks_the_rules_on_keras_own():
    task = TrainingTask(input_shape=(32, 32, 3), num_classes=10, train_size=100, epochs=2)
    model = SpaceHyperModel(load("small_cnn"), task, "bfloat16").build(kt.HyperParameters())
    kinds = {type(layer) for layer in model.layers
             if isinstance(layer, keras.layers.BatchNormalization)}
    assert kinds == {normalization.BatchNormalization}
