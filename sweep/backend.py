"""The machine under Keras: its backend (TensorFlow, JAX or PyTorch) and its fastest precision.

Everything that depends on which Keras backend runs lives here, so the rest of the tool runs
unchanged under `KERAS_BACKEND=jax` or `torch`, where TensorFlow may not be installed at all (a
GPU machine with JAX or PyTorch, for example). TensorFlow stays the default and tested backend.
One exception, a speed-up other backends skip: batch normalisation on TensorFlow's fused kernel
in reduced precision (`sweep.engine.normalization`).

Precision: on CPUs with bfloat16 instructions (avx512_bf16, AMX) and on GPUs of compute
capability 8.0 or more, Keras's `mixed_bfloat16` policy trains faster for the same accuracy; on
older GPUs `mixed_float16` (Keras's `compile` adds loss scaling by itself); elsewhere float32,
because emulated bfloat16 is slower (measured on an AVX2-only CPU: see README). The classifier
layer of every built-in space computes in float32, as Keras's mixed-precision guide advises, so
the softmax, the loss and the metrics stay float32.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import socket
from pathlib import Path

PRECISIONS = ("auto", "float32", "bfloat16", "float16")
POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}
CPU_BFLOAT16_FLAGS = {"avx512_bf16", "amx_bf16"}
BFLOAT16_GPU = (8, 0)  # Ampere and newer
FLOAT16_GPU = (7, 0)  # Volta and newer: tensor cores


def import_quietly() -> None:
    """Import Keras and its backend, and find the devices, with stderr muted.

    TensorFlow's C++ side logs through absl before `TF_CPP_MIN_LOG_LEVEL` applies (CUDA probes
    on machines without a GPU, for example); a failed import still raises, after stderr is back.
    """
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import keras

        if keras.config.backend() == "tensorflow":
            import tensorflow as tf

            tf.config.list_physical_devices()
            # Each trial builds a new model, so tf.function retracing warnings are expected.
            tf.get_logger().setLevel("ERROR")
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def jax_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sweep" / "jax"


JAX_CACHE_BYTES = 4 * 2**30  # beyond it JAX deletes the least recently used entries


def cache_compiled_steps() -> None:
    """Name JAX's persistent compilation cache (`jax_cache_dir`), unless one is named already
    (`JAX_COMPILATION_CACHE_DIR`): a configuration trained again (a finalist's seeds, a rung
    of halving, a resumed trial, `evaluate`) then skips compiling its steps, which took about
    40 s of an 80-epoch trial's 70 on an H200 (four workers compiling at once). On the 2-core
    CPU (`small_cnn`, 500/500 images, a one-trial search run twice, beside a training) the
    first epoch's extra time went from about 8 s to about 3 s the second time. Done when the
    package is imported: JAX reads it when it starts (workers inherit it), and a process whose
    Keras computed anything before it was named would never use it. A damaged entry (a process
    killed while JAX wrote it) costs a warning and a compile, not the trial."""
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(jax_cache_dir()))
    if importlib.util.find_spec("filelock"):  # JAX needs it to evict, and fails without it
        os.environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(JAX_CACHE_BYTES))


def name() -> str:
    import keras

    return keras.config.backend()


def machine(precision: str) -> str:
    """Where a trial trains, as far as its speed goes: the host, the backend and the precision.
    A search resumed elsewhere (a GPU machine, say) judges its time budget by its own trials."""
    return f"{socket.gethostname()}, {name()}, {precision}"


def as_inputs(arrays: tuple) -> tuple:
    """The split as the backend's `fit` takes it fastest, made once per process.

    On TensorFlow, tensors: the training part's pipeline (`training_input`) and Keras's for the
    validation part gather their batches from them as they are; from NumPy arrays the whole
    split would first be copied into new tensors in every trial. Other backends iterate over
    NumPy arrays themselves."""
    if name() != "tensorflow":
        return arrays
    import tensorflow as tf

    return tuple(tf.constant(a) for a in arrays)


def training_input(x, y, batch_size: int, seed: int, epochs: range) -> dict:
    """`fit`'s arguments for the training part over `epochs` (a resumed fit's remaining ones),
    each epoch in an order of its own that `seed` and the epoch's number alone set.

    Keras's own shuffling of in-memory data draws from NumPy's generator under JAX, which
    `EpochSeeds` seeds from the epoch. Under TensorFlow, once `keras.utils.set_random_seed` had
    run (every trial), it drew the same order in every epoch (Keras 3.15, TensorFlow 2.21: the
    first batch of each of 3 epochs held the same images): each epoch then met the same
    batches in the same order, and nets fitted their training images faster than under JAX and
    scored lower on the validation images. On TensorFlow the tool therefore gives `fit` its own
    pipeline: each epoch's indices sorted by stateless uniforms keyed on (seed, epoch), the
    batches gathered from `x` and `y` (tensors: `as_inputs`) in a parallel map and prefetched,
    as Keras's own pipeline does; one dataset for all the epochs, `steps_per_epoch` batches
    each (Keras keeps its iterator from epoch to epoch then)."""
    if name() != "tensorflow":
        return {"x": x, "y": y, "batch_size": batch_size, "shuffle": True}
    import tensorflow as tf

    size = int(x.shape[0])

    def epoch_batches(epoch):
        keys = tf.random.stateless_uniform([size], seed=tf.stack([tf.constant(seed, tf.int64),
                                                                  epoch]))
        return tf.data.Dataset.from_tensor_slices(tf.argsort(keys)).batch(batch_size)

    batches = tf.data.Dataset.range(epochs.start, epochs.stop).flat_map(epoch_batches).map(
        lambda i: (tf.gather(x, i), tf.gather(y, i)), num_parallel_calls=tf.data.AUTOTUNE)
    return {"x": batches.prefetch(tf.data.AUTOTUNE), "shuffle": False,  # Keras's would warn
            "steps_per_epoch": -(-size // batch_size)}


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """The CPU's feature flags (Linux); empty where the kernel does not list them."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def gpu_capability() -> tuple[int, int] | None:
    """The first GPU's compute capability, as the running backend sees it; None without one."""
    backend = name()
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if not gpus:
            return None
        capability = tf.config.experimental.get_device_details(gpus[0]).get("compute_capability")
        return tuple(capability) if capability else (0, 0)
    if backend == "jax":
        import jax

        gpus = [d for d in jax.devices() if d.platform == "gpu"]
        if not gpus:
            return None
        major, _, minor = str(getattr(gpus[0], "compute_capability", "0.0")).partition(".")
        return int(major), int(minor or 0)
    if backend == "torch":
        import torch

        return torch.cuda.get_device_capability(0) if torch.cuda.is_available() else None
    return None


def auto_precision(gpu: tuple[int, int] | None, flags: set[str]) -> str:
    """The fastest precision of a machine with this GPU (or none) and these CPU flags."""
    if gpu is not None:
        if gpu >= BFLOAT16_GPU:
            return "bfloat16"
        return "float16" if gpu >= FLOAT16_GPU else "float32"
    return "bfloat16" if flags & CPU_BFLOAT16_FLAGS else "float32"


def choose_precision(requested: str) -> str:
    """The precision to train in: `requested`, or this machine's fastest for `auto` (float32,
    bfloat16 or float16)."""
    if requested == "auto":
        return auto_precision(gpu_capability(), cpu_flags())
    return requested


@contextlib.contextmanager
def building_in(precision: str):
    """Keras's global dtype policy for `precision` while a model is built, the caller's after.

    A layer takes its policy when it is made, and `compile` adds loss scaling by the model's,
    so the policy is needed only while a space builds and compiles; kept any longer, it would
    turn a notebook's own models bfloat16 behind its back."""
    import keras

    before = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(POLICIES[precision])
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(before)


def drop_in_float32(model) -> None:
    """Give every dropout layer of `model` float32 compute, whatever the model's precision.

    TensorFlow draws a bfloat16 layer's dropout mask from bfloat16 uniforms, 128 values in
    [0, 1): at rate 0.55 it kept 44.5 % of a million activations, not 45 %, and their mean
    came out 1.2 % low (0.5 % at rate 0.45, 0.5 % high at 0.65), so a net trained with dropout
    met other activations at inference than in training. In float32 the mask is exact; the
    casts on either side cost a copy of the activations (no slower step was measured: README).
    JAX draws its masks in float32 already."""
    import keras

    for layer in dropout_layers(model):
        layer.dtype_policy = keras.DTypePolicy("float32")


def dropout_layers(model) -> list:
    """`model`'s dropout layers (`SpatialDropout2D` too), at any depth of nested models."""
    import keras

    return [layer for layer in all_layers(model) if isinstance(layer, keras.layers.Dropout)]


def all_layers(layer) -> list:
    """`layer`'s layers, and theirs, at any depth."""
    inner = getattr(layer, "layers", [])
    return [found for child in inner for found in (child, *all_layers(child))]

