"""Usage errors: one short message on stderr, exit status 2, never a traceback."""

import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_probed, run_sweep

from sweep.cli import main


@pytest.mark.parametrize("args, message", [
    (["run", "--space", "nope"], "Unknown search space 'nope'"),
    (["run", "--space", "./"], "Search space . is a folder: give the .py file"),
    (["run", "--data", "/nowhere/cifar"], "No CIFAR-10 found at /nowhere/cifar"),
    (["run", "--max-trials", "0"], "--max-trials must be at least 1"),
    (["run", "--seed", "-3"], "--seed must be between 0 and 4294967294"),
    (["run", "--seed", "4294967295"], "--seed must be between 0 and 4294967294"),
    (["run", "--dir", "/dev/null"], "Cannot make the search folder /dev/null/small_cnn"),
    (["run", "--tuner", "grid"], "invalid choice: 'grid'"),
    (["report", "--dir", "no_runs_here"], "No search under no_runs_here/"),
    (["report", "--project", "missing"], "No search at runs/missing"),
    (["status", "--dir", "no_runs_here"], "No search under no_runs_here/"),
    (["worker", "--chief", "localhost"], "--chief 'localhost' is not HOST:PORT"),
    (["worker", "--chief", "127.0.0.1:1", "--id", "my-chief"], "not the word 'chief'"),
    (["worker", "--chief", "127.0.0.1:1", "--wait", "soon"], "--wait 'soon' is not a duration"),
    (["worker", "--chief", "127.0.0.1:1", "--wait", "1s"], "No chief answered at 127.0.0.1:1"),
    (["chief", "--port", "70000"], "--port 70000 is not a port number"),
    (["chief", "--port", "8000", "--worker-timeout", "0"], "--worker-timeout must be positive"),
    (["run", "--try", "filters"], "--try 'filters': write name=value pairs"),
    (["run", "--try-file", "points.json"], "--try-file points.json: No such file"),
    (["run", "--space", "tiny_cnn", "--try", "width=3"], "has no hyperparameter 'width'"),
    (["run", "--space", "tiny_cnn", "--try", "filters=12"],
     "--try filters=12 is outside search space 'tiny_cnn': filters: 8 | 16, default 16"),
    (["run", "--space", "tiny_cnn", "--try", "dense_units=32"],  # inactive: no dense layer
     "has no hyperparameter 'dense_units' at this point"),
    (["run", "--space", "tiny_cnn", "--try", "conv_blocks=40"],  # refused before it is built
     "--try conv_blocks=40 is outside search space 'tiny_cnn': conv_blocks: 1 .. 2"),
    (["run", "--space", "tiny_cnn", "--try", "conv_blocks=2.0"],  # no integer: Conv2D refuses it
     "--try conv_blocks=2.0 is outside search space 'tiny_cnn': conv_blocks: 1 .. 2"),
    (["run", "--space", "tiny_cnn", "--try", "filters=16.0"],
     "--try filters=16.0 is outside search space 'tiny_cnn': filters: 8 | 16"),
    (["run", "--space", "tiny_cnn", "--try", "block_dropout=0.15"],
     "--try block_dropout=0.15 is outside search space 'tiny_cnn': block_dropout: 0.0 .. 0.3 "
     "step 0.1"),
    (["report", "--top", "0"], "--top: '0' is not a whole number of at least 1"),
    (["evaluate", "--top", "-1"], "--top: '-1' is not a whole number of at least 1"),
    (["run", "--max-params", "0"], "--max-params must be at least 1"),
    (["run", "--stop-behind", "0"], "--stop-behind must be between 0 and 100 points"),
    (["run", "--max-params", "nan"], "--max-params must be at least 1"),
    (["run", "--keep-checkpoints", "0"], "--keep-checkpoints must be at least 1"),
    (["run", "--split", "even"], "invalid choice: 'even'"),
    (["splits", "--dir", "no_runs_here"], "No search under no_runs_here/"),
    (["splits", "--repeats", "0"], "--repeats must be at least 1"),
    (["run", "--gpus", ""], "--gpus '': give device numbers separated by commas"),  # was ignored
    (["run", "--gpus", "0,,1"], "--gpus '0,,1': give device numbers separated by commas"),
])
def test_usage_errors_exit_2_without_traceback(tmp_path, monkeypatch, capsys, args, message):
    """In this process, through `main(argv)`: the parser and handlers of `python -m sweep` (one
    parser: test_console_script_and_module_share_the_parser), without a new Python each."""
    monkeypatch.chdir(tmp_path)
    handler = signal.getsignal(signal.SIGINT)
    try:
        status = main(args)
    except SystemExit as e:  # argparse's own usage errors
        status = e.code
    stderr = capsys.readouterr().err
    assert signal.getsignal(signal.SIGINT) is handler  # the caller's Ctrl-C is its own again
    assert status == 2, stderr
    assert message in stderr
    assert "Traceback" not in stderr
    assert len(stderr.strip().splitlines()) <= 3
    assert list(tmp_path.iterdir()) == []  # a refused command leaves the disk as it was
    if "keras" in sys.modules:  # and Keras's dtype policy: a model built next is float32
        assert sys.modules["keras"].mixed_precision.global_policy().name == "float32"


@pytest.mark.parametrize("args, message", [
    (["run", "--space", "nope"], "Unknown search space 'nope'"),
    (["run", "--space", "./"], "Search space . is a folder: give the .py file"),
    (["run", "--space", "missing.py"], "Search space file missing.py does not exist"),
    (["run", "--time-budget", "1h30x"], "--time-budget '1h30x' is not a duration"),
    (["run", "--train-size", "30000", "--val-size", "25000"], "exceeds the 50000 training"),
    (["run", "--max-epochs", "0"], "--max-epochs must be at least 1"),
    (["run", "--tuner", "grid"], "invalid choice: 'grid'"),
    (["chief", "--port", "70000"], "--port 70000 is not a port number"),
    (["chief", "--port", "8000", "--space", "nope"], "Unknown search space 'nope'"),
])
def test_usage_errors_are_refused_before_tensorflow_loads(tmp_path, args, message):
    result = run_probed(*args, cwd=tmp_path)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert result.stdout.strip() == "[]"
    assert list(tmp_path.iterdir()) == []


def test_console_script_and_module_share_the_parser(tmp_path):
    module = run_sweep("run", "--help", cwd=tmp_path)
    assert module.returncode == 0
    for option in ("--space", "--tuner", "--max-trials", "--max-epochs", "--seed", "--project",
                   "--dir", "--data", "--fresh", "--train-size", "--val-size"):
        assert option in module.stdout
    script = Path(sys.executable).parent / "sweep"  # installed by `pip install -e .`
    installed = subprocess.run([str(script), "run", "--help"], cwd=tmp_path, capture_output=True,
                               text=True, timeout=120)
    assert installed.returncode == 0, installed.stderr
    assert installed.stdout == module.stdout  # one parser, named "sweep" either way


def test_spaces_lists_each_space_with_its_hyperparameters(tmp_path):
    result = run_sweep("spaces", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for name in ("small_cnn:", "tiny_cnn:", "large_cnn:"):
        assert name in result.stdout
    assert "    conv_blocks: 2 .. 4 step 1, default 3" in result.stdout
    assert "--space path/to/space.py" in result.stdout


def test_run_refuses_a_user_space_that_breaks_a_rule_before_training(tmp_path):
    (tmp_path / "skip.py").write_text(
        "import keras\n"
        "def build(hp, task):\n"
        "    x = keras.Input(task.input_shape)\n"
        "    a = keras.layers.Conv2D(8, 3, padding='same')(x)\n"
        "    b = keras.layers.Conv2D(8, 3, padding='same')(a)\n"
        "    y = keras.layers.Flatten()(keras.layers.Add()([a, b]))\n"
        "    m = keras.Model(x, keras.layers.Dense(task.num_classes, activation='softmax')(y))\n"
        "    m.compile(loss='categorical_crossentropy')\n"
        "    return m\n"
    )
    result = run_sweep("run", "--space", "skip.py", "--data", "/nowhere", cwd=tmp_path)
    assert result.returncode == 2
    assert ("Search space 'skip.py': layer 'add' (Add) breaks the rule: no skip or dense "
            "connections") in result.stderr
    assert "Traceback" not in result.stderr
    assert not list(tmp_path.glob("runs/skip/trial_*"))
