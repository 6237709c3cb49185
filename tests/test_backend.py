"""`sweep.backend`: the precision a machine gets, and the tool on a backend without TensorFlow."""

import json
import os
import subprocess
import sys
from importlib import metadata

import keras
import keras_tuner as kt
import numpy as np
import pytest

from search_spaces import small_cnn
from sweep import backend, state
from sweep.spaces import TrainingTask


@pytest.mark.parametrize("gpu, flags, expected", [
    (None, {"avx2", "fma"}, "float32"),  # this project's AVX2-only EPYC: emulated bf16 is slower
    (None, {"avx2", "avx512f", "avx512_bf16"}, "bfloat16"),
    (None, {"amx_bf16", "amx_tile"}, "bfloat16"),
    ((9, 0), set(), "bfloat16"),  # H100 / H200
    ((7, 5), {"avx512_bf16"}, "float16"),  # T4: a GPU decides, not the CPU beside it
    ((6, 1), set(), "float32"),
])
def test_auto_precision_is_the_fastest_the_machine_has(gpu, flags, expected):
    assert backend.auto_precision(gpu, flags) == expected


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512_bf16\nbugs\t\t: none\n")
    assert backend.cpu_flags(cpuinfo) == {"fpu", "avx2", "avx512_bf16"}
    assert backend.cpu_flags(tmp_path / "missing") == set()


def test_under_mixed_precision_the_classifier_and_its_output_stay_float32():
    assert backend.choose_precision("bfloat16") == "bfloat16"
    task = TrainingTask(input_shape=(32, 32, 3), num_classes=10, train_size=100, epochs=2)
    with backend.building_in("bfloat16"):
        model = small_cnn.build(kt.HyperParameters(), task)
    assert keras.mixed_precision.global_policy().name == "float32"  # only while building
    assert model.layers[0].compute_dtype == "bfloat16"
    assert model.layers[-1].compute_dtype == "float32"
    assert keras.ops.convert_to_tensor(model(keras.ops.zeros((1, 32, 32, 3)))).dtype == "float32"


def test_dropout_keeps_its_rate_exactly_in_a_bfloat16_model():
    """TensorFlow's bfloat16 dropout kept 44.5 % at rate 0.55 with a mean 1.2 % low."""
    with backend.building_in("bfloat16"):
        inner = keras.Sequential([keras.layers.Dropout(0.55)])
        inputs = keras.Input((1000,))
        model = keras.Model(inputs, inner(keras.layers.Dense(1000)(inputs)))
    backend.drop_in_float32(model)
    dropout = inner.layers[0]
    assert dropout.compute_dtype == "float32" and model.layers[1].compute_dtype == "bfloat16"
    kept = keras.ops.convert_to_numpy(inner(keras.ops.ones((1000, 1000)), training=True))
    assert abs((kept > 0).mean() - 0.45) < 0.003 and abs(kept.mean() - 1) < 0.005


def _epoch_orders(seed: int, global_seed: int = 0, epochs: int = 3,
                  first: int = 0) -> list[list[int]]:
    """The order in which a fit through `training_input` met 32 numbered images, each epoch
    from `first` (a resumed fit's)."""
    seen = []

    class Spy(keras.layers.Layer):
        def call(self, x, training=None):
            if training:
                seen.extend(keras.ops.convert_to_numpy(x[:, 0]).astype(int).tolist())
            return x

    keras.utils.set_random_seed(global_seed)  # as every trial is: Keras then repeated its order
    inputs = keras.Input((1,))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(Spy()(inputs)))
    model.compile("sgd", "categorical_crossentropy", run_eagerly=True)
    x, y = backend.as_inputs((np.arange(32, dtype="float32")[:, None],
                              np.eye(2, dtype="float32")[np.zeros(32, int)]))
    model.fit(**backend.training_input(x, y, 8, seed, range(first, epochs)), epochs=epochs,
              initial_epoch=first, verbose=0)
    return [seen[i:i + 32] for i in range(0, len(seen), 32)]


@pytest.mark.filterwarnings("error::UserWarning")  # Keras warns of a shuffle it ignores
def test_the_training_images_come_in_a_new_order_every_epoch_as_the_seed_orders():
    orders = _epoch_orders(seed=3)
    assert all(sorted(order) == list(range(32)) for order in orders)  # each image once
    assert orders[0] != orders[1] != orders[2] != orders[0]
    assert _epoch_orders(seed=3) == orders and _epoch_orders(seed=4) != orders  # its own seed
    assert _epoch_orders(seed=3, first=1) == orders[1:]  # a resumed fit: the epoch's own order


def test_a_search_from_python_leaves_the_callers_dtype_policy(tmp_path, tiny_cifar):
    import sweep

    keras.mixed_precision.set_global_policy("float32")
    search = sweep.Search("tiny_cnn", directory=tmp_path / "runs", tuner="random", max_trials=1,
                          max_epochs=1, finalists=0, train_size=100, val_size=100,
                          data=str(tiny_cifar), precision="bfloat16", quiet=True)
    search.run(say=None)
    record = state.read_json(search.project_dir / "trial_0" / state.TRIAL_RECORD_FILE)
    assert record["history"][0]["machine"].endswith("bfloat16")  # it trained in bfloat16
    computes_in = {layer["kind"]: layer["computes_in"] for layer in record["layers"]}
    assert computes_in["Conv2D"] == "bfloat16" and computes_in["Dense"] == "float32"
    assert computes_in["Dropout"] == "float32"  # its mask exact
    assert keras.mixed_precision.global_policy().name == "float32"  # and gave float32 back


@pytest.mark.cifar
def test_a_search_runs_on_jax_with_tensorflow_absent(real_cifar_train_only, tmp_path):
    """What a GPU machine with JAX and no TensorFlow does: `import tensorflow` fails there."""
    pytest.importorskip("jax")
    script = (
        "import sys, runpy; sys.modules['tensorflow'] = None; "  # any import of it now fails
        f"sys.argv = ['sweep', 'run', '--space', 'tiny_cnn', '--data', "
        f"'{real_cifar_train_only}', '--train-size', '300', '--val-size', '300', "
        "'--max-trials', '2', '--max-epochs', '2', '--precision', 'bfloat16', '-q']; "
        "runpy.run_module('sweep', run_name='__main__')"
    )
    environment = {**os.environ, "KERAS_BACKEND": "jax", "XDG_CACHE_HOME": str(tmp_path),
                   "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}  # tiny steps too
    environment.pop("JAX_COMPILATION_CACHE_DIR", None)
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, text=True,
                            capture_output=True, timeout=600, env=environment)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "jax backend in bfloat16" in result.stdout
    assert "search done: 2 completed, 0 failed" in result.stdout
    # Its compiled steps are kept for the next training of the same configuration.
    assert list((tmp_path / "sweep" / "jax").glob("jit_train_step-*"))
    project = tmp_path / "runs" / "tiny_cnn"
    record = json.loads((project / state.SETTINGS_FILE).read_text())
    assert record["versions"]["keras backend"] == "jax"
    assert record["versions"]["jax"] == metadata.version("jax") and "tensorflow" not in record[
        "versions"]  # the backend's package, not TensorFlow's
    [start] = [e for e in state.read_events(project) if e["event"] == "run_start"]
    assert (start["backend"], start["precision"]) == ("jax", "bfloat16")
    for trial in ("0", "1"):  # the trials trained in it (KerasTuner resets the policy)
        layers = json.loads((project / f"trial_{trial}" / state.TRIAL_RECORD_FILE).read_text()
                            )["layers"]
        assert layers[0]["computes_in"] == "bfloat16"
        assert layers[-1]["computes_in"] == "float32"
