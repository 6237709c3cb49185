"""Figures of a search, each a function from its records to a matplotlib Figure (or None).

Figures are made without pyplot: no GUI backend is needed, and a notebook shows the Figure a
method returns.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from sweep import ranking, state
from sweep.data import CLASS_NAMES

CHALLENGE_BASELINE = 0.667  # the hand-tuned model's validation accuracy in the challenge
CURVES = 3  # best trials drawn in the curves figure


def histories(project_dir: Path, trial_ids: list[str]) -> dict[str, pd.DataFrame]:
    out = {}
    for trial_id in trial_ids:
        path = state.trial_dir(project_dir, trial_id) / state.TRIAL_RECORD_FILE
        if path.exists():
            out[trial_id] = pd.DataFrame(state.read_json(path)["history"])
    return out


def _finish_axes(ax, xlabel: str, ylabel: str, accuracy: bool = True) -> None:
    """Integer steps on x, labels, grid and legend; accuracy axes get 0-1 and the baseline."""
    if accuracy:
        ax.axhline(CHALLENGE_BASELINE, color="grey", linestyle=":", label="challenge 66.7 %")
        ax.set_ylim(0, 1)
    ax.set_xlabel(xlabel)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right" if accuracy else "upper right", fontsize="small")


def curves_figure(project_dir: Path, df: pd.DataFrame, top: int = CURVES) -> Figure | None:
    """The challenge's picture: training vs validation accuracy (and loss) per epoch of the
    best trials; the gap between the curves is the overfitting."""
    ranked = ranking.ranked_rows(df).head(top)
    curves = {k: v for k, v in histories(project_dir, list(ranked["trial"])).items()
              if not v.empty}
    if not curves:
        return None
    fig = Figure(figsize=(4.5 * len(curves), 6.4))
    axes = fig.subplots(2, len(curves), squeeze=False)
    for column, (trial_id, history) in enumerate(curves.items()):
        epochs = history["epoch"] + 1
        accuracy, loss = axes[0][column], axes[1][column]
        accuracy.plot(epochs, history["accuracy"], label="training", color="tab:blue")
        accuracy.plot(epochs, history["val_accuracy"], label="validation", color="tab:orange")
        gap = history["accuracy"].iloc[-1] - history["val_accuracy"].iloc[-1]
        accuracy.set_title(f"trial {trial_id}: val {history['val_accuracy'].max():.1%}, "
                           f"gap {gap * 100:.0f} points")
        _finish_axes(accuracy, "epoch", "accuracy")
        loss.plot(epochs, history["loss"], label="training", color="tab:blue")
        if "val_loss" in history:
            loss.plot(epochs, history["val_loss"], label="validation", color="tab:orange")
        _finish_axes(loss, "epoch", "loss", accuracy=False)
    fig.suptitle(f"{project_dir.name}: training vs validation, best trials")
    fig.tight_layout()
    return fig


def progress_figure(project_dir: Path, df: pd.DataFrame) -> Figure | None:
    """Each trial's best validation accuracy in the order trials ran, with the best so far."""
    if df.empty:
        return None
    ordered = df.assign(order=df["trial"].astype(int)).sort_values("order")
    scored = ordered["status"].eq(state.COMPLETED) & ordered["val_accuracy"].notna()
    fig = Figure(figsize=(7, 3.6))
    ax = fig.subplots()
    ax.scatter(ordered["order"][scored], ordered["val_accuracy"][scored], label="trial",
               color="tab:orange", zorder=3)
    failed = ~scored
    if failed.any():
        ax.scatter(ordered["order"][failed], [0.0] * int(failed.sum()), marker="x",
                   color="tab:red", label="failed / unfinished", zorder=3)
    best = ordered["val_accuracy"].where(scored).cummax().ffill()  # no gap at a failure
    ax.step(ordered["order"], best, where="post", color="tab:blue", label="best so far")
    _finish_axes(ax, "trial (in the order they ran)", "best validation accuracy")
    ax.set_title(f"{project_dir.name}: search progress")
    fig.tight_layout()
    return fig


def effects_figure(df: pd.DataFrame, columns: list[str]) -> Figure | None:
    """Validation accuracy against each hyperparameter: a scatter for numbers, a box per
    choice for the rest."""
    completed = ranking.ranked_rows(df)
    columns = [c for c in columns
               if not c.startswith("tuner/") and completed[c].dropna().astype(str).nunique() > 1]
    if completed.empty or not columns:
        return None
    ncols = min(4, len(columns))
    nrows = -(-len(columns) // ncols)
    fig = Figure(figsize=(3.6 * ncols, 2.8 * nrows))
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False).ravel())
    for ax, column in zip(axes, columns, strict=False):
        values = completed[[column, "val_accuracy"]].dropna()
        numeric = pd.api.types.is_numeric_dtype(values[column]) and values[column].nunique() > 4
        if numeric:
            ax.scatter(values[column], values["val_accuracy"], color="tab:orange")
            if (values[column] > 0).all() and values[column].max() > 20 * values[column].min():
                ax.set_xscale("log")
            else:
                ax.xaxis.set_major_locator(MaxNLocator(4))
        else:
            groups = {str(k): g["val_accuracy"].to_numpy()
                      for k, g in values.groupby(values[column].astype(str))}
            ax.boxplot(list(groups.values()), tick_labels=list(groups.keys()))
        ax.set_title(column, fontsize="medium")
        ax.set_ylabel("val accuracy", fontsize="small")
        ax.grid(alpha=0.3)
    for ax in axes[len(columns):]:
        ax.set_visible(False)
    fig.suptitle("validation accuracy by hyperparameter (completed trials)")
    fig.tight_layout()
    return fig


def split_figure(record: dict) -> Figure:
    """Class counts of the training and validation parts: how uneven the random split is."""
    split = record["split"]
    train = [split["train_class_counts"][c] for c in CLASS_NAMES]
    val = [split["val_class_counts"][c] for c in CLASS_NAMES]
    x = np.arange(len(CLASS_NAMES))
    fig = Figure(figsize=(9, 3.4))
    ax = fig.subplots()
    ax.bar(x - 0.2, train, width=0.4, label=f"training ({sum(train)})", color="tab:blue")
    ax.bar(x + 0.2, val, width=0.4, label=f"validation ({sum(val)})", color="tab:orange")
    ax.axhline(sum(train) / len(train), color="tab:blue", linestyle=":", linewidth=1)
    ax.set_xticks(x, CLASS_NAMES, rotation=30)
    ax.set_ylabel("images")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize="small")
    ax.set_title(f"class counts of the split (seed {split['seed']}; not stratified)")
    fig.tight_layout()
    return fig


def confusion_figure(confusion: list[list[int]], trial_id: str) -> Figure:
    """Confusion matrix of a trial's best epoch on the validation images."""
    matrix = np.asarray(confusion)
    fig = Figure(figsize=(6.4, 5.6))
    ax = fig.subplots()
    image = ax.imshow(matrix, cmap="Blues")
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, str(count), ha="center", va="center", fontsize=7,
                color="white" if count > matrix.max() / 2 else "black")
    ax.set_xticks(range(len(CLASS_NAMES)), CLASS_NAMES, rotation=45, ha="right")
    ax.set_yticks(range(len(CLASS_NAMES)), CLASS_NAMES)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(f"trial {trial_id}: confusion on the validation images")
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    return fig
