"""Best fully trained model against compute: the default search against the former default.

    python benchmarks/search_quality.py --data /path/to/cifar-10-batches-py [--plot FILE]
        [--space small_cnn] [--max-trials 12] [--max-epochs 40] [--tuners halving hyperband]

Each tuner runs a real search of the same space on the same split (seed 0), one after the
other, in one process: `halving` (the default: successive halving with restarts, then
finalists) and `hyperband` cut at `--max-trials` (the former default, now restarting promoted
trials on their own schedules, with no finalists, as it was run then). Printed for each, in the
order its trials ended: training minutes so far (wall time of the epochs on this machine) and
the best validation accuracy of a *fully trained* model so far (a schedule of `--max-epochs`;
screening trials do not count), then the winner's mean +- std where it has several seeds.
`--plot FILE` draws the curves. One search is one draw: a point or two is noise.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sweep.settings import SearchSettings  # noqa: E402  (TensorFlow-free; after the path)

DEFAULTS = SearchSettings()

TUNERS = ("halving", "hyperband")


def best_fully_trained_so_far(project: Path) -> list[tuple[float, float]]:
    """(training minutes so far, best fully trained validation accuracy so far), trial by
    trial in the order they ended; nan until the first fully trained trial ends."""
    import pandas as pd

    from sweep import state
    from sweep.reporting.report import load_trials

    df = load_trials(project)
    ended = {e["trial"]: i for i, e in enumerate(state.read_events(project))
             if e["event"] == "trial_end"}
    df = df.assign(order=df["trial"].map(ended)).sort_values("order", na_position="last")
    curve, minutes, best = [], 0.0, float("nan")
    for row in df.itertuples():
        minutes += row.minutes
        if pd.notna(row.rank):  # fully trained: `sweep.ranking`'s rule
            best = row.val_accuracy if math.isnan(best) else max(best, row.val_accuracy)
        curve.append((minutes, best))
    return curve


def run_tuner(tuner: str, args, directory: str) -> dict:
    from sweep import Search

    search = Search(args.space, tuner=tuner, project=tuner, directory=directory,
                    data=args.data, max_trials=args.max_trials, max_epochs=args.max_epochs,
                    finalists=args.finalists if tuner == "halving" else 0,
                    train_size=args.train_size, val_size=args.val_size, quiet=True)
    search.run(say=lambda line: None)
    trials = search.trials()
    return {"best": search.best(), "epochs": int(trials["epochs"].sum()),
            "minutes": trials["minutes"].sum(),
            "curve": best_fully_trained_so_far(search.project_dir)}


def plot(results: dict, path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4))
    ax = fig.add_subplot()
    for tuner, r in results.items():
        minutes, best = zip(*r["curve"], strict=True) if r["curve"] else ((), ())
        ax.step(minutes, best, where="post", label=f"{tuner} ({r['best']['val_accuracy']:.1%})")
    ax.set_xlabel("training minutes (wall time of the epochs)")
    ax.set_ylabel("best fully trained validation accuracy")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="CIFAR-10 folder or tar.gz")
    parser.add_argument("--space", default="small_cnn")
    parser.add_argument("--tuners", nargs="+", default=list(TUNERS), choices=TUNERS)
    parser.add_argument("--max-trials", type=int, default=DEFAULTS.max_trials)
    parser.add_argument("--max-epochs", type=int, default=DEFAULTS.max_epochs)
    parser.add_argument("--finalists", type=int, default=DEFAULTS.finalists)
    parser.add_argument("--train-size", type=int, default=DEFAULTS.train_size)
    parser.add_argument("--val-size", type=int, default=DEFAULTS.val_size)
    parser.add_argument("--dir", help="keep the searches here (resumable) instead of a temp dir")
    parser.add_argument("--plot", type=Path, help="write the curves to this PNG")
    args = parser.parse_args()

    from sweep.backend import import_quietly

    import_quietly()
    print(f"{args.space}, {args.max_trials} trials of at most {args.max_epochs} epochs, "
          f"{args.train_size}/{args.val_size} split, seed 0")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for tuner in args.tuners:
            r = results[tuner] = run_tuner(tuner, args, args.dir or tmp)
            best = r["best"]
            seeds = (f", mean {best['val_mean']:.4f} +- {best['val_std']:.4f} of "
                     f"{best['seeds']} seeds" if best["seeds"] > 1 else "")
            print(f"{tuner:>9}: best fully trained {best['val_accuracy']:.4f} (trial "
                  f"{best['trial']}{seeds}), {r['epochs']} epochs in {r['minutes']:.1f} min",
                  flush=True)
            print("           best so far: " + ", ".join(
                f"{m:.1f} min {b:.3f}" for m, b in r["curve"]), flush=True)
    # The same statistic for both: the best single fully trained run (the mean of a finalist's
    # seeds is the better estimate of its accuracy, but hyperband's winner has one seed).
    winner = max(results, key=lambda t: results[t]["best"]["val_accuracy"])
    print(f"winner (best fully trained run): {winner}")
    if args.plot:
        plot(results, args.plot)
        print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
