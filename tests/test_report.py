"""Reports on hand-made search folders: completed, failed, interrupted and unreadable trials."""

import os

import pandas as pd
import pytest

from sweep import report, state
from sweep.errors import SweepError


def _trial(project, trial_id, status, val_accs, message=None, values=None):
    trial_dir = project / f"trial_{trial_id}"
    state.write_json(trial_dir / "trial.json", {
        "trial_id": trial_id, "status": status, "message": message,
        "hyperparameters": {"values": values or {"filters": 32, "learning_rate": 0.002}},
    })
    history = [{"epoch": i, "accuracy": a + 0.1, "val_accuracy": a, "loss": 1.0}
               for i, a in enumerate(val_accs)]
    state.write_json(trial_dir / state.TRIAL_RECORD_FILE,
                     {"history": history, "params": 1234, "train_seconds": 60.0 * len(val_accs)})


@pytest.fixture
def project(tmp_path):
    project = tmp_path / "runs" / "demo"
    state.write_json(project / state.SETTINGS_FILE, {
        "settings": {"space": "small_cnn", "tuner": "bayesian"},
        "split": {"seed": 0, "train_size": 100, "val_size": 100,
                  "indices_sha256": "ab" * 32, "data_sha256": "cd" * 32},
    })
    _trial(project, "0", "COMPLETED", [0.5, 0.62, 0.6])
    _trial(project, "1", "COMPLETED", [0.7, 0.71], values={"filters": 64, "learning_rate": 0.01})
    _trial(project, "2", "FAILED", [0.1],
           message="Traceback...\nkeras_tuner.errors.FailedTrialError: loss became nan at epoch 1")
    _trial(project, "3", "RUNNING", [0.4])
    return project


def test_ranks_completed_trials_by_best_validation_accuracy(project):
    df = report.load_trials(project)
    assert list(df["trial"]) == ["1", "0", "2", "3"]
    assert list(df["rank"][:2]) == [1, 2] and df["rank"][2:].isna().all()
    best = df.iloc[0]
    assert best["val_accuracy"] == 0.71 and best["train_accuracy"] == pytest.approx(0.81)
    assert best["best_epoch"] == 2 and best["epochs"] == 2 and best["params"] == 1234
    assert df.set_index("trial").loc["2", "reason"] == "loss became nan at epoch 1"


def test_running_trial_shows_as_interrupted_when_no_process_holds_the_search(project):
    df = report.load_trials(project).set_index("trial")
    assert df.loc["3", "status"] == "INTERRUPTED"
    (project / state.LOCK_FILE).write_text(f"process {os.getpid()}")
    df = report.load_trials(project).set_index("trial")
    assert df.loc["3", "status"] == "RUNNING"


def test_writes_csv_markdown_and_curves(project, tmp_path):
    text, written = report.write_report(project, tmp_path / "out")
    assert "best: trial 1 at 71.00% validation accuracy (+4.3 points" in text
    assert "failed: loss became nan at epoch 1" in text
    csv = pd.read_csv(tmp_path / "out" / "trials.csv", dtype={"trial": str})
    assert len(csv) == 4 and {"filters", "learning_rate"} <= set(csv.columns)
    markdown = (tmp_path / "out" / "summary.md").read_text()
    assert "| COMPLETED" in markdown and "curves.png" in markdown
    assert (tmp_path / "out" / "curves.png").stat().st_size > 10_000
    text, _ = report.write_report(project, tmp_path / "top", top=1)
    assert "filters=64" in text and "filters=32" not in text


def test_unreadable_trial_file_is_shown_not_fatal(project):
    (project / "trial_0" / "trial.json").write_text('{"trial_id": "0", "sta')
    df = report.load_trials(project).set_index("trial")
    assert df.loc["0", "status"] == "UNREADABLE"
    assert df.loc["1", "rank"] == 1


def test_finds_the_only_search_or_asks_for_one(project):
    runs = project.parent
    assert report.find_project(runs, None) == project
    state.write_json(runs / "other" / state.SETTINGS_FILE, {})
    with pytest.raises(SweepError, match="choose one with --project"):
        report.find_project(runs, None)
    with pytest.raises(SweepError, match="No search at"):
        report.find_project(runs, "missing")


def test_formats_json_csv_markdown_and_the_progress_plot(project, tmp_path):
    import io
    import json

    text, written = report.write_report(project, tmp_path / "out", fmt="json")
    parsed = json.loads(text)
    assert [t["trial"] for t in parsed["trials"]] == ["1", "0", "2", "3"]
    assert parsed["challenge_baseline"] == 0.667 and parsed["split"]["seed"] == 0
    csv_text, _ = report.write_report(project, tmp_path / "out", fmt="csv")
    assert len(pd.read_csv(io.StringIO(csv_text))) == 4
    markdown, _ = report.write_report(project, tmp_path / "out", fmt="markdown")
    assert markdown.startswith("# demo") and "![search progress](progress.png)" in markdown
    assert (tmp_path / "out" / "progress.png").stat().st_size > 10_000
    with pytest.raises(SweepError, match="Unknown report format 'pdf'"):
        report.write_report(project, tmp_path / "out", fmt="pdf")
