"""Do cheap scores predict full ones? Spearman rank correlation, before and after restarts.

    python benchmarks/rank_correlation.py --data /path/to/cifar-10-batches-py \\
        [--space small_cnn] [--configs 10] [--max-epochs 40] [--rung 4] [--dir DIR]

The same `--configs` configurations (a random search's, seed 0: the space's default point, then
random points) are trained three ways on the same split:
- full: the whole `--max-epochs` schedule (early stopping off): the score to predict;
- before: the best validation accuracy of the first `--rung` epochs of that same run, which is
  what a lowest-rung trial scored when it trained `--rung` epochs of the long schedule and
  continued from there (KerasTuner's Hyperband, and this tool's before the change);
- after: a separate run on a complete `--rung`-epoch schedule (warmup + cosine ending at its
  last epoch), what `halving`'s first rung scores now.
It prints each configuration's three scores and the Spearman correlation of before and after
with full. `--dir` keeps the two searches, so an interrupted run continues where it stopped.

The two searches are plain `sweep run` searches (projects `full` and `after` under `--dir`), so
a GPU can train them: on the device machine, `bash benchmarks/gpu_search.sh run MINUTES --space
small_cnn --tuner random --max-trials 10 --max-epochs 40 --finalists 0 --patience 40 --project
full` (and `--max-epochs 4 --patience 4 --project after`), `unpack` them into `--dir` here, and
this script resumes them, finds them done and prints the figures. At the defaults they are 440
epochs of `small_cnn`: 1 h 56 min on a 2-core EPYC with bfloat16 instructions (measured), about
10 hours on an AVX2-only one in float32 (estimated from its epoch times).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sweep.settings import SearchSettings  # noqa: E402  (TensorFlow-free; after the path)


def scores(args, directory: str, epochs: int, project: str):
    """Each configuration's trials of a random search on a schedule of `epochs`, in order."""
    from sweep import Search

    search = Search(args.space, tuner="random", project=project, directory=directory,
                    data=args.data, max_trials=args.configs, max_epochs=epochs, finalists=0,
                    patience=epochs, quiet=True)
    search.run(say=lambda line: print(f"  {project}: {line}", flush=True)
               if " done " in line else None)
    return search.trials().sort_values("trial").reset_index(drop=True), search.project_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="CIFAR-10 folder or tar.gz")
    parser.add_argument("--space", default="small_cnn")
    parser.add_argument("--configs", type=int, default=10)
    parser.add_argument("--max-epochs", type=int, default=SearchSettings.max_epochs)
    parser.add_argument("--rung", type=int, default=4, help="epochs of the lowest rung")
    parser.add_argument("--dir", help="keep the searches here (resumable)")
    args = parser.parse_args()

    import pandas as pd

    from sweep import state
    from sweep.backend import import_quietly

    import_quietly()
    with tempfile.TemporaryDirectory() as tmp:
        directory = args.dir or tmp
        full, full_dir = scores(args, directory, args.max_epochs, "full")
        after, _ = scores(args, directory, args.rung, "after")
        before = []
        for trial in full["trial"]:
            history = state.read_json(full_dir / f"trial_{trial}" / state.TRIAL_RECORD_FILE)
            before.append(max(e["val_accuracy"] for e in history["history"][: args.rung]))
    from sweep import ranking
    from sweep.reporting.report import hyperparameter_columns

    drawn = [[ranking.config_key(row.dropna().to_dict())
              for _, row in search[hyperparameter_columns(search)].iterrows()]
             for search in (full, after)]
    if drawn[0] != drawn[1]:
        sys.exit("the two searches drew different configurations: compare nothing")
    table = pd.DataFrame({"config": full["trial"], "full": full["val_accuracy"],
                          "before": before, "after": after["val_accuracy"]})
    print(f"{args.space}: {args.configs} configurations, lowest rung {args.rung} epochs, "
          f"full {args.max_epochs} epochs, 5k/5k split seed 0")
    print(table.to_string(index=False, float_format="{:.4f}".format))
    for kind in ("before", "after"):
        rho = table[kind].corr(table["full"], method="spearman")
        print(f"Spearman({kind}, full) = {rho:.3f}")


if __name__ == "__main__":
    main()
