"""The split study's results (`python -m sweep splits`), summarised: how much validation accuracy
moves with the split, random against stratified, and how each class's accuracy follows its share
of the training part. Pandas only."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from sweep import state

# What each line of `splits.jsonl` holds (`split_study.retrain`), read by the study's summaries.
RETRAINING_KEYS = ("trial", "kind", "seed", "val_accuracy", "train_accuracy", "class_accuracy",
                   "train_class_counts")


def load(project_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The study read once: one row per retraining (trial, kind, seed, val_accuracy,
    train_accuracy), and each class's accuracy and training share (`per_class`)."""
    retrainings = _retrainings(project_dir)
    columns = ["trial", "kind", "seed", "val_accuracy", "train_accuracy"]
    runs = pd.DataFrame([{c: r[c] for c in columns} for r in retrainings], columns=columns)
    return runs, per_class(retrainings)


def _retrainings(project_dir: Path) -> list[dict]:
    """Each retraining once: two studies run at the same time may both record one."""
    first = {}
    for run in state.read_lines(project_dir / state.SPLITS_FILE, RETRAINING_KEYS):
        first.setdefault((run["trial"], run["kind"], run["seed"]), run)
    return list(first.values())


def by_kind(runs: pd.DataFrame) -> pd.DataFrame:
    """Validation accuracy mean +- std over the retrainings of each trial on each kind."""
    grouped = runs.groupby(["trial", "kind"])["val_accuracy"]
    return pd.DataFrame({"runs": grouped.size(), "val_mean": grouped.mean(),
                         "val_std": grouped.std(ddof=1)}).reset_index()


def per_class(retrainings: list[dict]) -> pd.DataFrame:
    """Each class's accuracy and its share of the training part, mean over each kind's runs."""
    rows = []
    for run in retrainings:
        total = sum(run["train_class_counts"].values())
        for name, accuracy in run["class_accuracy"].items():
            rows.append({"trial": run["trial"], "kind": run["kind"], "class": name,
                         "train_share": run["train_class_counts"][name] / total,
                         "accuracy": accuracy})
    table = pd.DataFrame(rows, columns=["trial", "kind", "class", "train_share", "accuracy"])
    return table.groupby(["trial", "kind", "class"], sort=False).mean().reset_index()
