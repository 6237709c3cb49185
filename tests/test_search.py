"""End to end on the real CIFAR-10 copy (tiny budgets), with real processes and real SIGKILL.

The data folder given to `run` has no test batch at all, so any attempt to read the test images
would fail these tests.
"""

import json

import pandas as pd
import pytest
from conftest import run_sweep, statuses, train_starts

from sweep import state

pytestmark = pytest.mark.cifar


def test_run_report_evaluate_resume_extend_refuse_other_settings(
    real_cifar_train_only, real_cifar_batches, tmp_path
):
    base = ["run", "--data", str(real_cifar_train_only), "--train-size", "300",
            "--val-size", "300", "--max-epochs", "2", "--quiet"]
    first = run_sweep(*base, "--max-trials", "2", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "trial 0 started: default point" in first.stdout
    assert "trial 1 done [2/2]" in first.stdout and "See: python -m sweep report" in first.stdout
    project = tmp_path / "runs" / "small_cnn"
    record = json.loads((project / state.SETTINGS_FILE).read_text())
    assert record["split"]["train_size"] == 300 and record["settings"]["tuner"] == "halving"
    assert sum(record["split"]["val_class_counts"].values()) == 300
    assert record["versions"]["keras-tuner"]

    shown = run_sweep("report", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "trials: 2 completed" in shown.stdout and "best: trial" in shown.stdout
    trials = pd.read_csv(tmp_path / "reports" / "small_cnn" / "trials.csv")
    assert len(trials) == 2 and set(trials["status"]) == {"COMPLETED"}
    assert trials["val_accuracy"].between(0, 1).all() and "conv_blocks" in trials.columns
    assert (tmp_path / "reports" / "small_cnn" / "curves.png").stat().st_size > 10_000
    assert (tmp_path / "reports" / "small_cnn" / "report.html").stat().st_size > 50_000
    assert "test_accuracy" not in shown.stdout  # nothing evaluated yet

    # The test images: absent from the folder `run` used, read only by `evaluate`.
    missing = run_sweep("evaluate", "--data", str(real_cifar_train_only), cwd=tmp_path)
    assert missing.returncode == 2 and "lacks test_batch" in missing.stderr
    evaluated = run_sweep("evaluate", "--data", str(real_cifar_batches), cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    assert "test accuracy" in evaluated.stdout and "on 10000 test images" in evaluated.stdout
    [entry] = state.read_lines(project / state.EVALUATIONS_FILE)
    best = trials.sort_values("val_accuracy").iloc[-1]
    assert entry["trial"] == str(best["trial"]) and 0.05 < entry["test_accuracy"] < 1
    shown = run_sweep("report", cwd=tmp_path)
    assert "test accuracy (explicitly evaluated on the test images): trial" in shown.stdout
    unknown = run_sweep("evaluate", "--trial", "99", "--data", str(real_cifar_batches),
                        cwd=tmp_path)
    assert unknown.returncode == 2 and "No completed trial 99" in unknown.stderr

    again = run_sweep(*base, "--max-trials", "2", cwd=tmp_path)
    assert again.returncode == 0 and "resuming: 2 trials finished and kept" in again.stdout
    assert train_starts(project) == [("0", 0), ("1", 0)]  # nothing retrained

    other = run_sweep(*base, "--max-trials", "2", "--seed", "5", cwd=tmp_path)
    assert other.returncode == 2 and "made with other settings (seed 0 -> 5)" in other.stderr
    assert "Traceback" not in other.stderr
    named = run_sweep(*base, "--max-trials", "2", "--tuner", "random", cwd=tmp_path)
    assert named.returncode == 2 and "tuner 'halving' -> 'random'" in named.stderr

    more = run_sweep(*base, "--max-trials", "3", cwd=tmp_path)
    assert more.returncode == 0, more.stderr
    assert [t for t, _ in train_starts(project)] == ["0", "1", "2"]
    assert set(statuses(project).values()) == {"COMPLETED"} and len(statuses(project)) == 3

    fresh = run_sweep(*base, "--max-trials", "2", "--fresh", cwd=tmp_path)
    assert fresh.returncode == 0, fresh.stderr
    kept = list((tmp_path / "runs").glob("small_cnn.previous-*"))
    assert len(kept) == 1 and len(statuses(kept[0])) == 3
    assert len(statuses(project)) == 2

    # Reproducible: the same seed gives the same split, the same trials in the same order, and
    # (on the same machine) the same scores.
    def trial_results(folder):
        trials = (json.loads((folder / f"trial_{i}" / "trial.json").read_text()) for i in (0, 1))
        return [(t["hyperparameters"]["values"], t["score"]) for t in trials]

    assert trial_results(project) == trial_results(kept[0])
    assert (json.loads((project / state.SETTINGS_FILE).read_text())["split"]
            == json.loads((kept[0] / state.SETTINGS_FILE).read_text())["split"])


def test_hyperband_is_capped_by_max_trials_and_restarts_promoted_trials(
    real_cifar_train_only, tmp_path
):
    result = run_sweep("run", "--space", "tiny_cnn", "--tuner", "hyperband", "--data",
                       str(real_cifar_train_only), "--train-size", "500", "--val-size", "300",
                       "--max-trials", "6", "--max-epochs", "3", "--quiet", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "search done: 6 completed, 0 failed" in result.stdout
    assert "WARNING" not in result.stdout + result.stderr
    project = tmp_path / "runs" / "tiny_cnn"
    trials = {p.parent.name: json.loads(p.read_text())
              for p in project.glob("trial_*/trial.json")}
    assert len(trials) == 6
    continued = [t for t in trials.values() if "tuner/trial_id" in t["hyperparameters"]["values"]]
    assert continued  # Hyperband's successive halving ran
    # Every trial trained from epoch 0 on its own schedule, none from a parent's weights.
    assert {epoch for _, epoch in train_starts(project)} == {0}
    for trial in continued:
        record = json.loads((project / f"trial_{trial['trial_id']}" / "record.json").read_text())
        assert len(record["history"]) == trial["hyperparameters"]["values"]["tuner/epochs"]


def test_halving_screens_promotes_and_ranks_finalists_by_their_mean(
    real_cifar_train_only, tmp_path
):
    result = run_sweep("run", "--space", "tiny_cnn", "--data", str(real_cifar_train_only),
                       "--train-size", "300", "--val-size", "300", "--max-trials", "9",
                       "--max-epochs", "6", "--finalists", "1", "--quiet", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert ("plan: successive halving: 4 configurations on 1 epochs, 2 configurations on 2 "
            "epochs, 1 configurations on 6 epochs, then the 1 best fully trained retrained "
            "with 2 more seeds (6 epochs each): 26 epochs in all") in result.stdout
    assert "search done: 9 completed, 0 failed" in result.stdout
    project = tmp_path / "runs" / "tiny_cnn"
    values = {p.parent.name.removeprefix("trial_"):
              json.loads(p.read_text())["hyperparameters"]["values"]
              for p in project.glob("trial_*/trial.json")}
    epochs = [len(json.loads((project / f"trial_{t}" / "record.json").read_text())["history"])
              for t in sorted(values)]
    assert epochs == [1, 1, 1, 1, 2, 2, 6, 6, 6]  # patience 8: no trial stopped early
    assert [values[t].get("tuner/replica") for t in ("7", "8")] == [1, 2]
    config = {k: v for k, v in values["6"].items() if not k.startswith("tuner/")}
    for t in ("7", "8"):  # the finalist's seeds retrain the fully trained configuration
        assert {k: v for k, v in values[t].items() if not k.startswith("tuner/")} == config

    shown = run_sweep("report", "--format", "csv", cwd=tmp_path)
    trials = pd.read_csv(tmp_path / "reports" / "tiny_cnn" / "trials.csv", dtype={"trial": str})
    ranked = trials[trials["rank"].notna()]
    assert shown.returncode == 0 and sorted(ranked["trial"]) == ["6", "7", "8"]
    assert set(ranked["seeds"]) == {3}
    assert ranked["val_mean"].iloc[0] == pytest.approx(ranked["val_accuracy"].mean())
    assert ranked["val_accuracy"].iloc[0] == ranked["val_accuracy"].max()
    assert trials[trials["rank"].isna()]["schedule"].max() < 6  # screening trials not ranked
