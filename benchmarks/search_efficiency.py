"""Which tuner finds the best model for the same compute: hyperband, bayesian, random.

    python benchmarks/search_efficiency.py --data /path/to/cifar-10-batches-py [--budget 6m]

Each tuner runs a real search of the same space on the same split (same seed) for the same
wall time (`--time-budget`: no trial starts that would not end in time, a running trial stops
at an epoch boundary), one after the other on an otherwise idle machine. Printed for each: the
best validation accuracy of a completed trial, trials completed, epochs trained, and the best
so far against training minutes; `--plot FILE` also draws those curves. One seed is one draw:
differences of a point or two are within the noise of a single search.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

TUNERS = ("hyperband", "bayesian", "random")


def best_so_far(project: Path) -> list[tuple[float, float]]:
    """(training minutes so far, best completed validation accuracy so far), in trial order."""
    from sweep import state
    from sweep.report import load_trials

    df = load_trials(project)
    ended = {e["trial"]: i for i, e in enumerate(state.read_events(project))
             if e["event"] == "trial_end"}
    df = df.assign(order=df["trial"].map(ended)).sort_values("order", na_position="last")
    curve, minutes, best = [], 0.0, 0.0
    for row in df.itertuples():
        minutes += row.minutes
        if row.status == "COMPLETED":
            best = max(best, row.val_accuracy)
        curve.append((minutes, best))
    return curve


def run_tuner(tuner: str, args, directory: str) -> dict:
    from sweep import Search
    from sweep.report import load_trials

    search = Search(args.space, tuner=tuner, project=tuner, directory=directory,
                    data=args.data, max_trials=1000, max_epochs=args.max_epochs,
                    train_size=args.train_size, val_size=args.val_size,
                    time_budget=args.budget, quiet=True)
    search.run(say=lambda line: None)
    df = load_trials(search.project_dir)
    completed = df[df["status"] == "COMPLETED"]
    # A Hyperband continuation's record starts with its parent's epochs: count them once.
    inherited = df["tuner/initial_epoch"].fillna(0).sum() if "tuner/initial_epoch" in df else 0
    return {"best": completed["val_accuracy"].max(), "trials": len(completed),
            "epochs": int(df["epochs"].sum() - inherited), "minutes": df["minutes"].sum(),
            "curve": best_so_far(search.project_dir)}


def plot(results: dict, path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4))
    ax = fig.add_subplot()
    for tuner, r in results.items():
        minutes, best = zip(*r["curve"], strict=True) if r["curve"] else ((), ())
        ax.step(minutes, best, where="post", label=f"{tuner} ({r['best']:.1%})")
    ax.set_xlabel("training minutes")
    ax.set_ylabel("best validation accuracy so far")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="CIFAR-10 folder or tar.gz")
    parser.add_argument("--space", default="tiny_cnn")
    parser.add_argument("--budget", default="6m", help="wall time per tuner, e.g. 6m")
    parser.add_argument("--max-epochs", type=int, default=9)
    parser.add_argument("--train-size", type=int, default=5000)
    parser.add_argument("--val-size", type=int, default=5000)
    parser.add_argument("--plot", type=Path, help="write the best-so-far curves to this PNG")
    args = parser.parse_args()

    from sweep.search import import_tensorflow_quietly

    import_tensorflow_quietly()
    print(f"{args.space}, at most {args.max_epochs} epochs a trial, {args.budget} per tuner, "
          f"{args.train_size}/{args.val_size} split, seed 0")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for tuner in TUNERS:
            r = results[tuner] = run_tuner(tuner, args, tmp)
            print(f"{tuner:>9}: best {r['best']:.4f}, {r['trials']} trials completed, "
                  f"{r['epochs']} epochs trained in {r['minutes']:.1f} min", flush=True)
            print("           best so far: " + ", ".join(
                f"{m:.1f} min {b:.3f}" for m, b in r["curve"]), flush=True)
    winner = max(results, key=lambda t: results[t]["best"])
    print(f"winner: {winner}")
    if args.plot:
        plot(results, args.plot)
        print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
