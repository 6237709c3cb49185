"""How fast the tool trains a trial, against a plain `model.fit` on the same arrays.

    python benchmarks/trial_speed.py --data /path/to/cifar-10-batches-py [--epochs 5]

In one process, on the search's real split (5,000/5,000 by default), alternately:

- the tool: a real one-trial search (`sweep.search.run_search`, the space's default point,
  every per-epoch record, checkpoint and backup on) in a temporary folder, in `--precision`
  (default auto: the machine's fastest, `sweep.backend`);
- plain Keras in float32, and plain Keras in the precision the tool chose (when not float32):
  the same model (same space, same default point, same batch size and seed) built, compiled
  and fitted with `model.fit` on the same in-memory arrays, with validation;
- with `--xla`, plain Keras again with `jit_compile=True`, to see whether XLA pays here.

Each runs `--rounds` times (tool first, while TensorFlow is cold); the rounds after the first,
with everything warm, are compared, each and by their median. For each it prints training
throughput over the epochs after the first (images per second, validation included, measured
from one epoch's end to the next, so checkpointing and records count; for the tool, the
median of its own work between epochs, from its records); the first epoch's extra
time over that rate (Keras tracing its train and test steps); and the overhead outside the
epochs: build and compile before, and for the tool everything after, until the trial's end
(records, throughput latency, KerasTuner's bookkeeping). The confusion matrix's pass over the
validation images, which a trial that becomes the search's best pays after its end (this
one-trial search's only trial), is given apart, from the time it recorded. Goal (issues 7 and 15):
the tool within 5 % of plain `model.fit` in the same precision per epoch, faster than plain
float32 where the machine has a faster precision (1.6x on a CPU with bfloat16 instructions),
and a per-trial overhead of its own under 2 s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def steady(ends: list[float]) -> float:
    """Median seconds per epoch after the first (which traces), from epoch end times."""
    return statistics.median(b - a for a, b in zip(ends, ends[1:], strict=False))


def tool_trial(settings) -> dict:
    from sweep import state
    from sweep.search import run_search

    run_search(settings)  # its lines go to the unconfigured "sweep" logger: not shown
    settings.fresh = True  # the next round starts its own search
    project = settings.project_dir
    stamp = {e["event"]: datetime.fromisoformat(e["time"]).timestamp()
             for e in state.read_events(project)}
    record = state.read_json(project / "trial_0" / state.TRIAL_RECORD_FILE)
    ends = [e["ended"] for e in record["history"]]
    return {**timings(stamp["trial_start"], stamp["train_start"], ends, stamp["trial_end"]),
            "confusion": record.get("confusion_seconds", 0.0),
            "between": between_epochs(record["history"])}


def between_epochs(history: list[dict]) -> float:
    """Median seconds of the tool's own work from one epoch to the next, beyond the epoch's
    training and validation (its record, backup, best weights, early stopping): the time from
    one epoch's end to the next's, less the next epoch's own."""
    return statistics.median(b["ended"] - a["ended"] - b["seconds"]
                             for a, b in zip(history, history[1:], strict=False))


def timings(started: float, fit_started: float, ends: list[float], finished: float) -> dict:
    epoch = steady(ends)
    return {"epoch": epoch, "first_extra": ends[0] - fit_started - epoch,
            "outside": (fit_started - started) + (finished - ends[-1])}


def plain_trial(settings, data, jit_compile: bool, precision: str = "float32",
                changes: dict | None = None, fused: bool = False) -> dict:
    """A plain `model.fit` of the space's default point (with `changes` to its values), where
    `fused` with the tool's batch normalisation (`sweep.engine.normalization`)."""
    import keras

    from sweep import spaces
    from sweep.backend import POLICIES
    from sweep.engine import hypermodel, normalization
    from sweep.engine.trial import trial_seed

    keras.mixed_precision.set_global_policy(POLICIES[precision])

    space = spaces.load(settings.space)
    task = hypermodel.training_task(settings)
    hp = hypermodel.kt.HyperParameters()
    space.build(hp, task)  # an empty HyperParameters takes every default: learn the values
    hp.values.update(changes or {})
    started = time.time()
    keras.utils.set_random_seed(trial_seed(settings.seed, hp.values))  # as the tool seeds
    model = space.build(hp, task)
    if fused:
        normalization.fuse(model)
    if jit_compile:
        model.compile(optimizer=model.optimizer, loss=model.loss, metrics=["accuracy"],
                      jit_compile=True)
    ends, fit_started = [], []
    stamp = keras.callbacks.LambdaCallback(
        on_train_begin=lambda *_: fit_started.append(time.time()),
        on_epoch_end=lambda *_: ends.append(time.time()))
    model.fit(data.x_train, data.y_train, batch_size=hp.get("batch_size"),
              epochs=settings.max_epochs, validation_data=(data.x_val, data.y_val),
              shuffle=True, verbose=0, callbacks=[stamp])
    return timings(started, fit_started[0], ends, time.time())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="CIFAR-10 folder or tar.gz")
    parser.add_argument("--space", default="small_cnn")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--precision", default="auto", help="the tool's (default: auto)")
    parser.add_argument("--train-size", type=int, default=5000)
    parser.add_argument("--val-size", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--xla", action="store_true", help="also time plain Keras with XLA")
    args = parser.parse_args()

    from sweep import backend
    from sweep.search import load_split
    from sweep.settings import SearchSettings

    backend.import_quietly()
    from sweep.data import CLASS_NAMES
    from sweep.engine import trial as trial_module

    with tempfile.TemporaryDirectory() as tmp:
        settings = SearchSettings(space=args.space, tuner="random", max_trials=1,
                                  max_epochs=args.epochs, patience=args.epochs,
                                  train_size=args.train_size, val_size=args.val_size,
                                  directory=tmp, data=args.data, quiet=True,
                                  precision=args.precision)
        split, _ = load_split(settings)
        data = trial_module.TrainingData.from_split(split, len(CLASS_NAMES))
        runs = {"tool (sweep run)": lambda: tool_trial(settings),
                "plain model.fit": lambda: plain_trial(settings, data, jit_compile=False)}
        chosen = backend.choose_precision(args.precision)
        if chosen != "float32":
            runs[f"plain model.fit, {chosen}"] = lambda: plain_trial(
                settings, data, jit_compile=False, precision=chosen)
        if args.xla:
            runs["plain model.fit, XLA"] = lambda: plain_trial(settings, data, jit_compile=True)
        print(f"{args.space} default point, {args.epochs} epochs, the tool in {chosen}, "
              f"{args.train_size}/{args.val_size} split, {args.rounds} rounds", flush=True)
        rounds = []
        for round_number in range(1, args.rounds + 1):
            results = {name: run() for name, run in runs.items()}
            rounds.append(results)
            for name, r in results.items():
                rate = args.train_size / r["epoch"]
                print(f"round {round_number} {name:>22}: {r['epoch']:6.2f} s per epoch "
                      f"({rate:4.0f} train images/s), first epoch +{r['first_extra']:4.1f} s, "
                      f"outside the epochs {r['outside']:4.1f} s"
                      + (f", {1000 * r['between']:.0f} ms of its own between epochs"
                         if "between" in r else ""), flush=True)
    summarize(rounds, chosen)


def summarize(rounds: list[dict], chosen: str) -> None:
    """The ratios of each round, and their median over the warm rounds (all but the first,
    which the tool runs while TensorFlow is cold): the machines flip speed from run to run,
    so one round's ratio can be noise."""
    warm = rounds[1:] or rounds
    same_name = f"plain model.fit, {chosen}"

    def ratios(results: dict) -> dict[str, float]:
        tool, plain = results["tool (sweep run)"], results["plain model.fit"]
        same = results.get(same_name, plain)
        return {"speed-up": plain["epoch"] / tool["epoch"],
                "ceiling": plain["epoch"] / same["epoch"],
                "tool / same": tool["epoch"] / same["epoch"],
                "own": (tool["first_extra"] + tool["outside"])
                - (same["first_extra"] + same["outside"]),
                "confusion": tool["confusion"]}

    per_round = [ratios(r) for r in warm]
    median = {k: statistics.median(r[k] for r in per_round) for k in per_round[0]}
    print("per warm round: " + "; ".join(
        f"speed-up {r['speed-up']:.3f}, tool / plain {chosen} {r['tool / same']:.3f}, "
        f"own overhead {r['own']:+.1f} s" for r in per_round))
    print(f"median of {len(warm)} warm round(s): plain float32 / tool time per epoch "
          f"{median['speed-up']:.3f} (the tool's speed-up, in {chosen}; goal: 1.6x on a CPU "
          f"with bfloat16 instructions), plain float32 / plain {chosen} {median['ceiling']:.3f} "
          f"(what {chosen} itself gains here); tool / plain {chosen} "
          f"{median['tool / same']:.3f} (goal: at most 1.05); the tool's own per-trial overhead "
          f"{median['own']:+.1f} s (first epoch and outside the epochs, beyond plain Keras's in "
          f"the same precision; goal: under 2 s); after a trial that becomes the best, its "
          f"confusion matrix: a pass over the validation images ({median['confusion']:.1f} s)")


if __name__ == "__main__":
    main()
