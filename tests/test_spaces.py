import keras
import keras_tuner as kt
import pytest

from search_spaces.blocks import TrainingTask
from sweep import rules, spaces
from sweep.errors import SweepError

TASK = TrainingTask(input_shape=(32, 32, 3), num_classes=10, train_size=500, epochs=3)


def test_lists_the_built_in_spaces():
    assert {"small_cnn", "tiny_cnn", "large_cnn"} <= set(spaces.available())
    assert "blocks" not in spaces.available()
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


@pytest.mark.parametrize("name", ["small_cnn", "tiny_cnn", "large_cnn"])
def test_every_sampled_point_of_every_built_in_space_passes_the_rules(name):
    points = spaces.sample_points(spaces.load(name), TASK, count=12, seed=1)
    assert len({str(sorted(hp.values.items())) for hp, _ in points}) > 6  # really different
    for hp, model in points:
        rules.check_model(model)
        assert isinstance(model, keras.Sequential) and model.output_shape == (None, 10)
        assert "batch_size" in hp.values


def test_describe_lists_ranges_defaults_and_conditions():
    lines = spaces.describe(spaces.load("small_cnn"), TASK)
    assert "conv_blocks: 2 .. 4 step 1, default 3" in lines
    assert "learning_rate: 0.0001 .. 0.01 (log), default 0.002" in lines
    assert any(line.startswith("dense_units:") and "(when dense_layers in [1, 2])" in line
               for line in lines)


def test_user_space_from_a_file_and_from_a_module(tmp_path, monkeypatch):
    source = (
        "import keras\nDESCRIPTION = 'mine'\n"
        "def build(hp, task):\n"
        "    m = keras.Sequential([keras.Input(task.input_shape), keras.layers.Flatten(),\n"
        "        keras.layers.Dense(hp.Int('units', 8, 16), activation='relu'),\n"
        "        keras.layers.Dense(task.num_classes, activation='softmax')])\n"
        "    hp.Fixed('batch_size', 32)\n"
        "    m.compile(loss='categorical_crossentropy', metrics=['accuracy'])\n"
        "    return m\n"
    )
    (tmp_path / "my_space.py").write_text(source)
    from_file = spaces.load(str(tmp_path / "my_space.py"))
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "mypkg").mkdir()
    (tmp_path / "mypkg" / "__init__.py").write_text("")
    (tmp_path / "mypkg" / "space.py").write_text(source)
    from_module = spaces.load("mypkg.space")
    for space in (from_file, from_module):
        assert space.description == "mine"
        rules.check_model(space.build(kt.HyperParameters(), TASK))


@pytest.mark.parametrize("source, message", [
    (None, "does not exist"),
    ("import nonexistent_package_xyz\n", "could not be imported: No module named"),
    ("raise RuntimeError('boom')\n", "failed on import: RuntimeError: boom"),
    ("DESCRIPTION = 'no build here'\n", r"does not define build\(hp, task\)"),
])
def test_broken_user_spaces_are_clear_errors(tmp_path, source, message):
    path = tmp_path / "space.py"
    if source is not None:
        path.write_text(source)
    with pytest.raises(SweepError, match=message):
        spaces.load(str(path))
