"""Figures of a search: for each, a `*_data` function from its records to plain pandas data, and
a `draw_*` function from that data to a matplotlib Figure (as Optuna's `visualization` does).

The data functions need no matplotlib, so tests and other outputs read the numbers a figure
shows; the drawing functions need no search folder. Figures are made without pyplot: no GUI
backend is needed, and a notebook shows the Figure a method returns.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import cm, colormaps, colors
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from sweep import ranking, state
from sweep.data import CLASS_NAMES, split_description
from sweep.reporting import tradeoffs

CHALLENGE_BASELINE = 0.667  # the hand-tuned model's validation accuracy in the challenge
CURVES = 3  # best trials drawn in the curves figure


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


def curves_data(project_dir: Path, df: pd.DataFrame, top: int = CURVES) -> dict[str, pd.DataFrame]:
    """The per-epoch history (epoch, accuracy, val_accuracy, loss, val_loss) of the `top` best
    ranked trials that have one, best first."""
    curves = {}
    for trial_id in ranking.ranked_rows(df).head(top)["trial"]:
        path = state.trial_dir(project_dir, trial_id) / state.TRIAL_RECORD_FILE
        history = pd.DataFrame(state.read_json(path)["history"]) if path.exists() else None
        if history is not None and not history.empty:
            curves[trial_id] = history
    return curves


def draw_curves(curves: dict[str, pd.DataFrame], title: str) -> Figure | None:
    """The challenge's picture: training vs validation accuracy (and loss) per epoch; the gap
    between the curves is the overfitting."""
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
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def curves_figure(project_dir: Path, df: pd.DataFrame, top: int = CURVES) -> Figure | None:
    """The curves of the `top` best trials of the search in `project_dir`."""
    return draw_curves(curves_data(project_dir, df, top),
                       f"{project_dir.name}: training vs validation, best trials")


def progress_data(df: pd.DataFrame) -> pd.DataFrame:
    """One row per trial in the order trials ran: its best validation accuracy where it
    completed (`scored`), and the best so far (carried over failed and unfinished trials).
    Trials are placed by their number; a folder that is no trial's number (`trial_old`, copied
    in by hand) comes last."""
    ordered = df.sort_values("trial", key=lambda ids: ids.map(ranking.trial_number))
    ordered = ordered.assign(order=range(len(ordered)))
    scored = ordered["status"].eq(state.COMPLETED) & ordered["val_accuracy"].notna()
    return pd.DataFrame({
        "trial": ordered["trial"], "order": ordered["order"], "scored": scored,
        "val_accuracy": ordered["val_accuracy"].where(scored),
        "best_so_far": ordered["val_accuracy"].where(scored).cummax().ffill(),
    }).reset_index(drop=True)


def draw_progress(progress: pd.DataFrame, title: str) -> Figure | None:
    """Each trial's best validation accuracy in the order trials ran, with the best so far."""
    if progress.empty:
        return None
    fig = Figure(figsize=(7, 3.6))
    ax = fig.subplots()
    scored = progress[progress["scored"]]
    ax.scatter(scored["order"], scored["val_accuracy"], label="trial", color="tab:orange",
               zorder=3)
    failed = progress[~progress["scored"]]
    if not failed.empty:
        ax.scatter(failed["order"], [0.0] * len(failed), marker="x", color="tab:red",
                   label="failed / unfinished", zorder=3)
    ax.step(progress["order"], progress["best_so_far"], where="post", color="tab:blue",
            label="best so far")
    _finish_axes(ax, "trial (in the order they ran)", "best validation accuracy")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def progress_figure(project_dir: Path, df: pd.DataFrame) -> Figure | None:
    """The progress of the search in `project_dir`."""
    return draw_progress(progress_data(df), f"{project_dir.name}: search progress")


def effects_data(df: pd.DataFrame, columns: list[str]) -> dict[str, pd.DataFrame]:
    """For each hyperparameter that varies among the ranked trials (`tuner/*` aside), its value
    and the validation accuracy of each trial that set it."""
    completed = ranking.ranked_rows(df)
    return {column: completed[[column, "val_accuracy"]].dropna().rename(columns={column: "value"})
            for column in ranking.varying(completed, columns)}


def draw_effects(effects: dict[str, pd.DataFrame]) -> Figure | None:
    """Validation accuracy against each hyperparameter: a scatter for numbers, a box per
    choice for the rest."""
    if not effects:
        return None
    ncols = min(4, len(effects))
    nrows = -(-len(effects) // ncols)
    fig = Figure(figsize=(3.6 * ncols, 2.8 * nrows))
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False).ravel())
    for ax, (column, values) in zip(axes, effects.items(), strict=False):
        numeric = pd.api.types.is_numeric_dtype(values["value"]) and values["value"].nunique() > 4
        if numeric:
            ax.scatter(values["value"], values["val_accuracy"], color="tab:orange")
            if (values["value"] > 0).all() and values["value"].max() > 20 * values["value"].min():
                ax.set_xscale("log")
            else:
                ax.xaxis.set_major_locator(MaxNLocator(4))
        else:
            groups = {str(k): g["val_accuracy"].to_numpy()
                      for k, g in values.groupby(values["value"].astype(str))}
            ax.boxplot(list(groups.values()), tick_labels=list(groups.keys()))
        ax.set_title(column, fontsize="medium")
        ax.set_ylabel("val accuracy", fontsize="small")
        ax.grid(alpha=0.3)
    for ax in axes[len(effects):]:
        ax.set_visible(False)
    fig.suptitle("validation accuracy by hyperparameter (completed trials)")
    fig.tight_layout()
    return fig


def pareto_data(df: pd.DataFrame) -> dict[str, tuple[pd.DataFrame, pd.DataFrame]]:
    """For each cost a trial records (parameters, latency), the ranked trials that measured it
    and their Pareto front: (trial, cost, val_accuracy) each."""
    data = {}
    for cost in tradeoffs.COSTS:
        if cost not in df:
            continue
        trials = ranking.ranked_rows(df).dropna(subset=[cost])[["trial", cost, "val_accuracy"]]
        if not trials.empty:
            data[cost] = trials, tradeoffs.pareto_front(df, cost)[["trial", cost, "val_accuracy"]]
    return data


def draw_pareto(pareto: dict[str, tuple[pd.DataFrame, pd.DataFrame]]) -> Figure | None:
    """Validation accuracy against each cost; the front joins the trials nothing beats."""
    if not pareto:
        return None
    fig = Figure(figsize=(5 * len(pareto), 3.8))
    axes = fig.subplots(1, len(pareto), squeeze=False)[0]
    for ax, (cost, (trials, front)) in zip(axes, pareto.items(), strict=True):
        ax.scatter(trials[cost], trials["val_accuracy"], color="tab:orange", label="trial",
                   zorder=3)
        ax.step(front[cost], front["val_accuracy"], where="post", color="tab:blue",
                marker="o", label="Pareto front")
        for row in front.itertuples():
            ax.annotate(row.trial, (getattr(row, cost), row.val_accuracy), fontsize=7,
                        textcoords="offset points", xytext=(3, -9))
        if trials[cost].min() > 0 and trials[cost].max() > 20 * trials[cost].min():
            ax.set_xscale("log")
        ax.set_xlabel(tradeoffs.COSTS[cost])
        ax.set_ylabel("validation accuracy")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize="small")  # the front rises to the right
    fig.suptitle("accuracy against size and speed (fully trained trials)")
    fig.tight_layout()
    return fig


INACTIVE = -0.12  # where a trial without a (conditional) hyperparameter crosses its axis


@dataclass(frozen=True)
class Parallel:
    """Completed trials on parallel axes: each column's values placed in [0, 1] (INACTIVE where
    unset), the labelled ticks of each axis, and each trial's validation accuracy."""

    positions: pd.DataFrame  # trials x axes
    ticks: dict[str, list[tuple[float, str]]]
    scores: pd.Series


def _axis(values: pd.Series) -> tuple[pd.Series, list[tuple[float, str]]]:
    """Positions in [0, 1] and ticks: numbers on a (log where they span decades) scale, the
    rest (and numbers with few values) as evenly spaced choices."""
    present = values.dropna()
    if pd.api.types.is_numeric_dtype(present) and not pd.api.types.is_bool_dtype(present) \
            and present.nunique() > 4:
        log = (present > 0).all() and present.max() > 20 * present.min()
        scaled = np.log10(values.astype(float)) if log else values.astype(float)
        low, high = scaled.min(), scaled.max()
        positions = (scaled - low) / ((high - low) or 1.0)
        return positions, [(0.0, f"{present.min():.3g}"), (1.0, f"{present.max():.3g}")]
    choices = sorted(present.unique(), key=lambda v: (isinstance(v, str), v))
    spot = {v: i / max(1, len(choices) - 1) for i, v in enumerate(choices)}
    return values.map(spot), [(spot[v], f"{v:.3g}" if isinstance(v, float) else str(v))
                              for v in choices]


def _rounded(value):
    return float(f"{value:.6g}") if isinstance(value, float) else value


def parallel_data(df: pd.DataFrame, columns: list[str]) -> Parallel | None:
    """The completed trials' schedule and every hyperparameter that varies among them."""
    completed = df[df["status"].eq(state.COMPLETED) & df["val_accuracy"].notna()]
    completed = completed.map(_rounded)  # 0.30000000000000004 is 0.3
    axes = ranking.varying(completed, ["schedule", *columns])
    if len(completed) < 2 or not axes:
        return None
    positions, ticks = {}, {}
    for column in axes:
        positions[column], ticks[column] = _axis(completed[column])
    placed = pd.DataFrame(positions).fillna(INACTIVE)
    return Parallel(placed.set_axis(completed["trial"]), ticks,
                    completed["val_accuracy"].set_axis(completed["trial"]))


def draw_parallel(parallel: Parallel | None) -> Figure | None:
    """One line per completed trial across its hyperparameters' axes, coloured by validation
    accuracy, the best drawn on top."""
    if parallel is None:
        return None
    axes = list(parallel.positions.columns)
    fig = Figure(figsize=(max(7.0, 1.3 * len(axes)), 4.6))
    ax = fig.subplots()
    colours = colormaps["viridis"]
    low, high = parallel.scores.min(), parallel.scores.max()
    for trial in parallel.scores.sort_values().index:
        score = (parallel.scores[trial] - low) / ((high - low) or 1.0)
        ax.plot(range(len(axes)), parallel.positions.loc[trial], color=colours(score),
                alpha=0.8, linewidth=1.2)
    for x, column in enumerate(axes):
        ax.axvline(x, color="grey", linewidth=0.8)
        for position, label in [(INACTIVE, "inactive"), *parallel.ticks[column]]:
            ax.text(x + 0.03, position, label, fontsize=7, va="center")
    ax.set_xticks(range(len(axes)), axes, rotation=20, ha="right", fontsize=8)
    ax.set_yticks([])
    ax.set_xlim(-0.2, len(axes) - 0.4)
    ax.set_ylim(INACTIVE - 0.06, 1.06)
    scale = cm.ScalarMappable(cmap=colours, norm=colors.Normalize(low, high))
    fig.colorbar(scale, ax=ax, label="validation accuracy", fraction=0.03)
    ax.set_title("completed trials across their hyperparameters (schedule: epochs trained)")
    fig.tight_layout()
    return fig


def draw_split_study(runs: pd.DataFrame, classes: pd.DataFrame,
                     searched: float | None) -> Figure | None:
    """Left: each retraining's validation accuracy by kind of split, with the trial's score on
    the search's own split. Right: each class's accuracy against its share of the training part
    (mean over each kind's retrainings)."""
    if runs.empty:
        return None
    fig = Figure(figsize=(10, 3.8))
    spread, share = fig.subplots(1, 2)
    colours = {"random": "tab:orange", "stratified": "tab:blue"}
    for x, (kind, group) in enumerate(runs.groupby("kind", sort=False)):
        spread.scatter([x] * len(group), group["val_accuracy"], color=colours.get(kind),
                       label=f"{kind} ({len(group)})", zorder=3)
        spread.hlines(group["val_accuracy"].mean(), x - 0.25, x + 0.25, color=colours.get(kind))
    if searched is not None:
        spread.axhline(searched, color="grey", linestyle=":", label="the search's split")
    spread.set_xticks(range(runs["kind"].nunique()), list(runs["kind"].unique()))
    spread.set_xlim(-0.6, runs["kind"].nunique() - 0.4)
    spread.set_ylabel("best validation accuracy")
    spread.grid(alpha=0.3)
    spread.legend(fontsize="small")
    for kind, group in classes.groupby("kind", sort=False):
        share.scatter(group["train_share"] * 100, group["accuracy"], color=colours.get(kind),
                      label=kind)
        for name, x, y in zip(group["class"], group["train_share"] * 100, group["accuracy"],
                              strict=True):
            share.annotate(name, (x, y), fontsize=6, textcoords="offset points", xytext=(3, 2))
    share.set_xlabel("class share of the training part (%)")
    share.set_ylabel("class accuracy (validation)")
    share.grid(alpha=0.3)
    share.legend(fontsize="small")
    fig.suptitle("the same configuration retrained on other splits")
    fig.tight_layout()
    return fig


def split_data(record: dict) -> pd.DataFrame:
    """Images of each class (rows, in CIFAR-10's order) in the training and validation parts of
    the split that `record` (the search's sweep.json) describes."""
    split = record["split"]
    return pd.DataFrame({"train": [split["train_class_counts"][c] for c in CLASS_NAMES],
                         "val": [split["val_class_counts"][c] for c in CLASS_NAMES]},
                        index=pd.Index(CLASS_NAMES, name="class"))


def draw_split(counts: pd.DataFrame, split: dict) -> Figure:
    """Class counts of the training and validation parts: how uneven the random split is."""
    x = np.arange(len(counts))
    fig = Figure(figsize=(9, 3.4))
    ax = fig.subplots()
    train, val = counts["train"], counts["val"]
    ax.bar(x - 0.2, train, width=0.4, label=f"training ({train.sum()})", color="tab:blue")
    ax.bar(x + 0.2, val, width=0.4, label=f"validation ({val.sum()})", color="tab:orange")
    ax.axhline(train.mean(), color="tab:blue", linestyle=":", linewidth=1)
    ax.set_xticks(x, counts.index, rotation=30)
    ax.set_ylabel("images")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize="small")
    ax.set_title(f"class counts of the split (seed {split['seed']}; {split_description(split)})")
    fig.tight_layout()
    return fig


def confusion_data(confusion: list[list[int]]) -> pd.DataFrame:
    """A trial's recorded confusion matrix, true classes as rows and predicted as columns."""
    return pd.DataFrame(confusion, index=pd.Index(CLASS_NAMES, name="true"),
                        columns=pd.Index(CLASS_NAMES, name="predicted"))


def per_class_accuracy(matrix: pd.DataFrame) -> pd.DataFrame:
    """Validation images and accuracy of each class, from a confusion matrix."""
    images = matrix.sum(axis=1)
    return pd.DataFrame({"class": matrix.index, "validation images": images.to_numpy(),
                         "accuracy": np.diag(matrix) / images.clip(lower=1).to_numpy()})


def draw_confusion(matrix: pd.DataFrame, trial_id: str) -> Figure:
    """Confusion matrix of a trial's best epoch on the validation images."""
    counts = matrix.to_numpy()
    fig = Figure(figsize=(6.4, 5.6))
    ax = fig.subplots()
    image = ax.imshow(counts, cmap="Blues")
    for (i, j), count in np.ndenumerate(counts):
        ax.text(j, i, str(count), ha="center", va="center", fontsize=7,
                color="white" if count > counts.max() / 2 else "black")
    ax.set_xticks(range(len(matrix.columns)), matrix.columns, rotation=45, ha="right")
    ax.set_yticks(range(len(matrix.index)), matrix.index)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(f"trial {trial_id}: confusion on the validation images")
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    return fig
