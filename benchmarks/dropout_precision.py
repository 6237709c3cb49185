"""What float32 dropout costs and fixes in a bfloat16 model (`backend.drop_in_float32`).

    python benchmarks/dropout_precision.py [--space large_cnn] [--set name=value,...]
        [--rounds 12] [--rates 0.35,0.45,0.55,0.65]

First, dropout's mask in each dtype on this Keras backend: the share of a million activations
kept and their mean at each rate (exact: 1 - rate, and 1). Then the space's point (as
`levers.py` builds it) in bfloat16, twice: dropout in float32 (the tool's) and in bfloat16
(Keras's default under `mixed_bfloat16`), timed one training epoch of 2,560 random images in
batches of 64 each (40 steps), alternated over `--rounds`; printed: each round's ms a step and the
median ratio. No data is read: the speed of a step does not depend on the images.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from levers import configuration, point, run_or_exit  # noqa: E402

IMAGES, BATCH = 2560, 64


def mask_figures(rates: list[float]) -> None:
    import keras

    ones = keras.ops.ones((1000, 1000))
    for dtype in ("float32", "bfloat16"):
        for rate in rates:
            layer = keras.layers.Dropout(rate, dtype=dtype)
            kept = keras.ops.convert_to_numpy(
                keras.ops.cast(layer(ones, training=True), "float32"))
            print(f"dropout {rate:.2f} in {dtype:8s}: kept {(kept > 0).mean():.4f} "
                  f"(exact {1 - rate:.4f}), mean {kept.mean():.4f}", flush=True)


def step_times(space: str, changes: dict, rounds: int) -> None:
    import keras
    import numpy as np

    from sweep import backend, spaces
    from sweep.engine.hypermodel import SpaceHyperModel, training_task
    from sweep.settings import SearchSettings

    hypermodel = SpaceHyperModel(spaces.load(space), training_task(SearchSettings(space=space)),
                                 "bfloat16")
    hps = configuration(hypermodel, changes)
    rng = np.random.default_rng(0)
    x = rng.random((IMAGES, 32, 32, 3), dtype=np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, IMAGES)]
    models = {"float32": hypermodel.build(hps), "bfloat16": hypermodel.build(hps)}
    for layer in backend.dropout_layers(models["bfloat16"]):
        layer.dtype_policy = keras.DTypePolicy("mixed_bfloat16")
    for model in models.values():  # traced before timing
        model.fit(x[:2 * BATCH], y[:2 * BATCH], batch_size=BATCH, verbose=0)
    ms = {kind: [] for kind in models}
    for _ in range(rounds):
        for kind, model in models.items():
            started = time.perf_counter()
            model.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
            ms[kind].append(1000 * (time.perf_counter() - started) / (IMAGES // BATCH))
    for kind, times in ms.items():
        print(f"dropout in {kind:8s}: " + " ".join(f"{t:.0f}" for t in times) + " ms a step")
    ratios = [a / b for a, b in zip(ms["float32"], ms["bfloat16"], strict=True)]
    print(f"float32 dropout / bfloat16 dropout, median over {rounds} rounds: "
          f"{statistics.median(ratios):.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--space", default="large_cnn")
    parser.add_argument("--set", type=point, default={}, metavar="NAME=VALUE,...")
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--rates", default="0.35,0.45,0.55,0.65")
    args = parser.parse_args()
    run_or_exit(parser, measure, args)


def measure(args) -> None:
    mask_figures([float(rate) for rate in args.rates.split(",")])
    step_times(args.space, args.set, args.rounds)


if __name__ == "__main__":
    main()
