"""Best fully trained model against compute: the default search against the former default.

    python benchmarks/search_quality.py --data /path/to/cifar-10-batches-py [--plot FILE]
        [--space small_cnn] [--max-trials 12] [--hyperband-trials 20] [--max-epochs 40]
        [--tuners halving hyperband] [--dir DIR]

Each tuner runs a real search of the same space on the same split (seed 0), one after the
other, in one process: `halving` (the default: successive halving with restarts, then
finalists, `--max-trials`) and `hyperband` cut at `--hyperband-trials` (the former default:
20 trials, no finalists, as it was run then; promoted trials now restart on their own
schedules). Printed for each, in the order its trials ended: training minutes so far (wall time
of the epochs on this machine) and the best validation accuracy of a *fully trained* model so
far (a schedule of `--max-epochs`; screening trials do not count), then the winner's mean +-
std where it has several seeds; a search that trained no model fully says so, with its best
screening score. `--plot FILE` draws the curves (dotted: the best of any trial, screening
included, so a search that trained nothing fully still shows what it found). One search is one
draw: a point or two is noise. With `--dir`, a search already there (the default command's,
say) is resumed, not trained again.
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


def best_so_far(project: Path) -> list[tuple[float, float, float]]:
    """(training minutes so far, best fully trained validation accuracy so far, best of any
    trial so far), trial by trial in the order they ended; the fully trained one is nan until
    the first fully trained trial ends."""
    import numpy as np
    import pandas as pd

    from sweep import state
    from sweep.reporting.report import load_trials

    df = load_trials(project)
    ended = {e["trial"]: i for i, e in enumerate(state.read_events(project))
             if e["event"] == "trial_end"}
    df = df.assign(order=df["trial"].map(ended)).sort_values("order", na_position="last")
    curve, minutes, best, best_any = [], 0.0, float("nan"), float("nan")
    for row in df.itertuples():
        minutes += row.minutes
        if pd.notna(row.rank):  # fully trained: `sweep.ranking`'s rule
            best = row.val_accuracy if math.isnan(best) else max(best, row.val_accuracy)
        best_any = np.fmax(best_any, row.val_accuracy)
        curve.append((minutes, best, best_any))
    return curve


def run_tuner(tuner: str, args, directory: str) -> dict:
    from sweep import Search
    from sweep.errors import SweepError

    halving = tuner == "halving"
    search = Search(args.space, tuner=tuner, project=tuner, directory=directory,
                    data=args.data, max_epochs=args.max_epochs,
                    max_trials=args.max_trials if halving else args.hyperband_trials,
                    finalists=args.finalists if halving else 0,
                    train_size=args.train_size, val_size=args.val_size, quiet=True)
    search.run(say=lambda line: None)
    trials = search.trials()
    try:
        best = search.best()
    except SweepError:  # no model trained on the whole schedule
        best = None
    return {"best": best, "epochs": int(trials["epochs"].sum()),
            "minutes": trials["minutes"].sum(), "screening": trials["val_accuracy"].max(),
            "curve": best_so_far(search.project_dir)}


def outcome(r: dict) -> str:
    best = r["best"]
    if best is None:
        return f"no model fully trained (best screening score {r['screening']:.4f})"
    seeds = (f", mean {best['val_mean']:.4f} +- {best['val_std']:.4f} of {best['seeds']} seeds"
             if best["seeds"] > 1 else "")
    return f"best fully trained {best['val_accuracy']:.4f} (trial {best['trial']}{seeds})"


def plot(results: dict, path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4))
    ax = fig.add_subplot()
    for tuner, r in results.items():
        minutes, best, best_any = zip(*r["curve"], strict=True) if r["curve"] else ((),) * 3
        score = f"{r['best']['val_accuracy']:.1%}" if r["best"] else "none"
        line, = ax.step(minutes, best, where="post", label=f"{tuner}: fully trained ({score})")
        ax.step(minutes, best_any, where="post", linestyle=":", color=line.get_color(),
                label=f"{tuner}: any trial, screening included")
    ax.set_xlabel("training minutes (wall time of the epochs)")
    ax.set_ylabel("best validation accuracy so far")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="CIFAR-10 folder or tar.gz")
    parser.add_argument("--space", default="small_cnn")
    parser.add_argument("--tuners", nargs="+", default=list(TUNERS), choices=TUNERS)
    parser.add_argument("--max-trials", type=int, default=DEFAULTS.max_trials,
                        help="halving's (default: run's)")
    parser.add_argument("--hyperband-trials", type=int, default=20,
                        help="where hyperband is cut (default: the former default's 20)")
    parser.add_argument("--max-epochs", type=int, default=DEFAULTS.max_epochs)
    parser.add_argument("--finalists", type=int, default=DEFAULTS.finalists)
    parser.add_argument("--train-size", type=int, default=DEFAULTS.train_size)
    parser.add_argument("--val-size", type=int, default=DEFAULTS.val_size)
    parser.add_argument("--dir", help="keep the searches here (resumable) instead of a temp dir")
    parser.add_argument("--plot", type=Path, help="write the curves to this PNG")
    args = parser.parse_args()

    from sweep.backend import import_quietly

    import_quietly()
    print(f"{args.space}, at most {args.max_epochs} epochs a trial (halving: {args.max_trials} "
          f"trials, hyperband: {args.hyperband_trials}), {args.train_size}/{args.val_size} "
          "split, seed 0")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for tuner in args.tuners:
            r = results[tuner] = run_tuner(tuner, args, args.dir or tmp)
            print(f"{tuner:>9}: {outcome(r)}, {r['epochs']} epochs in {r['minutes']:.1f} min",
                  flush=True)
            print("           best fully trained so far: " + ", ".join(
                f"{m:.1f} min {b:.3f}" for m, b, _ in r["curve"]), flush=True)
    # The same statistic for both: the best single fully trained run (the mean of a finalist's
    # seeds is the better estimate of its accuracy, but hyperband's winner has one seed).
    trained = [t for t in results if results[t]["best"]]
    winner = max(trained, key=lambda t: results[t]["best"]["val_accuracy"], default="none")
    print(f"winner (best fully trained run): {winner}")
    if args.plot:
        plot(results, args.plot)
        print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
