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
    assert record["split"]["train_size"] == 300 and record["settings"]["tuner"] == "hyperband"
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
    assert named.returncode == 2 and "tuner 'hyperband' -> 'random'" in named.stderr

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


def test_hyperband_is_capped_by_max_trials_and_continues_trials(real_cifar_train_only, tmp_path):
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
    for trial in continued:
        values = trial["hyperparameters"]["values"]
        record = json.loads((project / f"trial_{trial['trial_id']}" / "record.json").read_text())
        epochs = [e["epoch"] for e in record["history"]]
        assert epochs == list(range(values["tuner/epochs"]))  # parent's epochs, then its own
