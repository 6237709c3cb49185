"""Does a lever pay? One configuration of a space, trained on its whole schedule with several seeds.

    python benchmarks/levers.py --data /path/to/cifar-10-batches-py [--space small_cnn]
        [--set name=value,...] [--seeds 2] [--first-seed 0] [--max-epochs 40]
        [--precision auto] [--dir DIR]

The space's default point, with `--set` changing some of its hyperparameters (to any value,
inside the space's ranges or not: a lever is measured before a space offers it), is trained on
the search's split (5k/5k, seed 0), schedule (`--max-epochs`, early stopping as `run`'s) and
precision (`auto`, or `--precision`: the same seed in two precisions shows what the faster
one costs in accuracy), once per training seed. Printed: each seed's best validation accuracy and
the training accuracy of that epoch, then the mean +- std. Compare two runs of this script (or
a run with the default point's finalists in a search's report): on 5,000 validation images a
single score moves by about 0.65 points from seed to seed, so decide on means. With `--dir`,
each seed's result is kept in DIR/levers.jsonl and a seed already there is not trained again.
Seed k is the seed a search with `--seed k` gives its trial of the same configuration: seed 0
repeats a search's own trial (search seed 0), so against such a trial count from seed 1 (a
rerun of one seed is not a second seed: README, "Reproducible"): `--first-seed 1` does.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sweep.backend import PRECISIONS  # noqa: E402  (TensorFlow-free; after the path)
from sweep.cli import count  # noqa: E402
from sweep.errors import SweepError  # noqa: E402
from sweep.settings import SearchSettings, parse_point  # noqa: E402

RESULTS_FILE = "levers.jsonl"


def point(text: str) -> dict:
    try:
        return parse_point(text)
    except SweepError as e:
        raise argparse.ArgumentTypeError(str(e).replace("--try", "--set")) from None


def key_slug(key: dict) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]


def configuration(hypermodel, changes: dict):
    """The space's default point with `changes` applied, to any value (`build_point`); a name
    the build does not make active is an error."""
    from sweep.engine.hypermodel import active_entries, build_point

    try:
        hps, _ = build_point(hypermodel.space, hypermodel.task, changes)
    except Exception as e:  # noqa: BLE001 - a value out of a space's ranges may break a build
        raise SweepError(f"--set: {hypermodel.space.name} cannot build this point "
                         f"({type(e).__name__}); a value far outside the space's ranges may "
                         f"make no model.") from None
    active = sorted(active_entries(hps))
    unknown = sorted(set(changes) - set(active))
    if unknown:
        raise SweepError(f"--set {', '.join(unknown)}: not a hyperparameter of "
                         f"{hypermodel.space.name} with these values ({', '.join(active)}).")
    return hps


def same_measurement(recorded: dict, key: dict) -> bool:
    """Whether a kept result measured `key`: the precision it trained in (the one `auto`
    chose, not the argument) counts, so a result from another machine is not reused; results
    kept before the precision was recorded are taken as this machine's. Results kept before
    dropout computed in float32 (`backend.drop_in_float32`), before TensorFlow's training
    order changed every epoch (`backend.training_input`), or before the Keras backend was
    recorded, do not count: they are trained again (a JAX run in the same folder would
    otherwise take TensorFlow's scores, and resume from its backups)."""
    return {**recorded, "precision": recorded.get("precision", key["precision"])} == key


def train_seed(hypermodel, hps, data, seed: int, settings, folder: Path) -> dict:
    """One training of the configuration, on its whole schedule, from training seed `seed`."""
    from sweep import ranking
    from sweep.engine import trial as trial_module

    model, best = trial_module.train_again(
        hypermodel, hps, seed=seed, name=f"seed {seed}", folder=folder, data=data,
        epochs=ranking.trial_epochs(hps.values, settings.max_epochs),
        patience=settings.patience, quiet=True)
    trial_module.discard_backup(folder)
    return {"seed": seed, "val_accuracy": best["val_accuracy"],
            "train_accuracy": best["accuracy"], "params": int(model.count_params())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="CIFAR-10 folder or tar.gz")
    parser.add_argument("--space", default="small_cnn")
    parser.add_argument("--set", type=point, default={}, metavar="NAME=VALUE,...",
                        help="hyperparameters changed from the default point")
    parser.add_argument("--seeds", type=count, default=2, help="how many seeds to train")
    parser.add_argument("--first-seed", type=int, default=0,
                        help="the first of them (1: leave out a search's own trial seed)")
    parser.add_argument("--max-epochs", type=int, default=SearchSettings.max_epochs)
    parser.add_argument("--precision", default="auto", choices=PRECISIONS,
                        help="as run's (default: auto, the machine's fastest)")
    parser.add_argument("--dir", help="keep each seed's result here (resumable)")
    args = parser.parse_args()

    run_or_exit(parser, measure, args)


def run_or_exit(parser: argparse.ArgumentParser, measure, args) -> None:
    """`measure(args)`, Keras imported quietly; an expected mistake (a bad --set, no data) exits
    with status 2 and its message, no traceback."""
    from sweep import backend

    backend.import_quietly()
    try:
        measure(args)
    except SweepError as e:
        parser.exit(2, f"{parser.prog}: {e}\n")


def measure(args) -> None:
    from sweep import backend, spaces, state
    from sweep.data import CLASS_NAMES
    from sweep.engine.hypermodel import SpaceHyperModel, training_task
    from sweep.engine.trial import TrainingData
    from sweep.search import load_split

    settings = SearchSettings(space=args.space, max_epochs=args.max_epochs, data=args.data,
                              precision=args.precision)
    precision = backend.choose_precision(settings.precision)
    hypermodel = SpaceHyperModel(spaces.load(settings.space), training_task(settings), precision)
    hps = configuration(hypermodel, args.set)
    split, _ = load_split(settings)
    data = TrainingData.from_split(split, len(CLASS_NAMES))
    changed = ", ".join(f"{k}={v}" for k, v in args.set.items()) or "none"
    print(f"{settings.space}'s default point, changed: {changed}; {settings.max_epochs} epochs, "
          f"{precision} on {backend.name()}, split seed {settings.seed}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(args.dir or tmp)
        directory.mkdir(parents=True, exist_ok=True)
        key = {"space": settings.space, "set": args.set, "epochs": settings.max_epochs,
               "precision": precision, "dropout": "float32", "order": "new every epoch",
               "backend": backend.name()}
        done = {r["seed"]: r for r in state.read_lines(directory / RESULTS_FILE)
                if same_measurement(r["key"], key)}
        results = []
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            if seed not in done:
                # One folder per configuration and seed: a stopped training resumes in it.
                folder = directory / f"{key_slug(key)}-seed{seed}"
                folder.mkdir(exist_ok=True)
                done[seed] = {"key": key, **train_seed(hypermodel, hps, data, seed, settings,
                                                       folder)}
                state.append_line(directory / RESULTS_FILE, done[seed])
            results.append(done[seed])
            print(f"  seed {seed}: val {done[seed]['val_accuracy']:.4f}, "
                  f"train {done[seed]['train_accuracy']:.4f}", flush=True)
    scores = [r["val_accuracy"] for r in results]
    spread = statistics.stdev(scores) if len(scores) > 1 else float("nan")
    print(f"mean {statistics.mean(scores):.4f} +- {spread:.4f} over {len(scores)} seeds "
          f"({results[0]['params']:,} parameters)")


if __name__ == "__main__":
    main()
