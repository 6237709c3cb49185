"""Where does bfloat16's gain go? Plain Keras epochs of a space's default point in float32 and
in the machine's fastest precision, with and without batch normalisation, alternating.

    python benchmarks/precision_layers.py --data /path/to/cifar-10-batches-py [--space small_cnn]
        [--epochs 3] [--rounds 2] [--train-size 1000] [--val-size 1000]

Keras 3 computes `BatchNormalization` in float32 under a mixed policy (it casts its bfloat16
input up, normalises, and casts the result back): if the faster precision gains much more over
float32 without batch normalisation than with it, batch normalisation is what holds the
precision back on this machine (issue 15: plain bfloat16 Keras is short of 1.6x plain float32
on `small_cnn`'s default point). A third variant swaps in the tool's own layer, the same
computation on TensorFlow's fused kernel in the input's dtype (`sweep.engine.normalization`,
which the tool uses in reduced precision; float32 keeps Keras's layer). Printed: each fit's steady
seconds per epoch (`trial_speed.plain_trial`, same split and seed), then, for each variant,
float32's epoch over the faster precision's, per round and their median.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# name: (changes to the default point, whether the tool's fused layer is swapped in)
VARIANTS = {"with Keras's batch normalisation": ({}, False),
            "without": ({"batch_norm": False}, False),
            "with the tool's (fused kernel)": ({}, True)}
NAME_WIDTH = max(map(len, VARIANTS))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="CIFAR-10 folder or tar.gz")
    parser.add_argument("--space", default="small_cnn")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--train-size", type=int, default=1000)
    parser.add_argument("--val-size", type=int, default=1000)
    args = parser.parse_args()

    from sweep import backend

    backend.import_quietly()
    from trial_speed import plain_trial

    from sweep.data import CLASS_NAMES
    from sweep.engine.trial import TrainingData
    from sweep.search import load_split
    from sweep.settings import SearchSettings

    faster = backend.choose_precision("auto")
    with tempfile.TemporaryDirectory() as tmp:
        settings = SearchSettings(space=args.space, max_epochs=args.epochs, directory=tmp,
                                  train_size=args.train_size, val_size=args.val_size,
                                  data=args.data, quiet=True)
        split, _ = load_split(settings)
        data = TrainingData.from_split(split, len(CLASS_NAMES))
        print(f"{args.space} default point, plain model.fit, {args.epochs} epochs, "
              f"{args.train_size}/{args.val_size} split, float32 against {faster}", flush=True)
        gains = {name: [] for name in VARIANTS}
        for round_number in range(1, args.rounds + 1):
            for name, (changes, fused) in VARIANTS.items():
                epochs = {precision: plain_trial(settings, data, jit_compile=False,
                                                 precision=precision, changes=changes,
                                                 fused=fused)["epoch"]
                          for precision in ("float32", faster)}
                gains[name].append(epochs["float32"] / epochs[faster])
                print(f"round {round_number} {name:>{NAME_WIDTH}}: "
                      f"float32 {epochs['float32']:6.2f} s, "
                      f"{faster} {epochs[faster]:6.2f} s an epoch: {gains[name][-1]:.3f}x",
                      flush=True)
    for name, ratios in gains.items():
        print(f"{name}: {faster} gains {statistics.median(ratios):.3f}x over float32 (median "
              f"of {len(ratios)} rounds: {', '.join(f'{r:.3f}' for r in ratios)})")


if __name__ == "__main__":
    main()
