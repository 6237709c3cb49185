from pathlib import Path

import keras
import keras_tuner as kt
import pytest

from search_spaces.blocks import Float, Int, PlainCNN, TrainingTask, fixed
from sweep import spaces
from sweep.engine import rules
from sweep.engine.hypermodel import active_entries, build_point
from sweep.errors import SweepError

TASK = TrainingTask(input_shape=(32, 32, 3), num_classes=10, train_size=500, epochs=3)


def test_lists_the_built_in_spaces():
    assert {"small_cnn", "tiny_cnn", "large_cnn"} <= set(spaces.available())
    assert "blocks" not in spaces.available()
    space = spaces.load("small_cnn")
    assert space.description and len(spaces.source_hash("small_cnn")) == 64


def test_unknown_space_names_the_available_ones():
    with pytest.raises(SweepError, match="Unknown search space 'nope'. Available: .*small_cnn"):
        spaces.load("nope")


def test_default_point_is_the_measured_plain_bn_cnn():
    hp = kt.HyperParameters()
    model = spaces.load("small_cnn").build(hp, TASK)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [c.filters for c in convs] == [64, 64, 128, 128, 256, 256]
    assert sum(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers) == 6
    dropouts = [layer.rate for layer in model.layers if isinstance(layer, keras.layers.Dropout)]
    assert dropouts == pytest.approx([0.3, 0.4, 0.5, 0.5])  # growing by depth, then the head's
    assert isinstance(model.layers[-3], keras.layers.GlobalAveragePooling2D)
    assert isinstance(model.optimizer, keras.optimizers.AdamW)
    assert hp.values["batch_size"] == 128 and hp.values["label_smoothing"] == 0.1


def test_batch_norm_momentum_is_searched_only_where_a_space_declares_a_range():
    def momenta(name, values):
        hp, model = build_point(spaces.load(name), TASK, values)
        return hp.values, {layer.momentum for layer in model.layers
                           if isinstance(layer, keras.layers.BatchNormalization)}

    values, used = momenta("small_cnn", {})
    assert "bn_momentum" not in values and used == {0.9}  # fixed: the default search unchanged
    assert momenta("large_cnn", {})[1] == {0.9}
    values, used = momenta("large_cnn", {"bn_momentum": 0.95})
    assert values["bn_momentum"] == 0.95 and used == {0.95}
    searched = PlainCNN(name="both", conv_blocks=Int(1, 1, 1), filters=fixed(8),
                        convs_per_block=Int(1, 1, 1), bn_momentum=Float(0.8, 0.99, 0.9))
    values, model = build_point(searched, TASK, {"batch_norm": False})
    assert "bn_momentum" not in values.values  # no BatchNormalization: not searched
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers)


def test_sgd_gets_its_own_rate_and_decay_where_a_space_declares_them():
    def optimizer(name, values):
        hp, model = build_point(spaces.load(name), TASK, values)
        assert set(active_entries(hp)) == set(hp.values)
        config = model.optimizer.get_config()
        peak = config["learning_rate"]["config"]["warmup_target"]  # the rate after warm-up
        return hp.values, type(model.optimizer).__name__, config["weight_decay"], peak

    values, kind, decay, peak = optimizer("large_cnn", {"optimizer": "sgd"})
    assert kind == "SGD" and (decay, peak) == pytest.approx((0.005, 0.4))
    assert "sgd_learning_rate" in values and "learning_rate" not in values
    values, kind, decay, peak = optimizer("large_cnn", {})
    assert kind == "AdamW" and (decay, peak) == pytest.approx((0.2, 0.003))
    assert values["batch_size"] == 64 and values["block_dropout"] == 0.35  # the search's best
    assert "sgd_learning_rate" not in values
    hp = kt.HyperParameters()
    spaces.load("large_cnn").build(hp, TASK)  # the tuner learns SGD's pair from any build
    assert {"sgd_learning_rate", "sgd_weight_decay"} <= {entry.name for entry in hp.space}
    values, kind, decay, peak = optimizer("small_cnn", {"optimizer": "sgd"})  # one pair for all
    assert kind == "SGD" and (decay, peak) == pytest.approx((0.1, 0.003))
    assert "sgd_learning_rate" not in values


def test_the_dense_layers_width_is_learned_from_any_build_and_served_as_asked():
    """A tuner learns its space from the builds it saw: the dense layers' width must be in it
    before any trial had dense layers, or a `--try dense_units=32` would train with 64."""
    from sweep.engine.oracles import default_values

    hp = kt.HyperParameters()
    spaces.load("tiny_cnn").build(hp, TASK)  # the default point: no dense layer
    assert {"dense_units", "dense_dropout"} <= {entry.name for entry in hp.space}
    values = default_values(hp, {"dense_layers": 1, "dense_units": 32})
    _, model = build_point(spaces.load("tiny_cnn"), TASK, values)
    assert [layer.units for layer in model.layers
            if isinstance(layer, keras.layers.Dense)] == [32, 10]


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
    assert "learning_rate: 0.0001 .. 0.01 (log), default 0.003" in lines
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


def test_a_try_value_is_checked_against_the_range_its_own_conditions_give(tmp_path):
    """`units` means 8..64 for a small net and 128..1024 for a big one: a value is refused
    early only against a name with one unconditional meaning, else once the point is built."""
    from sweep.engine.hypermodel import check_space
    from sweep.settings import SearchSettings

    (tmp_path / "two_sizes.py").write_text(
        "import keras\nDESCRIPTION = 'two sizes'\n"
        "def build(hp, task):\n"
        "    kind = hp.Choice('kind', ['small', 'big'])\n"
        "    with hp.conditional_scope('kind', ['small']):\n"
        "        small = hp.Int('units', 8, 64)\n"
        "    with hp.conditional_scope('kind', ['big']):\n"
        "        big = hp.Int('units', 128, 1024)\n"
        "    hp.Fixed('batch_size', 32)\n"
        "    m = keras.Sequential([keras.Input(task.input_shape), keras.layers.Flatten(),\n"
        "        keras.layers.Dense(small if kind == 'small' else big, activation='relu'),\n"
        "        keras.layers.Dense(task.num_classes, activation='softmax')])\n"
        "    m.compile(loss='categorical_crossentropy', metrics=['accuracy'])\n"
        "    return m\n")
    space = spaces.load(str(tmp_path / "two_sizes.py"))
    for point in ({"units": 32}, {"kind": "big", "units": 512}):
        check_space(space, SearchSettings(known_points=[point]))
    with pytest.raises(SweepError, match="--try units=512 is outside"):
        check_space(space, SearchSettings(known_points=[{"kind": "small", "units": 512}]))


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


def test_the_space_hash_covers_the_modules_it_imports_from_beside_it(tmp_path):
    package = tmp_path / "myspaces"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "layers_used.py").write_text("WIDTH = 8\n")
    (package / "training.py").write_text("RATE = 1e-3\n")
    (package / "unrelated.py").write_text("X = 1\n")
    space = package / "space.py"
    space.write_text("import math\nfrom myspaces.layers_used import WIDTH\nfrom . import training\n"
                     "def build(hp, task):\n    raise NotImplementedError\n")
    first = spaces.source_hash(str(space))

    (package / "unrelated.py").write_text("X = 2\n")
    assert spaces.source_hash(str(space)) == first  # not imported: not part of the space
    for module, edit in [("layers_used.py", "WIDTH = 16\n"), ("training.py", "RATE = 1e-2\n")]:
        (package / module).write_text(edit)
        assert spaces.source_hash(str(space)) != first, module
        first = spaces.source_hash(str(space))


def test_a_built_in_space_hash_changes_with_the_blocks_that_build_its_models(tmp_path):
    import shutil

    import search_spaces

    copy = tmp_path / "search_spaces"
    shutil.copytree(Path(search_spaces.__file__).parent, copy,
                    ignore=shutil.ignore_patterns("__pycache__"))
    before = spaces.source_hash(str(copy / "small_cnn.py"))
    assert before == spaces.source_hash("small_cnn")  # the same code, wherever it lies
    blocks = copy / "blocks.py"
    blocks.write_text(blocks.read_text().replace("MAX_DROPOUT = 0.7", "MAX_DROPOUT = 0.6"))
    assert spaces.source_hash(str(copy / "small_cnn.py")) != before


def test_the_space_hash_ignores_documentation_but_not_code(tmp_path):
    space = tmp_path / "space.py"
    code = 'WIDTH = 8\n\n\ndef build(hp, task):\n    return WIDTH\n'
    space.write_text('"""A space."""\n' + code)
    first = spaces.source_hash(str(space))
    # A measurement recorded in the docstrings and a comment: the same space, resumable.
    space.write_text('"""A space.\n\nMeasured: 71 %."""\n' + code.replace(
        "WIDTH = 8\n", "WIDTH = 8  # twice as wide overfits\n\n").replace(
        "task):\n", 'task):\n    """Builds it."""\n'))
    assert spaces.source_hash(str(space)) == first
    space.write_text('"""A space."""\n' + code.replace("WIDTH = 8", "WIDTH = 16"))
    assert spaces.source_hash(str(space)) != first
    space.write_text('"""A space."""\n' + code + 'NOTE = "a string, not a docstring"\n')
    assert spaces.source_hash(str(space)) != first
    # Code on a docstring's line counts, with or without its docstring.
    space.write_text('"""A space."""; WIDTH = 8\n')
    shared = spaces.source_hash(str(space))
    space.write_text('"""A space."""; WIDTH = 16\n')
    assert spaces.source_hash(str(space)) != shared
    space.write_bytes(b"\xef\xbb\xbf" + ('"""A space."""\n' + code).encode())  # a BOM
    assert spaces.source_hash(str(space)) == first


def test_a_search_recorded_with_the_whole_text_hash_of_unchanged_code_still_matches(tmp_path):
    import hashlib

    space = tmp_path / "space.py"
    space.write_text('"""A space."""\nWIDTH = 8\n')
    # What searches recorded before documentation was left out: the file's whole text.
    whole_text = hashlib.sha256(b"space.py\0" + space.read_bytes() + b"\0").hexdigest()
    assert whole_text != spaces.source_hash(str(space))
    assert spaces.code_matches(str(space), whole_text)
    assert spaces.code_matches(str(space), spaces.source_hash(str(space)))
    space.write_text('"""A space, measured."""\nWIDTH = 8\n')
    assert not spaces.code_matches(str(space), whole_text)  # the old hash saw every byte


def test_a_value_is_allowed_on_its_hyperparameters_steps_as_keras_tuner_samples_them():
    hp = kt.HyperParameters()
    hp.Float("rate", 0.1, 0.5, step=0.05)
    hp.Int("width", 16, 256, step=2, sampling="log")
    hp.Int("units", 1, 64, step=2, sampling="reverse_log")
    linear, log, reverse_log = hp.space
    assert spaces.allows(linear, 0.35) and not spaces.allows(linear, 0.17)
    assert [v for v in range(1, 300) if spaces.allows(log, v)] == [16, 32, 64, 128, 256]
    assert [v for v in range(1, 65) if spaces.allows(reverse_log, v)] == [1, 33, 49, 57, 61,
                                                                         63, 64]
    assert not spaces.allows(log, 32.0)  # an integer's hyperparameter takes integers
