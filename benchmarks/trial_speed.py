"""How fast the tool trains a trial, against a plain `model.fit` on the same arrays.

    python benchmarks/trial_speed.py --data /path/to/cifar-10-batches-py [--epochs 5]

In one process, on the search's real split (5,000/5,000 by default):

1. the tool: a real one-trial search (`sweep.search.run_search`, the space's default point,
   every per-epoch record, checkpoint and backup on) in a temporary folder;
2. plain Keras: the same model (same space, same default point, same batch size) built,
   compiled and fitted with `model.fit` on the same in-memory arrays, with validation;
3. plain Keras again with XLA (`jit_compile=True`), to see whether XLA pays on this machine.

The tool runs first, while TensorFlow is cold, so any warm-up favours plain Keras. For each it
prints training throughput over the epochs after the first (images per second, validation
included, measured from one epoch's end to the next so checkpointing counts), and the per-trial
overhead: the trial's wall time minus its epochs at that steady rate (build, compile, first-step
tracing, the end-of-trial work). Goal (issue 7): the tool within 5 % of plain `model.fit` per
epoch, and its overhead under 3 s more than plain Keras's.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def steady(ends: list[float]) -> float:
    """Median seconds per epoch after the first (which traces), from epoch end times."""
    return statistics.median(b - a for a, b in zip(ends, ends[1:], strict=False))


def tool_trial(settings) -> dict:
    from sweep import state
    from sweep.search import run_search

    run_search(settings, say=lambda line: None)
    project = settings.project_dir
    events = state.read_events(project)
    stamp = {e["event"]: datetime.fromisoformat(e["time"]).timestamp() for e in events
             if e["event"] in ("trial_start", "trial_end")}
    history = state.read_json(project / "trial_0" / state.TRIAL_RECORD_FILE)["history"]
    return {"wall": stamp["trial_end"] - stamp["trial_start"],
            "epoch": steady([e["ended"] for e in history]), "epochs": len(history)}


def plain_trial(settings, data, jit_compile: bool) -> dict:
    import keras

    from sweep import spaces, tuning
    from sweep.trial import trial_seed

    space = spaces.load(settings.space)
    task = tuning.training_task(settings)
    hp = tuning.kt.HyperParameters()
    space.build(hp, task)  # an empty HyperParameters takes every default: learn the values
    started = time.time()
    keras.utils.set_random_seed(trial_seed(settings.seed, hp.values))  # as the tool seeds
    model = space.build(hp, task)
    if jit_compile:
        model.compile(optimizer=model.optimizer, loss=model.loss, metrics=["accuracy"],
                      jit_compile=True)
    ends = []
    stamp = keras.callbacks.LambdaCallback(on_epoch_end=lambda *_: ends.append(time.time()))
    model.fit(data.x_train, data.y_train, batch_size=hp.get("batch_size"),
              epochs=settings.max_epochs, validation_data=(data.x_val, data.y_val),
              shuffle=True, verbose=0, callbacks=[stamp])
    return {"wall": time.time() - started, "epoch": steady(ends), "epochs": len(ends)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="CIFAR-10 folder or tar.gz")
    parser.add_argument("--space", default="small_cnn")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--train-size", type=int, default=5000)
    parser.add_argument("--val-size", type=int, default=5000)
    args = parser.parse_args()

    from sweep.search import SearchSettings, import_tensorflow_quietly, load_split

    import_tensorflow_quietly()
    from sweep import trial as trial_module
    from sweep.data import CLASS_NAMES

    with tempfile.TemporaryDirectory() as tmp:
        settings = SearchSettings(space=args.space, tuner="random", max_trials=1,
                                  max_epochs=args.epochs, patience=args.epochs,
                                  train_size=args.train_size, val_size=args.val_size,
                                  directory=tmp, data=args.data, quiet=True)
        results = {"tool (sweep run)": tool_trial(settings)}
        split, _ = load_split(settings)
        data = trial_module.TrainingData.from_split(split, len(CLASS_NAMES))
        results["plain model.fit"] = plain_trial(settings, data, jit_compile=False)
        results["plain model.fit, XLA"] = plain_trial(settings, data, jit_compile=True)

    print(f"{args.space} default point, {args.epochs} epochs, "
          f"{args.train_size}/{args.val_size} split")
    for name, r in results.items():
        rate = args.train_size / r["epoch"]
        overhead = r["wall"] - r["epochs"] * r["epoch"]
        r["overhead"] = overhead
        print(f"{name:>22}: {r['epoch']:6.2f} s per epoch ({rate:6.0f} train images/s), "
              f"trial {r['wall']:6.1f} s, overhead {overhead:5.1f} s")
    tool, plain = results["tool (sweep run)"], results["plain model.fit"]
    print(f"tool / plain time per epoch: {tool['epoch'] / plain['epoch']:.3f} "
          f"(goal: at most 1.05)")
    print(f"tool overhead beyond plain Keras's: {tool['overhead'] - plain['overhead']:+.1f} s "
          f"per trial (goal: under 3 s)")


if __name__ == "__main__":
    main()
