"""How far a bfloat16 model's gradients are from float32's, on this Keras backend.

    python benchmarks/gradient_precision.py --data PATH [--space large_cnn]
        [--set name=value,...] [--weights FILE] [--batches 4]

The space's point (as `levers.py` builds it) twice, in float32 and in bfloat16, with the same
weights (`--weights`: a trial's `checkpoint.weights.h5` of that configuration; else the seed-0
initial ones), dropout off (its masks are drawn per dtype) and BatchNorm in training mode; the
gradient of the cross-entropy on `--batches` batches of 64 of the split's training images.
Printed: each batch's loss in both and the cosine between the whole gradients, then each
kernel's relative error (|g_bf16 - g_f32| / |g_f32|, mean over the batches) and their median.
Run it once per backend (`KERAS_BACKEND=jax`) to see whether one computes bfloat16 closer to
float32 than the other.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from levers import configuration, point, run_or_exit  # noqa: E402

BATCH = 64


def build(hypermodel, hps, weights: str | None):
    import keras

    from sweep import backend

    keras.utils.set_random_seed(0)
    model = hypermodel.build(hps)
    if weights:
        model.optimizer.build(model.trainable_variables)  # the checkpoint holds its state too
        model.load_weights(weights)
    for layer in backend.dropout_layers(model):
        layer.rate = 0.0
    return model


def gradients(model, x, y) -> tuple[list, float]:
    import keras
    import numpy as np

    def loss_of(predictions):
        return keras.ops.mean(keras.losses.categorical_crossentropy(y, predictions))

    if keras.backend.backend() == "jax":
        import jax

        trainable = [v.value for v in model.trainable_variables]
        fixed = [v.value for v in model.non_trainable_variables]
        loss, grads = jax.value_and_grad(
            lambda t: loss_of(model.stateless_call(t, fixed, x, training=True)[0]))(trainable)
    else:
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = loss_of(model(x, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
    return [np.asarray(g, np.float32) for g in grads], float(loss)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="CIFAR-10 folder or tar.gz")
    parser.add_argument("--space", default="large_cnn")
    parser.add_argument("--set", type=point, default={}, metavar="NAME=VALUE,...")
    parser.add_argument("--weights", help="a checkpoint of this configuration")
    parser.add_argument("--batches", type=int, default=4)
    args = parser.parse_args()
    if args.weights and not Path(args.weights).is_file():
        parser.error(f"--weights {args.weights}: no such file")
    run_or_exit(parser, compare, args)


def compare(args) -> None:
    import keras
    import numpy as np

    from sweep import spaces
    from sweep.engine.hypermodel import SpaceHyperModel, training_task
    from sweep.search import load_split
    from sweep.settings import SearchSettings

    settings = SearchSettings(space=args.space, data=args.data)
    split, _ = load_split(settings)
    models = {}
    for precision in ("float32", "bfloat16"):
        hypermodel = SpaceHyperModel(spaces.load(args.space), training_task(settings), precision)
        models[precision] = build(hypermodel, configuration(hypermodel, args.set), args.weights)
    names = [v.path for v in models["float32"].trainable_variables]
    errors = {name: [] for name in names if "kernel" in name}
    for b in range(args.batches):
        x = split.x_train[b * BATCH:(b + 1) * BATCH]
        y = np.eye(10, dtype=np.float32)[split.y_train[b * BATCH:(b + 1) * BATCH]]
        (exact, exact_loss), (rounded, rounded_loss) = (
            gradients(models[p], x, y) for p in ("float32", "bfloat16"))
        for name, g32, g16 in zip(names, exact, rounded, strict=True):
            if name in errors:
                errors[name].append(np.linalg.norm(g16 - g32) / np.linalg.norm(g32))
        a, c = (np.concatenate([g.ravel() for g in gs]) for gs in (exact, rounded))
        print(f"batch {b}: loss {exact_loss:.4f} (float32) {rounded_loss:.4f} (bfloat16), "
              f"cosine {a @ c / np.linalg.norm(a) / np.linalg.norm(c):.5f}")
    for name, values in errors.items():
        print(f"  {name:50s} relative error {np.mean(values):.4f}")
    print(f"{keras.backend.backend()}: median relative error over the kernels "
          f"{np.median([np.mean(v) for v in errors.values()]):.4f}")


if __name__ == "__main__":
    main()
