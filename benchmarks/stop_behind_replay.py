"""What would `--stop-behind` have stopped? Replays the rule on a finished search's records.

    python benchmarks/stop_behind_replay.py --project reference80 [--dir runs] [--points 5 7]

Each completed, fully scheduled trial, in the order the trials were made, is held against the
best trial ended before it, by the rule `run --stop-behind` applies (`sweep.engine.trial.
BehindTheBest`). Printed: the epoch it would have stopped at, its final best validation
accuracy, then per margin the trials stopped, the training minutes saved and the false
stops (a trial that ended within 2 points of the trial it was held against): choose the
smallest margin with none. Finalists
are left out, as the rule leaves them. No training: records only, a second or two.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sweep import ranking, state  # noqa: E402  (after the path)
from sweep.engine.trial import BehindTheBest  # noqa: E402

# A stopped trial that ended within this many points of the trial it was held against (or
# above it) should not have been stopped.
FALSE_STOP_POINTS = 2.0


def best_score(history: list[dict]) -> float:
    return state.best_epoch(history)["val_accuracy"]


def stop_epoch(rule: BehindTheBest, history: list[dict], epochs: int) -> int | None:
    """The 0-based epoch after which the rule stops the trial, or None."""
    return next((e["epoch"] for e in sorted(history, key=lambda e: e["epoch"])
                 if rule.reason([h for h in history if h["epoch"] <= e["epoch"]], e["epoch"],
                                epochs)), None)


def fully_scheduled(project_dir: Path) -> tuple[int, list[tuple[str, list[dict], bool]]]:
    """The search's schedule, and its completed fully scheduled trials in the order they were
    made: (trial, history, whether it is a finalist)."""
    max_epochs = state.read_json(project_dir / state.SETTINGS_FILE)["settings"]["max_epochs"]
    trials = []
    for trial_dir in sorted(project_dir.glob("trial_*")):
        trial = state.read_json(trial_dir / state.TRIAL_FILE)
        values = trial["hyperparameters"]["values"]
        history = state.read_trial_record(trial_dir)["history"]
        if (trial["status"] == state.COMPLETED and history
                and ranking.trial_epochs(values, max_epochs) >= max_epochs):
            trials.append((trial_dir.name.removeprefix("trial_"), history,
                           ranking.REPLICA_KEY in values))
    return max_epochs, trials


def replay(project_dir: Path, margin: float) -> None:
    """Print what the rule at `margin` points does to each trial, then the totals. A stop is
    false where the trial ended within FALSE_STOP_POINTS of the trial it was held against."""
    max_epochs, trials = fully_scheduled(project_dir)
    stops, false, saved = 0, [], 0.0
    total = sum(e["seconds"] for _, history, _ in trials for e in history) / 60
    for i, (trial, history, finalist) in enumerate(trials):
        if i == 0 or finalist:
            continue
        best, best_history, _ = max(trials[:i], key=lambda t: best_score(t[1]))
        stop = stop_epoch(BehindTheBest.of(margin / 100, best, best_history), history,
                          max_epochs)
        minutes = sum(e["seconds"] for e in history
                      if stop is not None and e["epoch"] > stop) / 60
        where = f"stops at epoch {stop + 1} of the {len(history)} it ran" if stop is not None \
            else "runs on"
        print(f"  trial {trial} against trial {best}: {where}; ended at "
              f"{best_score(history):.2%} (trial {best}: {best_score(best_history):.2%})")
        if stop is not None:
            stops, saved = stops + 1, saved + minutes
            if best_score(history) >= best_score(best_history) - FALSE_STOP_POINTS / 100:
                false.append(trial)
    print(f"{margin:g} points: {stops} trials stopped, {saved:.0f} of {total:.0f} training "
          f"minutes saved; false stops: {', '.join(false) or 'none'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--project", required=True)
    parser.add_argument("--dir", default="runs")
    parser.add_argument("--points", type=float, nargs="+", default=[5.0, 7.0])
    args = parser.parse_args()
    for margin in args.points:
        replay(Path(args.dir) / args.project, margin)


if __name__ == "__main__":
    main()
