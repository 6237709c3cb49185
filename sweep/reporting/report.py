"""Read a search's records from disk and rank its trials; never trains, never writes the search.

Reports are plain functions from the files of a search (KerasTuner's `trial.json`, our
`record.json` and `sweep.json`) to a DataFrame, text and figures, so `report` can run beside a
search in progress without disturbing it.
"""

from __future__ import annotations

import io
import json
import math
import os
import socket
from pathlib import Path

import pandas as pd

from sweep import data as data_module
from sweep import ranking, state
from sweep.distributed import cluster
from sweep.errors import SweepError
from sweep.reporting import figures, splits, tradeoffs, webpage
from sweep.reporting.figures import CHALLENGE_BASELINE, CURVES

LATENCIES = list(state.LATENCY_KEYS.values())
SUMMARY_COLUMNS = ["rank", "trial", "val_accuracy", "val_mean", "val_std", "seeds",
                   "train_accuracy", "test_accuracy", "best_epoch", "epochs", "schedule", "params",
                   *LATENCIES, "minutes", "status", "worker"]
# Columns the ranking shows only when filled in: finalists' seeds, evaluations, latencies (a
# search older than their measurement has none), workers.
SHOWN_WHEN_SET = ("val_mean", "val_std", "seeds", "test_accuracy", state.LATENCY_KEYS[1],
                  "worker")
FILE_ONLY = (state.LATENCY_KEYS[256],)  # in trials.csv, not in the ranking people read


def find_project(directory: str | os.PathLike, project: str | None) -> Path:
    """The search folder to report on: `--project`, or the only search under `--dir` (searches
    `--fresh` moved aside are not counted: they are named with `--project`)."""
    directory = Path(directory)
    if project:
        path = directory / project
        if not (path / state.SETTINGS_FILE).is_file():
            raise SweepError(
                f"No search at {path}. Start one with: python -m sweep run --project {project}"
            )
        return path
    found = sorted(p.parent for p in directory.glob(f"*/{state.SETTINGS_FILE}")
                   if state.SET_ASIDE_MARK not in p.parent.name)
    if not found:
        raise SweepError(f"No search under {directory}/. Start one with: python -m sweep run")
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise SweepError(
            f"Several searches under {directory}/ ({names}): choose one with --project."
        )
    return found[0]


def search_is_running(project_dir: Path) -> bool:
    """Whether the last holder of the search's lock still runs (the lock is not taken).

    On its own machine the kernel says whether the lock is held (a process id alone could
    have been reused); elsewhere its heartbeat, which only a chief writes, by being recent
    (`cluster.process_alive`): a `run` on another machine therefore shows as not running."""
    holder = state.lock_holder(project_dir)
    if holder is None:
        return False
    host, pid = holder
    if host == socket.gethostname():
        return state.lock_is_held(project_dir)
    chief = cluster.read_heartbeat(cluster.chief_path(project_dir))
    beat = chief if chief and (chief["host"], chief["pid"]) == holder else None
    return cluster.process_alive(host, pid, beat, cluster.STALE_AFTER)


def _trial_row(trial_dir: Path, running: bool) -> dict:
    """A trial's row; an `UNREADABLE` one, saying why, where its files cannot be read or do not
    hold what KerasTuner and `sweep` write (edited by hand, or damaged), so that the other
    trials still rank."""
    try:
        return _read_trial_row(trial_dir, running)
    except SweepError as e:
        reason = str(e)
    except (KeyError, TypeError, AttributeError) as e:
        reason = (f"{trial_dir}'s {state.TRIAL_FILE} or {state.TRIAL_RECORD_FILE} is not as "
                  f"written by a search ({type(e).__name__}: {e})")
    return {"trial": trial_dir.name.removeprefix("trial_"), "status": state.UNREADABLE,
            "reason": reason}


def _read_trial_row(trial_dir: Path, running: bool) -> dict:
    trial = state.read_json(trial_dir / state.TRIAL_FILE)
    record_path = trial_dir / state.TRIAL_RECORD_FILE
    record = state.read_json(record_path) if record_path.exists() else {"history": []}
    history = record["history"]
    best = state.best_epoch(history) or {}
    status = trial["status"]
    if status in (state.RUNNING, state.IDLE):
        status = state.RUNNING if running else state.INTERRUPTED
    return {
        "trial": trial["trial_id"],
        "status": status,
        "val_accuracy": best.get("val_accuracy", math.nan),
        "train_accuracy": best.get("accuracy", math.nan),
        "best_epoch": best["epoch"] + 1 if best else math.nan,
        "epochs": len(history),
        "params": record.get("params", math.nan),
        **{latency: record.get(latency, math.nan) for latency in LATENCIES},
        "minutes": record.get("train_seconds", 0.0) / 60,
        "worker": record.get("worker"),  # set in a distributed search
        "reason": (state.failure_reason(trial.get("message"))
                   if status in state.FAILED_STATES else ""),
        **trial["hyperparameters"]["values"],
    }


def skipped_configurations(project_dir: Path) -> int:
    """Configurations never trained because their model was over --max-params."""
    return len({ranking.config_key(e["values"]) for e in state.read_events(project_dir)
                if e["event"] == state.SKIPPED_EVENT and "values" in e})


def stopped_behind(project_dir: Path) -> int:
    """Trials `--stop-behind` stopped (a trial stopped, then resumed, counts once)."""
    return len({e["trial"] for e in state.read_events(project_dir)
                if e["event"] == state.BEHIND_EVENT and "trial" in e})


def latest_evaluations(project_dir: Path) -> dict[str, dict]:
    """The last explicit test-set evaluation of each evaluated trial (`sweep evaluate`)."""
    return {e["trial"]: e for e in state.read_lines(project_dir / state.EVALUATIONS_FILE,
                                                         ("trial",))}


def load_trials(project_dir: Path) -> pd.DataFrame:
    """One row per trial, ranked by best validation accuracy (trials without one last).

    `test_accuracy` is set only for trials evaluated on the test images by `sweep evaluate`.
    """
    running = search_is_running(project_dir)
    rows = [_trial_row(d, running) for d in state.trial_dirs(project_dir)]
    df = pd.DataFrame(rows, columns=None if rows else SUMMARY_COLUMNS)
    if df.empty:
        return df
    # Every column a ranking reads, even where no trial could be read.
    df = df.reindex(columns=[*df.columns, *(c for c in SUMMARY_COLUMNS if c not in df.columns)])
    evaluated = latest_evaluations(project_dir)
    df["test_accuracy"] = [evaluated.get(t, {}).get("test_accuracy", math.nan) for t in df["trial"]]
    max_epochs = state.read_search_record(project_dir)["settings"]["max_epochs"]
    values = [_values(row) for _, row in df.iterrows()]
    df["schedule"] = [ranking.trial_epochs(v, max_epochs) for v in values]
    runs = [ranking.Run(row["trial"], v, row["status"] == state.COMPLETED, row["val_accuracy"])
            for v, (_, row) in zip(values, df.iterrows(), strict=True)]
    ranked = {r.run.trial: r for r in ranking.rank(runs, max_epochs)}
    df["rank"] = pd.array([ranked[t].rank if t in ranked else None for t in df["trial"]],
                          dtype="Int64")
    # Mean and spread only where a configuration has more than one fully trained seed.
    several = {t: r for t, r in ranked.items() if r.seeds > 1}
    df["seeds"] = pd.array([several[t].seeds if t in several else None for t in df["trial"]],
                           dtype="Int64")
    df["val_mean"] = [several[t].mean if t in several else math.nan for t in df["trial"]]
    df["val_std"] = [several[t].std if t in several else math.nan for t in df["trial"]]
    # Then screening trials, best first; then failed and unfinished ones, by number.
    screening = df["val_accuracy"].where(df["status"].eq(state.COMPLETED))
    df = (df.assign(_screening=-screening, _made=range(len(df)))  # rows come in trial order
          .sort_values(["rank", "_screening", "_made"], na_position="last")
          .drop(columns=["_screening", "_made"]).reset_index(drop=True))
    return df[[*SUMMARY_COLUMNS, *[c for c in df.columns if c not in SUMMARY_COLUMNS]]]


def _values(row: pd.Series) -> dict:
    """A row's hyperparameter values, as the trial recorded them."""
    return {k: row[k] for k in row.index if k not in SUMMARY_COLUMNS and k != "reason"
            and not (isinstance(row[k], float) and math.isnan(row[k]))}


def hyperparameter_columns(df: pd.DataFrame) -> list[str]:
    return [c for c in df.columns if c not in (*SUMMARY_COLUMNS, "reason")]


def space_default_point(project_dir: Path) -> dict:
    """The search space's default point, from the newest readable trial.json (KerasTuner adds
    conditional hyperparameters to the space as trials first meet them)."""
    for trial_dir in reversed(state.trial_dirs(project_dir)):
        try:
            config = state.read_json(trial_dir / state.TRIAL_FILE)["hyperparameters"]
        except (SweepError, KeyError, TypeError):
            continue
        return ranking.default_point(config.get("space", []))
    return {}


def page_ranking(df: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    """The ranking as the page shows it: `table`'s summary columns, then one column for each
    hyperparameter that varies among the trials, instead of one cell of text."""
    varying = ranking.varying(df, hyperparameter_columns(df))
    return pd.concat([table.drop(columns="hyperparameters"), df[varying]], axis=1)


def ranking_table(df: pd.DataFrame, defaults: dict) -> pd.DataFrame:
    """The ranked trials as shown to people: summary columns, then in one cell what each
    configuration changes from the space's default point (`defaults`); every value is in
    trials.csv. The test accuracy column appears once a trial has been evaluated, the worker
    column in a distributed search."""
    summary = [c for c in SUMMARY_COLUMNS if c not in FILE_ONLY
               and (c not in SHOWN_WHEN_SET or df[c].notna().any())]
    shown = df[summary].copy()
    shown["hyperparameters"] = [
        row["reason"] if row["status"] == state.UNREADABLE
        else ranking.format_values(_values(row), defaults) for _, row in df.iterrows()
    ]
    failed = df["reason"].fillna("").ne("")
    shown.loc[failed, "hyperparameters"] = "failed: " + df.loc[failed, "reason"]
    return shown


def headline(project_dir: Path, df: pd.DataFrame, record: dict) -> str:
    s, split = record["settings"], record["split"]
    lines = [
        f"search {project_dir.name} ({project_dir}): space {s['space']}, tuner {s['tuner']}, "
        f"split seed {split['seed']} ({split['train_size']} train / {split['val_size']} val, "
        f"indices {split['indices_sha256'][:12]}, data {split['data_sha256'][:12]})",
    ]
    counts = df["status"].value_counts().to_dict() if not df.empty else {}
    skipped = skipped_configurations(project_dir)
    behind = stopped_behind(project_dir)
    lines.append("trials: " + (", ".join(f"{n} {k.lower()}" for k, n in counts.items()) or "none")
                 + (f"; {skipped} configurations skipped before training, over --max-params "
                    f"{s['max_params']:g}" if skipped else "")
                 + (f"; {behind} stopped far behind the best (--stop-behind)" if behind else ""))
    ranked = ranking.ranked_rows(df)
    if not ranked.empty:
        top = ranked.iloc[0]
        margin = (top["val_accuracy"] - CHALLENGE_BASELINE) * 100
        seeds = (f"; its configuration {top['val_mean']:.2%} +- {top['val_std']:.2%} over "
                 f"{top['seeds']} seeds" if not pd.isna(top["seeds"]) else "")
        lines.append(
            f"best: trial {top['trial']} at {top['val_accuracy']:.2%} validation accuracy "
            f"({margin:+.1f} points vs the challenge's {CHALLENGE_BASELINE:.1%}), "
            f"train {top['train_accuracy']:.2%}{seeds}"
        )
    elif not df.empty and df["status"].eq(state.COMPLETED).any():
        short = df[df["status"].eq(state.COMPLETED)].iloc[0]
        lines.append(
            f"no fully trained model yet: the best screening trial, {short['trial']}, reached "
            f"{short['val_accuracy']:.2%} on a {short['schedule']}-epoch schedule "
            f"(of {s['max_epochs']}); run the search's command again to continue it"
        )
    evaluated = df[df["test_accuracy"].notna()] if not df.empty else df
    if not evaluated.empty:
        scores = ", ".join(
            f"trial {row.trial} {row.test_accuracy:.2%}" for row in evaluated.itertuples()
        )
        lines.append(f"test accuracy (explicitly evaluated on the test images): {scores}")
    return "\n".join(lines)


def _png(fig) -> bytes | None:
    """The figure as PNG, rendered once for both its file and the page."""
    if fig is None:
        return None
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


MIN_HYPERPARAMETER_WIDTH = 16
# A terminal's headers: short, so that the hyperparameters keep room (files keep the long ones).
SHORT_HEADERS = {"val_accuracy": "val_acc", "train_accuracy": "train_acc", "test_accuracy":
                 "test_acc", "val_mean": "mean", "val_std": "std", "best_epoch": "best",
                 state.LATENCY_KEYS[1]: "ms"}


COUNTS = ("rank", "seeds", "best_epoch", "epochs", "schedule", "params")


def _counts_as_integers(table: pd.DataFrame) -> pd.DataFrame:
    """Counts shown as integers, blank where missing: a trial that has not finished an epoch
    makes pandas hold a count column as floats (37.0000), and `na_rep` does not reach
    integer columns that have missing values (<NA>)."""
    counts = [c for c in COUNTS if c in table.columns]
    return table.astype({c: object for c in counts}).assign(**{
        c: [int(v) if pd.notna(v) else "" for v in table[c]] for c in counts})


def _left_aligned_text(table: pd.DataFrame, width: int | None = None) -> str:
    """The table as text, hyperparameters left-aligned; with a terminal `width`, each row's
    hyperparameters are cut to fit it (all of them are in trials.csv and `--format csv`)."""
    table = _counts_as_integers(table).rename(columns=SHORT_HEADERS)
    text = _render(table)
    longest = max(map(len, text.splitlines()))
    if not width or longest <= width:
        return text
    cells = table["hyperparameters"]
    room = max(MIN_HYPERPARAMETER_WIDTH, int(cells.str.len().max()) - (longest - width))
    table = table.assign(hyperparameters=[c if len(c) <= room else c[:room - 1] + "…"
                                          for c in cells])
    return _render(table) + f"\n(hyperparameters cut to {width} columns: all in trials.csv)"


def _render(table: pd.DataFrame) -> str:
    cell = int(table["hyperparameters"].str.len().max())
    return table.to_string(
        index=False,
        na_rep="",
        float_format="{:.4f}".format,
        formatters={"hyperparameters": lambda text: f"{text:<{cell}}", "minutes": "{:.1f}".format,
                    "ms": lambda v: "" if pd.isna(v) else f"{v:.2f}"},
    )


FORMATS = ("table", "markdown", "csv", "json", "html")
MIN_TRIALS_FOR_IMPORTANCE = 5


def hyperparameter_importance(df: pd.DataFrame) -> pd.DataFrame | None:
    """How much each hyperparameter explains validation accuracy across completed trials: a
    random forest's impurity importance (scikit-learn), choices one-hot encoded and summed back."""
    from sklearn.ensemble import RandomForestRegressor

    completed = ranking.ranked_rows(df)
    columns = [c for c in hyperparameter_columns(df) if not c.startswith("tuner/")]
    if len(completed) < MIN_TRIALS_FOR_IMPORTANCE or not columns:
        return None
    features = pd.get_dummies(completed[columns].astype(object).fillna("inactive"),
                              prefix_sep="=").astype(float)
    forest = RandomForestRegressor(n_estimators=300, random_state=0)
    forest.fit(features, completed["val_accuracy"])
    by_column = pd.Series(forest.feature_importances_, index=features.columns)
    owner = [name.split("=", 1)[0] for name in features.columns]
    totals = by_column.groupby(owner).sum().sort_values(ascending=False)
    return pd.DataFrame({"hyperparameter": totals.index, "importance": totals.to_numpy()})


def _as_json(project_dir: Path, df: pd.DataFrame, record: dict) -> str:
    return json.dumps({
        "search": project_dir.name,
        "settings": record["settings"],
        "split": {k: v for k, v in record["split"].items() if k != "normalization"},
        "versions": record.get("versions", {}),
        "challenge_baseline": CHALLENGE_BASELINE,
        "trials": json.loads(df.to_json(orient="records")),
    }, indent=1)


def best_record(project_dir: Path, df: pd.DataFrame) -> tuple[str, dict] | None:
    """The best completed trial's id and its record (history, layers, confusion)."""
    ranked = ranking.ranked_rows(df)
    if ranked.empty:
        return None
    trial_id = ranked.iloc[0]["trial"]
    path = state.trial_dir(project_dir, trial_id) / state.TRIAL_RECORD_FILE
    return trial_id, state.read_json(path)


def _split_study_figure(df: pd.DataFrame, runs: pd.DataFrame, classes: pd.DataFrame):
    if runs.empty:
        return None
    scores = df.set_index("trial")["val_accuracy"]
    studied = runs["trial"].iloc[-1]  # the trial studied last
    return figures.draw_split_study(runs[runs["trial"] == studied],
                                    classes.query("trial == @studied"), scores.get(studied))


def split_study_tables(runs: pd.DataFrame,
                       classes: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """The split study's summary by kind and its per-class table (None before any run), from
    `splits.load`."""
    if runs.empty:
        return None
    wide = classes.pivot_table(index=["trial", "class"], columns="kind",
                               values=["train_share", "accuracy"], sort=False)
    wide.columns = [f"{value} ({kind})" for value, kind in wide.columns]
    return splits.by_kind(runs), wide.reset_index()


def make_figures(project_dir: Path, df: pd.DataFrame, top: int | None, record: dict,
                 study: tuple[pd.DataFrame, pd.DataFrame]) -> dict:
    """Every figure of the report, by file name (None where there is nothing to draw yet);
    `study` is the split study as `splits.load` reads it."""
    best = best_record(project_dir, df)
    return {
        "curves.png": figures.curves_figure(project_dir, df, min(top or CURVES, CURVES)),
        "progress.png": figures.progress_figure(project_dir, df),
        "effects.png": figures.draw_effects(figures.effects_data(df, hyperparameter_columns(df))),
        "parallel.png": figures.draw_parallel(
            figures.parallel_data(df, hyperparameter_columns(df)) if not df.empty else None),
        "pareto.png": figures.draw_pareto(figures.pareto_data(df)),
        "split_study.png": _split_study_figure(df, *study),
        "split.png": figures.draw_split(figures.split_data(record), record["split"]),
        "confusion.png": (figures.draw_confusion(figures.confusion_data(best[1]["confusion"]),
                                                 best[0])
                          if best and best[1].get("confusion") else None),
    }


CAPTIONS = {
    "curves.png": "training vs validation accuracy and loss, best trials",
    "progress.png": "search progress",
    "effects.png": "validation accuracy by hyperparameter",
    "parallel.png": "completed trials across their hyperparameters",
    "pareto.png": "accuracy against size and speed",
    "split.png": "class counts of the split",
    "split_study.png": "the same configuration retrained on other splits",
    "confusion.png": "best trial: confusion on the validation images",
}


def _split_line(record: dict) -> str:
    counts = figures.split_data(record)
    parts = []
    for part in ("train", "val"):
        low, high = counts[part].idxmin(), counts[part].idxmax()
        parts.append(f"{part} {counts[part][low]} ({low}) to {counts[part][high]} ({high}) "
                     "images a class")
    return f"split ({data_module.split_description(record['split'])}): " + "; ".join(parts)


def write_report(
    project_dir: Path, output: Path, top: int | None = None, fmt: str = "table",
    width: int | None = None, limits: dict[str, float] | None = None,
) -> tuple[str, list[Path]]:
    """The report in `fmt` (the `top` best trials, or all; a table fits `width` columns when
    given) and the files written; `limits` (cost -> maximum, `tradeoffs.COSTS`) names the best
    trial within them. `csv` and `json` are data for other tools: they are printed
    only, with nothing fitted, drawn or written. The formats for people (`table`, `markdown`,
    `html`) also write trials.csv (all trials), summary.md, report.html and the figures as PNG
    under `output`."""
    if fmt not in FORMATS:
        raise SweepError(f"Unknown report format {fmt!r}. Choose one of: {', '.join(FORMATS)}.")
    tradeoffs.check_limits(limits or {})
    df = load_trials(project_dir)
    record = state.read_search_record(project_dir)
    if limits and fmt in ("csv", "json"):
        raise SweepError("--max-params and --max-latency name a trial in the summary: use them "
                         "with --format table, markdown or html.")
    if fmt in ("csv", "json"):
        shown = df.head(top) if top else df  # ranked, best first
        text = shown.to_csv(index=False) if fmt == "csv" else _as_json(project_dir, shown, record)
        return text, []
    return _write_people_report(project_dir, output, df, record, top, fmt, width, limits or {})


def _summary_lines(project_dir: Path, df: pd.DataFrame, record: dict,
                   importance: pd.DataFrame | None, limits: dict[str, float]) -> str:
    """The headline, the best trial within `limits` if any, the split's class counts and the
    three most important hyperparameters."""
    lines = [headline(project_dir, df, record)]
    if limits:
        lines.append(tradeoffs.limits_line(df, limits))
    lines.append(_split_line(record))
    if importance is not None:
        leaders = importance.head(3).itertuples()
        lines.append("most important hyperparameters: " + ", ".join(
            f"{row.hyperparameter} ({row.importance:.2f})" for row in leaders))
    return "\n".join(lines)


def _markdown(page: webpage.Page, shown: pd.DataFrame, drawn: dict) -> str:
    """summary.md: the summary, the `shown` ranking, the importance, the Pareto fronts and the
    figures in `drawn`."""
    lines = [f"# {page.project_dir.name}", "", *[f"- {line}" for line in page.summary.splitlines()],
             ""]
    if not shown.empty:
        lines += [_counts_as_integers(shown).to_markdown(index=False, floatfmt=".4f"), ""]
    if page.importance is not None:
        lines += ["## Hyperparameter importance", "",
                  page.importance.to_markdown(index=False, floatfmt=".3f"), ""]
    if page.fronts is not None:
        lines += ["## Pareto fronts: accuracy against size and speed", "",
                  _counts_as_integers(page.fronts).to_markdown(index=False, floatfmt=".4g"), ""]
    if page.split_study is not None:
        summary, classes = page.split_study
        lines += ["## Does the split matter? (python -m sweep splits)", "",
                  summary.to_markdown(index=False, floatfmt=".4f"), "",
                  classes.to_markdown(index=False, floatfmt=".3f"), ""]
    for figure in drawn:
        lines += [f"![{CAPTIONS[figure]}]({figure})", ""]
    return "\n".join(lines)


def _write_people_report(project_dir: Path, output: Path, df: pd.DataFrame, record: dict,
                         top: int | None, fmt: str, width: int | None,
                         limits: dict[str, float]) -> tuple[str, list[Path]]:
    """The report folder, each figure rendered once for its PNG file and the page."""
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SweepError(
            f"--output {output} cannot be the report's folder: {e.strerror}.") from None
    table = ranking_table(df, space_default_point(project_dir)) if not df.empty else df
    shown = table.head(top) if not table.empty else table
    importance = hyperparameter_importance(df)
    study = splits.load(project_dir)
    figs = {name: _png(fig)
            for name, fig in make_figures(project_dir, df, top, record, study).items()}
    page = webpage.Page(project_dir, record, df, page_ranking(df, table) if not df.empty else df,
                        _summary_lines(project_dir, df, record, importance, limits), importance,
                        tradeoffs.front_table(df) if not df.empty else None,
                        split_study_tables(*study), figs)
    drawn = {name: png for name, png in figs.items() if png is not None}
    markdown = _markdown(page, shown, drawn)
    files = {"trials.csv": df.to_csv(index=False), "summary.md": markdown,
             "report.html": webpage.render(page), **drawn}
    for name, content in files.items():
        state.atomic_write(output / name, content)
    for stale in set(CAPTIONS) - set(drawn):  # an earlier report's figure, not this one's
        (output / stale).unlink(missing_ok=True)
    written = [output / name for name in files]
    if fmt == "markdown":
        return markdown, written
    if fmt == "html":
        return f"wrote {output / 'report.html'}", written
    return page.summary + "\n\n" + (_left_aligned_text(shown, width) if not shown.empty
                                     else "no trials yet"), written
