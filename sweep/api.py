"""`sweep.Search`: the Python face of the tool, for scripts and notebooks.

The command line is a thin layer over this class: `run`, `report`, `evaluate` and `export` go
through the same methods, so a search driven from a notebook and one from a shell are the same
search, with the same files. User mistakes raise `SweepError` with the messages the CLI prints.
"""

from __future__ import annotations

import os
import sys
from dataclasses import replace
from pathlib import Path

import pandas as pd

from sweep import backend, log, ranking, state
from sweep.distributed import cluster
from sweep.errors import SweepError
from sweep.log import Say
from sweep.reporting import figures
from sweep.reporting import report as report_module
from sweep.search import (
    check_rebuildable,
    check_settings,
    check_space_unchanged,
    recorded_settings,
    run_search,
)
from sweep.settings import SearchOutcome, SearchSettings, at_least_one, parse_duration


def in_notebook() -> bool:
    return "ipykernel" in sys.modules


class NotebookProgress:
    """A tqdm.auto bar over the search's trials (a widget in Jupyter), for `Search.run`."""

    def __init__(self):
        self.bar = None

    def __call__(self, ended: int, total: int, line: str) -> None:
        from tqdm.auto import tqdm

        if self.bar is None:
            self.bar = tqdm(total=total, desc="trials", unit="trial")
        self.bar.total = total
        self.bar.n = ended
        self.bar.set_postfix_str(line.split("| ")[-1])
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class Search:
    """One search: `run()` starts or resumes it; the other methods read what it found.

    >>> search = Search("small_cnn", max_trials=5, data="~/cifar10")  # doctest: +SKIP
    >>> search.run(); search.trials().head()                          # doctest: +SKIP
    """

    def __init__(self, space: str = "small_cnn", *, project: str | None = None,
                 directory: str = "runs", data: str | None = None, seed: int = 0,
                 tuner: str | None = None, max_trials: int = SearchSettings.max_trials,
                 max_epochs: int = SearchSettings.max_epochs,
                 patience: int = SearchSettings.patience,
                 stop_behind: float | None = None,
                 finalists: int = SearchSettings.finalists,
                 train_size: int = SearchSettings.train_size,
                 val_size: int = SearchSettings.val_size, time_budget: str | float | None = None,
                 quiet: bool | None = None, tensorboard: bool = False,
                 precision: str = "auto", known_points: list[dict] | None = None,
                 max_params: float | None = None,
                 keep_checkpoints: int = SearchSettings.keep_checkpoints,
                 split: str | None = None):
        if isinstance(time_budget, str):
            time_budget = parse_duration(time_budget)
        self.settings = SearchSettings(
            space=space, tuner=tuner, max_trials=max_trials, max_epochs=max_epochs,
            patience=patience, stop_behind=stop_behind, finalists=finalists, seed=seed,
            train_size=train_size, val_size=val_size, project=project,
            directory=str(directory), data=data,
            time_budget=time_budget, quiet=in_notebook() if quiet is None else quiet,
            tensorboard=tensorboard, precision=precision, known_points=list(known_points or []),
            max_params=max_params, keep_checkpoints=keep_checkpoints, split=split,
        )

    @classmethod
    def open(cls, directory: str = "runs", project: str | None = None,
             data: str | None = None) -> Search:
        """An existing search (the only one under `directory` when `project` is None)."""
        project_dir = report_module.find_project(directory, project)
        search = cls.__new__(cls)
        search.settings = replace(recorded_settings(project_dir), data=data,
                                  quiet=in_notebook())
        return search

    @property
    def project_dir(self) -> Path:
        return self.settings.project_dir

    def _existing(self) -> Path:
        return report_module.find_project(self.settings.directory, self.settings.project_name)

    def run(self, fresh: bool = False, say: Say | None = print) -> SearchOutcome:
        """Start the search, or resume it exactly where it stopped (see the README).

        `say` gets each progress line; with None they go to the "sweep" logger as configured."""
        settings = replace(self.settings, fresh=fresh)
        progress = NotebookProgress() if in_notebook() else None
        try:
            with log.lines_to(say):
                return run_search(settings, progress=progress)
        finally:
            if progress:
                progress.close()

    def serve(self, port: int, *, host: str = "0.0.0.0", worker_timeout: float = 120.0,
              tls_cert: str | None = None, tls_key: str | None = None, fresh: bool = False,
              say: Say | None = print) -> SearchOutcome:
        """Serve this search to workers (`python -m sweep worker`) until it is done.

        Workers share `directory` with the chief; a worker silent for `worker_timeout` seconds
        loses its trial to the next free worker (see the README, "Several machines"). With
        `tls_cert` and `tls_key` (PEM files) the chief speaks TLS only. `say` as in `run`."""
        settings = replace(self.settings, fresh=fresh)
        cluster.check_port(port)
        if worker_timeout <= 0:
            raise SweepError("--worker-timeout must be positive, e.g. 2m.")
        tls = cluster.read_chief_tls(tls_cert, tls_key)
        check_settings(settings)  # refused before the chief's module loads TensorFlow
        backend.import_quietly()
        from sweep.distributed.roles import run_chief

        with log.lines_to(say):
            return run_chief(settings, port=port, host=host, worker_timeout=worker_timeout,
                             tls=tls)

    def trials(self) -> pd.DataFrame:
        """One row per trial, ranked; the same columns as `trials.csv`."""
        return report_module.load_trials(self._existing())

    def best(self) -> dict:
        """The best fully trained trial: id, hyperparameters and scores. Where its configuration
        was retrained with more seeds (a finalist), `val_mean`, `val_std` and `seeds` say how it
        did over all of them; configurations are ranked by that mean (`sweep.ranking`)."""
        df = self.trials()
        ranked = ranking.ranked_rows(df)
        if ranked.empty:
            raise SweepError(f"{self.project_dir} has no fully trained trial yet.")
        row = ranked.iloc[0]
        columns = report_module.hyperparameter_columns(df)
        several = not pd.isna(row["seeds"])
        return {
            "trial": row["trial"],
            "val_accuracy": float(row["val_accuracy"]),
            "val_mean": float(row["val_mean"]) if several else float(row["val_accuracy"]),
            "val_std": float(row["val_std"]) if several else None,
            "seeds": int(row["seeds"]) if several else 1,
            "train_accuracy": float(row["train_accuracy"]),
            "test_accuracy": None if pd.isna(row["test_accuracy"]) else row["test_accuracy"],
            "best_epoch": int(row["best_epoch"]),
            "params": int(row["params"]),
            "hyperparameters": {c: row[c] for c in columns if not _missing(row[c])},
        }

    def report(self, format: str = "table", output: str | Path | None = None,
               top: int | None = None, width: int | None = None, *,
               max_params: float | None = None, max_latency: float | None = None) -> str:
        """The report as text in `format` (table, markdown, html, csv, json; a table cut to
        `width` columns if given); table, markdown and html also write the report's files to
        `output` (default `reports/<project>/`). With `max_params` or `max_latency` (ms an
        image, batch 1) the summary names the best trial within them."""
        project_dir = self._existing()
        folder = Path(output) if output else Path("reports") / project_dir.name
        asked = {"params": max_params, state.LATENCY_KEYS[1]: max_latency}
        limits = {cost: limit for cost, limit in asked.items() if limit is not None}
        text, _ = report_module.write_report(project_dir, folder, top, format, width, limits)
        return text

    def evaluate(self, trials: list[str] | None = None, top: int | None = None) -> list[dict]:
        """Test accuracy of finished trials (default: the best); recorded in the search."""
        from sweep.evaluate import evaluate

        return evaluate(self._existing(), self.settings.data, trials, top)

    def study_splits(self, repeats: int = 3, trial: str | None = None, quiet: bool = False,
                     say: Say | None = print) -> pd.DataFrame:
        """Retrain `trial` (default: the best) on `repeats` other random splits and as many
        stratified ones; validation accuracy mean +- std by kind (`python -m sweep splits`)."""
        at_least_one(repeats, "--repeats")  # before TensorFlow loads
        project_dir = self._existing()
        trial = state.trial_id_named(project_dir, str(trial or self.best()["trial"]))
        check_space_unchanged(project_dir)
        state.completed_trial_hyperparameters(project_dir, trial)
        backend.import_quietly()  # TensorFlow loads here, once the quick checks passed
        from sweep import split_study
        from sweep.reporting import splits

        with log.lines_to(say):
            split_study.run_study(project_dir, self.settings.data, trial, repeats, quiet)
        return splits.by_kind(splits.load(project_dir)[0])

    def export(self, path: str | Path, trial: str | None = None) -> Path:
        """A standalone .keras model of `trial` (default: the best) with its normalization
        inside, and a sidecar JSON of its trial, hyperparameters, split and scores."""
        path = Path(path)
        check_export_output(path)
        trial = state.trial_id_named(self._existing(), str(trial or self.best()["trial"]))
        state.completed_trial_hyperparameters(self._existing(), trial)
        check_rebuildable(self._existing(), [trial])
        backend.import_quietly()  # TensorFlow loads here, once the quick checks passed
        from sweep import models

        model_path, _ = models.export(self._existing(), trial, Path(path))
        return model_path

    def plot_history(self, top: int = 3):
        """Training vs validation accuracy per epoch of the `top` best trials (a Figure)."""
        return figures.curves_figure(self._existing(), self.trials(), top)

    def plot_progress(self):
        """Each trial's validation accuracy in the order trials ran, with the best so far."""
        return figures.progress_figure(self._existing(), self.trials())


def check_export_output(path: Path) -> None:
    """Refuse, before TensorFlow loads and the model is rebuilt, an output that cannot be
    written, or whose sidecar (`path` with `.json`) would replace a file export did not write:
    `--output runs/x/sweep.keras` would otherwise overwrite that search's own record."""
    if path.suffix != ".keras":
        raise SweepError(f"--output {path} must end in .keras.")
    sidecar = path.with_suffix(".json")
    if sidecar.exists() and not _is_export_sidecar(sidecar):
        raise SweepError(f"--output {path} would overwrite {sidecar}, which export did not "
                         "write. Choose another name or folder.")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SweepError(f"Cannot write {path} ({e.strerror}).") from None
    if not os.access(path.parent, os.W_OK):
        raise SweepError(f"Cannot write {path} (its folder is not writable).")


def _is_export_sidecar(path: Path) -> bool:
    try:
        return {"trial", "classes", "input"} <= set(state.read_json(path))
    except (SweepError, TypeError):
        return False


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and pd.isna(value))
