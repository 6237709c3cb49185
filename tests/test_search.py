"""End to end on the real CIFAR-10 copy (tiny budgets), with real processes and real SIGKILL.

The data folder given to `run` has no test batch at all, so any attempt to read the test images
would fail these tests.
"""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import run_sweep

from sweep import state

pytestmark = pytest.mark.cifar


def _train_starts(project: Path) -> list[tuple[str, int]]:
    return [(e["trial"], e["epoch"]) for e in state.read_events(project)
            if e["event"] == "train_start"]


def _statuses(project: Path) -> dict[str, str]:
    return {p.parent.name: json.loads(p.read_text())["status"]
            for p in project.glob("trial_*/trial.json")}


def _epochs_recorded(project: Path, trial_id: str) -> int:
    path = project / f"trial_{trial_id}" / state.TRIAL_RECORD_FILE
    try:
        return len(json.loads(path.read_text())["history"])
    except (FileNotFoundError, json.JSONDecodeError):
        return 0


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
    assert record["split"]["train_size"] == 300 and record["settings"]["tuner"] == "bayesian"
    assert sum(record["split"]["val_class_counts"].values()) == 300
    assert record["versions"]["keras-tuner"]

    shown = run_sweep("report", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "trials: 2 completed" in shown.stdout and "best: trial" in shown.stdout
    trials = pd.read_csv(tmp_path / "reports" / "small_cnn" / "trials.csv")
    assert len(trials) == 2 and set(trials["status"]) == {"COMPLETED"}
    assert trials["val_accuracy"].between(0, 1).all() and "conv_blocks" in trials.columns
    assert (tmp_path / "reports" / "small_cnn" / "curves.png").stat().st_size > 10_000
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
    assert _train_starts(project) == [("0", 0), ("1", 0)]  # nothing retrained

    other = run_sweep(*base, "--max-trials", "2", "--seed", "5", cwd=tmp_path)
    assert other.returncode == 2 and "made with other settings (seed 0 -> 5)" in other.stderr
    assert "Traceback" not in other.stderr

    more = run_sweep(*base, "--max-trials", "3", cwd=tmp_path)
    assert more.returncode == 0, more.stderr
    assert [t for t, _ in _train_starts(project)] == ["0", "1", "2"]
    assert set(_statuses(project).values()) == {"COMPLETED"} and len(_statuses(project)) == 3

    fresh = run_sweep(*base, "--max-trials", "1", "--max-epochs", "1", "--fresh", cwd=tmp_path)
    assert fresh.returncode == 0, fresh.stderr
    kept = list((tmp_path / "runs").glob("small_cnn.previous-*"))
    assert len(kept) == 1 and len(_statuses(kept[0])) == 3
    assert len(_statuses(project)) == 1


def _start(args, cwd):
    return subprocess.Popen([sys.executable, "-m", "sweep", *args], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _kill_when(process, condition, timeout=300) -> str:
    """SIGKILL `process` as soon as `condition()` holds; return what it printed."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, process.stdout.read()
        assert time.monotonic() < deadline, "the search never reached the kill point"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    return process.stdout.read()


def _backed_up_epochs(project: Path, trial_id: str) -> int:
    path = project / f"trial_{trial_id}" / "backup" / "state.json"
    return json.loads(path.read_text())["epoch"] if path.exists() else 0


def test_sigkill_mid_trial_resumes_without_retraining(real_cifar_train_only, tmp_path):
    args = ["run", "--data", str(real_cifar_train_only), "--train-size", "500",
            "--val-size", "300", "--max-trials", "3", "--max-epochs", "4", "--tuner", "random"]
    project = tmp_path / "runs" / "small_cnn"

    # Kill 1: inside the very first trial, right after its first epoch is recorded, often while
    # its backup is being written (KerasTuner alone would restart the whole search here).
    _kill_when(_start(args, tmp_path), lambda: _epochs_recorded(project, "0") >= 1)
    # Kill 2: inside the second trial, once its first epoch is backed up.
    output = _kill_when(_start(args, tmp_path), lambda: _backed_up_epochs(project, "1") >= 1)
    assert "resuming: 0 trials finished and kept, trial 0 interrupted: continuing it" in output

    final = run_sweep(*args, cwd=tmp_path)
    assert final.returncode == 0, final.stdout + final.stderr
    assert "resuming: 1 trials finished and kept, trial 1 interrupted" in final.stdout
    assert _statuses(project) == {f"trial_{i}": "COMPLETED" for i in range(3)}

    starts = _train_starts(project)
    assert [t for t, _ in starts] == ["0", "0", "1", "1", "2"], starts  # none trained twice
    assert starts[3][1] >= 1, starts  # trial 1 continued from its backed-up epoch
    assert "trial 1: resuming at epoch" in final.stdout
    for trial_id in "012":
        record = json.loads((project / f"trial_{trial_id}" / state.TRIAL_RECORD_FILE).read_text())
        assert [e["epoch"] for e in record["history"]] == [0, 1, 2, 3]  # every epoch once
        assert not (project / f"trial_{trial_id}" / "backup").exists()
    for path in project.rglob("*.json"):
        json.loads(path.read_text())  # every state file whole

    shown = run_sweep("report", cwd=tmp_path)
    assert shown.returncode == 0 and "trials: 3 completed" in shown.stdout
