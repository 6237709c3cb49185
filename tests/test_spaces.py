import keras
import keras_tuner as kt
import pytest

from search_spaces.blocks import TrainingTask
from sweep import spaces
from sweep.errors import SweepError

TASK = TrainingTask(input_shape=(32, 32, 3), num_classes=10, train_size=500, epochs=3)
PLAIN = (keras.layers.Conv2D, keras.layers.BatchNormalization, keras.layers.Activation,
         keras.layers.MaxPooling2D, keras.layers.AveragePooling2D, keras.layers.Dropout,
         keras.layers.GlobalAveragePooling2D, keras.layers.Flatten, keras.layers.Dense)


def test_lists_and_loads_small_cnn():
    assert "small_cnn" in spaces.available() and "blocks" not in spaces.available()
    space = spaces.load("small_cnn")
    assert space.description and len(space.source_hash()) == 64


def test_unknown_space_names_the_available_ones():
    with pytest.raises(SweepError, match="Unknown search space 'nope'. Available: .*small_cnn"):
        spaces.load("nope")


def test_default_point_is_the_measured_plain_bn_cnn():
    hp = kt.HyperParameters()
    model = spaces.load("small_cnn").build(hp, TASK)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [c.filters for c in convs] == [32, 32, 64, 64, 128, 128]
    assert sum(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers) == 6
    assert isinstance(model.layers[-2], keras.layers.GlobalAveragePooling2D)
    assert isinstance(model.optimizer, keras.optimizers.AdamW)
    assert hp.values["batch_size"] == 128 and hp.values["label_smoothing"] == 0.1


@pytest.mark.parametrize("seed", range(6))
def test_random_points_build_plain_sequential_models(seed):
    space = spaces.load("small_cnn")
    hp = kt.HyperParameters()
    space.build(hp, TASK)  # registers the space
    sampled = kt.HyperParameters()
    for entry in hp.space:
        sampled.merge([entry])
        if sampled.is_active(entry):
            sampled.values[entry.name] = entry.random_sample(seed * 100 + len(sampled.values))
    model = space.build(sampled, TASK)
    assert isinstance(model, keras.Sequential)
    assert all(isinstance(layer, PLAIN) for layer in model.layers)
    assert model.output_shape == (None, 10)
