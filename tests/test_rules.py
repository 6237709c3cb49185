"""The rules checker on real Keras models: each violation with its own message."""

import keras
import keras_tuner as kt
import pytest

from search_spaces.blocks import TrainingTask
from sweep import spaces
from sweep.engine import rules
from sweep.engine.hypermodel import SpaceHyperModel

SHAPE = (32, 32, 3)


def _sequential(*middle):
    return keras.Sequential([keras.Input(SHAPE), *middle, keras.layers.Flatten(),
                             keras.layers.Dense(10, activation="softmax")])


def _functional(merge):
    x = keras.Input(SHAPE)
    a = keras.layers.Conv2D(8, 3, padding="same")(x)
    b = keras.layers.Conv2D(8, 3, padding="same")(a)
    y = keras.layers.Flatten()(merge()([a, b]))
    return keras.Model(x, keras.layers.Dense(10)(y))


def test_accepts_a_plain_model():
    rules.check_model(_sequential(keras.layers.Conv2D(8, 3), keras.layers.BatchNormalization(),
                                  keras.layers.Activation("relu"), keras.layers.MaxPooling2D(),
                                  keras.layers.Conv2D(8, 3, activation="swish"),
                                  keras.layers.Activation(keras.activations.gelu),
                                  keras.layers.Dropout(0.2)))


def test_accepts_a_whitened_first_layer():
    # A fixed Conv2D the tool sets from the training images (`trial.set_whitening`): plain.
    rules.check_model(_sequential(
        keras.layers.Conv2D(24, 2, padding="same", use_bias=False, trainable=False,
                            name=spaces.WHITENING_LAYER),
        keras.layers.Activation("relu"), keras.layers.Conv2D(8, 3)))


@pytest.mark.parametrize("model, message", [
    (lambda: _sequential(keras.layers.RandomFlip()),
     "layer 'random_flip' (RandomFlip) breaks the rule: no data augmentation"),
    (lambda: _sequential(keras.layers.RandomCrop(28, 28)), "(RandomCrop) breaks the rule: no data"),
    (lambda: _sequential(keras.layers.GaussianNoise(0.1)), "(GaussianNoise) breaks the rule: no"),
    (lambda: _functional(keras.layers.Add), "(Add) breaks the rule: no skip or dense connections"),
    (lambda: _functional(keras.layers.Concatenate),
     "(Concatenate) breaks the rule: no skip or dense connections"),
    (lambda: _sequential(keras.applications.MobileNetV3Small(
        input_shape=SHAPE, weights=None, include_top=False)),
     "(Functional) breaks the rule: no nested models"),
    (lambda: _sequential(keras.layers.Lambda(lambda t: t * 2)),
     "(Lambda) breaks the rule: plain layers only"),
    (lambda: _sequential(keras.layers.Activation(lambda t: keras.ops.flip(t, axis=2))),
     "(Activation) breaks the rule: Keras's own activations only (linear, relu"),
    (lambda: _sequential(keras.layers.Conv2D(
        8, 3, activation=lambda t: t + keras.random.normal(keras.ops.shape(t))), ),
     "(Conv2D) breaks the rule: Keras's own activations only"),
])
def test_rejects_each_broken_rule_with_its_message(model, message):
    with pytest.raises(rules.RuleViolation) as error:
        rules.check_model(model())
    assert message in str(error.value)


def test_rejects_a_layer_called_twice():
    x = keras.Input((8,))
    shared = keras.layers.Dense(8)
    model = keras.Model(x, shared(shared(x)))
    with pytest.raises(rules.RuleViolation, match="used more than once"):
        rules.check_model(model)


def test_a_trial_whose_model_breaks_a_rule_fails_with_the_reason(tmp_path):
    (tmp_path / "flip.py").write_text(
        "import keras\n"
        "def build(hp, task):\n"
        "    layers = [keras.Input(task.input_shape), keras.layers.Flatten()]\n"
        "    if hp.Boolean('flip', default=False):\n"
        "        layers.insert(1, keras.layers.RandomFlip())\n"
        "    m = keras.Sequential(layers + [keras.layers.Dense(10, activation='softmax')])\n"
        "    m.compile(loss='categorical_crossentropy')\n"
        "    return m\n"
    )
    task = TrainingTask(SHAPE, 10, 100, 1)
    hypermodel = SpaceHyperModel(spaces.load(str(tmp_path / "flip.py")), task, "float32")
    hp = kt.HyperParameters()
    hypermodel.build(hp)  # default point: plain
    hp.values["flip"] = True
    with pytest.raises(kt.errors.FailedTrialError, match="RandomFlip.*no data augmentation"):
        hypermodel.build(hp)
