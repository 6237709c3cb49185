"""Durations and refused searches (no training), then end to end on the real CIFAR-10 copy
(tiny budgets, marked `cifar`), with real processes and real SIGKILL.

The data folder given to `run` has no test batch at all, so any attempt to read the test images
would fail these tests.
"""

import io
import json
import re
from importlib import metadata
from pathlib import Path

import conftest
import pandas as pd
import pytest
from conftest import run_probed, run_sweep, statuses, sweep_here, train_starts

import sweep
from sweep import ranking, spaces, state
from sweep.errors import SweepError
from sweep.reporting import report
from sweep.settings import parse_duration, parse_point, read_points


@pytest.mark.parametrize("text, seconds", [
    ("1h30", 5400), ("1h30m", 5400), ("90m", 5400), ("1.5h", 5400), ("5400", 5400),
    ("45s", 45), ("3h", 10800), ("2m30s", 150), ("1h 30m", 5400), ("1H30", 5400),
])
def test_durations_read_as_people_write_them(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "1m30", "1h1h", "30m1h", "1.5.5h", "-5m", "1d",
                                  "1:30:00", "1h30x"])
def test_anything_else_is_not_a_duration(text):
    with pytest.raises(SweepError) as refusal:
        parse_duration(text)
    assert str(refusal.value) == (f"--time-budget {text!r} is not a duration: "
                                  "use e.g. 45m, 3h, 1h30 or 1.5h.")


def test_max_params_skips_big_models_and_keep_checkpoints_deletes_outranked_weights(
        tmp_path, tiny_cifar):
    search = sweep.Search("tiny_cnn", directory=tmp_path / "runs", tuner="random", max_trials=3,
                          max_epochs=1, finalists=0, train_size=100, val_size=100,
                          data=str(tiny_cifar), max_params=20_000, quiet=True,
                          keep_checkpoints=1)
    lines = []
    search.run(say=lines.append)
    trials = search.trials()
    assert list(trials["status"]) == ["COMPLETED"] * 3 and (trials["params"] <= 20_000).all()
    assert not any("default point" in line for line in lines)  # 25,722 parameters: skipped
    weights = list(search.project_dir.glob(f"trial_*/{state.CHECKPOINT_FILE}"))
    assert [p.parent.name for p in weights] == [f"trial_{trials['trial'].iloc[0]}"]  # the best
    outranked = trials["trial"].iloc[1]
    with pytest.raises(SweepError, match="keeps those of its best fully trained trials only"):
        search.export(tmp_path / "other.keras", trial=outranked)
    record = (search.project_dir / state.SETTINGS_FILE).read_bytes()
    for output, message in ((search.project_dir / "sweep.keras", "would overwrite .*sweep.json"),
                            (Path("/dev/null/best.keras"), "Cannot write /dev/null/best.keras"),
                            (tmp_path / "best.h5", "must end in .keras")):
        with pytest.raises(SweepError, match=message):
            search.export(output)
    assert (search.project_dir / state.SETTINGS_FILE).read_bytes() == record
    with pytest.raises(SweepError, match=f"Trial {outranked}.* has no saved weights"):
        search.evaluate(top=2)  # refused before the best is evaluated and recorded
    assert not (search.project_dir / state.EVALUATIONS_FILE).exists()
    reopened = sweep.Search.open(tmp_path / "runs", data=str(tiny_cifar))
    assert reopened.settings.max_params == 20_000
    reopened.run(say=None)  # its recorded limit: the same search, nothing left to train
    skipped = [e for e in state.read_events(search.project_dir)
               if e["event"] == state.SKIPPED_EVENT]
    assert skipped and all(e["params"] > 20_000 for e in skipped)
    text = search.report(output=tmp_path / "out")
    assert f"; {len(skipped)} configurations skipped before training, over --max-params 20000" \
        in text
    changed = sweep.Search("tiny_cnn", directory=tmp_path / "runs", data=str(tiny_cifar),
                           train_size=100, val_size=100, max_trials=3, max_epochs=1, finalists=0,
                           max_params=50_000)
    with pytest.raises(SweepError, match="max_params"):
        changed.run(say=None)

    # Another copy of CIFAR-10 (other training images): no test accuracy is measured on it.
    other = conftest.write_batches(tmp_path / "other" / "cifar-10-batches-py", 200, seed=1)
    with pytest.raises(SweepError, match="differs from the one .* was searched on"):
        sweep.Search.open(tmp_path / "runs", data=str(other)).evaluate()
    assert not (search.project_dir / state.EVALUATIONS_FILE).exists()

    # A search whose space's code changed since: its trials are not rebuilt from other code.
    record = state.read_json(search.project_dir / state.SETTINGS_FILE)
    record["settings"]["space_sha256"] = "0" * 64
    state.write_json(search.project_dir / state.SETTINGS_FILE, record)
    best = trials["trial"].iloc[0]
    for refused in (lambda: search.export(tmp_path / "best.keras", trial=best),
                    lambda: search.evaluate(trials=[best])):
        with pytest.raises(SweepError, match="changed since .* its trials can no longer be"):
            refused()
    assert not (tmp_path / "best.keras").exists()
    assert not (search.project_dir / state.EVALUATIONS_FILE).exists()


def test_known_points_read_as_people_write_them(tmp_path):
    assert parse_point("conv_blocks=4, activation=gelu,batch_norm=false,learning_rate=1e-3") == {
        "conv_blocks": 4, "activation": "gelu", "batch_norm": False, "learning_rate": 0.001}
    assert parse_point("batch_norm=False,whitening=True") == {"batch_norm": False,
                                                              "whitening": True}
    for text in ("filters", "filters=", "=4", "filters=4,filters=8", "filters=4,,units=8"):
        with pytest.raises(SweepError, match="write name=value pairs"):
            parse_point(text)
    path = tmp_path / "points.json"
    path.write_text('[{"filters": 64}, {"conv_blocks": 4, "activation": "relu"}]')
    assert read_points(str(path)) == [{"filters": 64}, {"conv_blocks": 4, "activation": "relu"}]
    path.write_text('{"filters": 64}')
    with pytest.raises(SweepError, match="must hold a JSON list of objects"):
        read_points(str(path))
    path.write_bytes(b"\xff\xfe not text")
    with pytest.raises(SweepError, match="is not JSON"):
        read_points(str(path))


def _tree(root: Path) -> dict[str, bytes | None]:
    """Every path under `root` with the bytes of each file."""
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else None
            for p in sorted(root.rglob("*"))}


def _existing_search(runs: Path) -> Path:
    """A search of tiny_cnn, as a run with `_refused`'s settings would have left it, last held
    by a process on another machine."""
    project = runs / "tiny_cnn"
    state.write_json(project / state.SETTINGS_FILE, {
        "settings": {"space": "tiny_cnn", "space_sha256": spaces.source_hash("tiny_cnn"),
                     "tuner": "random", "seed": 0, "max_epochs": 2, "finalists": 0,
                     "patience": 8},
        "split": {"seed": 0, "train_size": 100, "val_size": 100, "indices_sha256": "ab" * 32,
                  "data_sha256": "cd" * 32},
    })
    state.write_json(project / "trial_0" / "trial.json", {"trial_id": "0"})
    (project / state.LOCK_FILE).write_text("process 1 on elsewhere")
    return project


def _refused(command: str, runs: Path, fresh: bool = False, **options) -> str:
    """The message a refused run or chief of a tiny_cnn search under `runs` gives."""
    search = sweep.Search(**{"space": "tiny_cnn", "directory": runs, "tuner": "random",
                             "max_epochs": 2, "finalists": 0, "train_size": 100,
                             "val_size": 100, **options})
    with pytest.raises(SweepError) as refusal:
        if command == "run":
            search.run(fresh=fresh)
        else:
            search.serve(port=1, worker_timeout=60, fresh=fresh)
    return str(refusal.value)


@pytest.mark.parametrize("command, existing, fresh, data, options, message", [
    ("run", False, False, "missing", {}, "No CIFAR-10 found at /no/such/path"),
    ("run", False, False, "empty", {}, "No CIFAR-10 found at"),
    ("run", False, False, "tiny", {"train_size": 800, "val_size": 400},
     "exceeds the 1000 training images"),
    ("run", False, False, "tiny", {"train_size": 30000, "val_size": 25000},
     "exceeds the 50000 training images"),
    ("run", True, False, "missing", {}, "No CIFAR-10 found at /no/such/path"),
    ("run", True, True, "missing", {}, "No CIFAR-10 found at /no/such/path"),
    ("run", True, False, "tiny", {"max_epochs": 3}, "made with other settings (max_epochs 2 -> 3)"),
    ("chief", False, False, "missing", {}, "No CIFAR-10 found at /no/such/path"),
    ("chief", True, True, "empty", {}, "No CIFAR-10 found at"),
])
def test_a_refused_command_leaves_the_disk_as_it_found_it(tmp_path, tiny_cifar, command, existing,
                                                         fresh, data, options, message):
    runs = tmp_path / "runs"
    if existing:
        _existing_search(runs)
    (tmp_path / "empty").mkdir()
    folders = {"tiny": tiny_cifar, "missing": Path("/no/such/path"), "empty": tmp_path / "empty"}
    before = _tree(tmp_path)
    assert message in _refused(command, runs, fresh, data=str(folders[data]), **options)
    assert _tree(tmp_path) == before


def test_a_search_without_its_record_is_refused_and_left_alone(tmp_path, tiny_cifar):
    runs = tmp_path / "runs"
    project = _existing_search(runs)
    (project / state.SETTINGS_FILE).unlink()  # deleted, or a folder KerasTuner made on its own
    before = _tree(tmp_path)
    message = _refused("run", runs, data=str(tiny_cifar))
    assert f"holds a search without its record {state.SETTINGS_FILE}" in message
    assert _tree(tmp_path) == before


def _recorded_search(runs: Path, data: Path, **edits) -> Path:
    """A tiny_cnn search on `data` exactly as `_refused`'s settings would record it, with
    `edits` made to its recorded settings."""
    from sweep.search import load_split, search_record
    from sweep.settings import SearchSettings

    settings = SearchSettings(space="tiny_cnn", directory=str(runs), tuner="random",
                              max_epochs=2, finalists=0, train_size=100, val_size=100,
                              data=str(data), space_sha256=spaces.source_hash("tiny_cnn"))
    record = search_record(settings, *load_split(settings))
    record["settings"].update(edits)
    state.write_json(settings.project_dir / state.SETTINGS_FILE, record)
    return settings.project_dir


@pytest.mark.parametrize("edits, options, other_data, message", [
    ({}, {}, False, None),  # the same search: not refused (it would start training)
    ({"space_sha256": "0" * 64}, {}, False, "(the search space's code changed)"),
    # Another space has other code too: said once, as the space's name.
    ({"space": "small_cnn"}, {}, False, "other settings (space 'small_cnn' -> 'tiny_cnn'). Run"),
    ({}, {"train_size": 90}, False, "another split or dataset (train_size, indices_sha256 differ)"),
    ({}, {}, True, "another split or dataset (data_sha256 differ)"),
    ({}, {"seed": 3}, False, "other settings (seed 0 -> 3)"),
    ({}, {"split": "stratified"}, False,
     "another split or dataset (kind, indices_sha256 differ)"),
])
def test_a_changed_space_split_or_dataset_is_refused(tmp_path, tiny_cifar, edits, options,
                                                    other_data, message):
    runs = tmp_path / "runs"
    _recorded_search(runs, tiny_cifar, **edits)
    other = conftest.write_batches(tmp_path / "other" / "cifar-10-batches-py", 200, seed=1)
    before = _tree(runs)
    data = other if other_data else tiny_cifar
    if message is None:
        from sweep.search import check_settings, checked_search

        settings = sweep.Search("tiny_cnn", directory=runs, tuner="random", max_epochs=2,
                                finalists=0, train_size=100, val_size=100, data=str(data)).settings
        check_settings(settings)
        recorded, *_ = checked_search(settings)
        assert recorded is not None  # found, and accepted as the same search
    else:
        assert message in _refused("run", runs, data=str(data), **options)
    assert _tree(runs) == before


def test_a_search_recorded_before_a_setting_existed_resumes_as_it_ran(tmp_path, tiny_cifar):
    from sweep.search import check_resume, recorded_settings
    from sweep.settings import SearchSettings

    project = _recorded_search(tmp_path / "runs", tiny_cifar)
    record = state.read_json(project / state.SETTINGS_FILE)
    del record["settings"]["finalists"], record["settings"]["max_params"]  # before they existed
    state.write_json(project / state.SETTINGS_FILE, record)
    recorded = recorded_settings(project)
    assert (recorded.finalists, recorded.max_params) == (0, None)
    settings = SearchSettings(space="tiny_cnn", directory=str(project.parent), tuner="random",
                              max_epochs=2, finalists=0, train_size=100, val_size=100,
                              space_sha256=spaces.source_hash("tiny_cnn"))
    check_resume(record, settings)  # no finalists then, none now: the same search
    settings.finalists = 1
    with pytest.raises(SweepError, match=r"other settings \(finalists 0 -> 1\)"):
        check_resume(record, settings)


@pytest.mark.cifar
def test_run_report_evaluate_resume_extend_refuse_other_settings(
    real_cifar_train_only, real_cifar_batches, tmp_path
):
    # tiny_cnn: what is tested here is the tool, not the space (the README's command names
    # small_cnn; test_spaces builds and checks it).
    base = ["run", "--space", "tiny_cnn", "--data", str(real_cifar_train_only),
            "--train-size", "300", "--val-size", "300", "--max-epochs", "2", "--quiet"]
    first = run_sweep(*base, "--max-trials", "2", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "trial 0 started: default point" in first.stdout
    assert "trial 1 done [2/2]" in first.stdout
    assert "See: python -m sweep report --project tiny_cnn" in first.stdout
    project = tmp_path / "runs" / "tiny_cnn"
    record = json.loads((project / state.SETTINGS_FILE).read_text())
    assert record["split"]["train_size"] == 300 and record["settings"]["tuner"] == "halving"
    # The report's best has its confusion matrix: one pass over the validation images as a
    # trial ends that changed the best, for that trial only.
    best_id = ranking.ranked_rows(report.load_trials(project)).iloc[0]["trial"]
    computed = re.findall(r"confusion matrix of trial (\d+), the best,", first.stdout)
    assert computed[-1] == best_id and len(computed) == len(set(computed)), first.stdout
    confusions = {t: state.read_trial_record(project / f"trial_{t}").get("confusion")
                  for t in ("0", "1")}
    assert [t for t, matrix in confusions.items() if matrix] == computed
    assert sum(map(sum, confusions[best_id])) == 300
    assert sum(record["split"]["val_class_counts"].values()) == 300
    assert record["versions"]["keras-tuner"] == metadata.version("keras-tuner")
    assert record["versions"]["sweep"] == metadata.version("sweep")
    assert record["versions"]["tensorflow"] == metadata.version("tensorflow")  # the backend's

    shown = sweep_here("report", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "trials: 2 completed" in shown.stdout and "best: trial" in shown.stdout
    trials = pd.read_csv(tmp_path / "reports" / "tiny_cnn" / "trials.csv")
    assert len(trials) == 2 and set(trials["status"]) == {"COMPLETED"}
    assert trials["val_accuracy"].between(0, 1).all() and "conv_blocks" in trials.columns
    assert (tmp_path / "reports" / "tiny_cnn" / "curves.png").stat().st_size > 10_000
    assert (tmp_path / "reports" / "tiny_cnn" / "report.html").stat().st_size > 50_000
    assert "test_accuracy" not in shown.stdout  # nothing evaluated yet

    # The test images: absent from the folder `run` used, read only by `evaluate`.
    missing = run_probed("evaluate", "--data", str(real_cifar_train_only), cwd=tmp_path)
    assert missing.returncode == 2 and "lacks test_batch" in missing.stderr
    assert missing.stdout.strip() == "[]"  # refused before TensorFlow loads
    evaluated = run_sweep("evaluate", "--data", str(real_cifar_batches), cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    assert "test accuracy" in evaluated.stdout and "on 10000 test images" in evaluated.stdout
    [entry] = state.read_lines(project / state.EVALUATIONS_FILE)
    best = trials.sort_values("val_accuracy").iloc[-1]
    assert entry["trial"] == str(best["trial"]) and 0.05 < entry["test_accuracy"] < 1
    shown = sweep_here("report", cwd=tmp_path)
    assert "test accuracy (explicitly evaluated on the test images): trial" in shown.stdout
    both = run_sweep("evaluate", "--top", "2", "--data", str(real_cifar_batches), cwd=tmp_path)
    assert both.returncode == 0, both.stderr
    ranked = list(trials.sort_values("val_accuracy", ascending=False)["trial"].astype(str))
    assert [e["trial"] for e in state.read_lines(project / state.EVALUATIONS_FILE)[1:]] == ranked
    unknown = run_probed("evaluate", "--trial", "99", "--data", str(real_cifar_batches),
                         cwd=tmp_path)
    assert unknown.returncode == 2 and "No completed trial 99" in unknown.stderr
    assert unknown.stdout.strip() == "[]"

    again = run_sweep(*base, "--max-trials", "2", cwd=tmp_path)
    assert again.returncode == 0 and "resuming: 2 trials finished and kept" in again.stdout
    assert "confusion matrix" not in again.stdout  # the best has one already
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
    assert json.loads((project / state.SETTINGS_FILE).read_text())["settings"]["max_trials"] == 3

    fresh = run_sweep(*base, "--max-trials", "2", "--fresh", cwd=tmp_path)
    assert fresh.returncode == 0, fresh.stderr
    kept = list((tmp_path / "runs").glob("tiny_cnn.previous-*"))
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


@pytest.mark.cifar
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


@pytest.mark.cifar
def test_halving_screens_promotes_and_ranks_finalists_by_their_mean(
    real_cifar_train_only, tmp_path
):
    result = run_sweep("run", "--space", "tiny_cnn", "--data", str(real_cifar_train_only),
                       "--train-size", "300", "--val-size", "300", "--max-trials", "9",
                       "--max-epochs", "6", "--finalists", "1", "--quiet", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert ("plan: successive halving: 5 configurations on 1 epoch, 2 configurations on 6 "
            "epochs, then the best fully trained retrained with 2 more seeds (6 epochs "
            "each): 29 epochs in all") in result.stdout
    # Timed once, when the second 1-epoch trial ended: the 27 epochs left at this machine's.
    timed = re.findall(r"plan here: about (\d+)m(\d+)s of training left at (\d+) s an epoch",
                       result.stdout)
    assert len(timed) == 1
    minutes, seconds, epoch = map(int, timed[0])
    assert abs(60 * minutes + seconds - 27 * epoch) <= 14  # the epoch shown to the second
    assert result.stdout.index("plan here") > result.stdout.index("trial 0 done")
    assert "search done: 9 completed, 0 failed" in result.stdout
    project = tmp_path / "runs" / "tiny_cnn"
    values = {p.parent.name.removeprefix("trial_"):
              json.loads(p.read_text())["hyperparameters"]["values"]
              for p in project.glob("trial_*/trial.json")}
    epochs = [len(json.loads((project / f"trial_{t}" / "record.json").read_text())["history"])
              for t in sorted(values)]
    assert epochs == [1, 1, 1, 1, 1, 6, 6, 6, 6]  # patience 8: no trial stopped early
    assert [values[t].get("tuner/replica") for t in ("7", "8")] == [1, 2]
    config_of = {t: {k: v for k, v in values[t].items() if not k.startswith("tuner/")}
                 for t in values}
    assert config_of["0"] in (config_of["5"], config_of["6"])  # the default point: fully too
    scores = {t: json.loads((project / f"trial_{t}" / "trial.json").read_text())["score"]
              for t in ("5", "6")}
    best = max(scores, key=scores.get)
    for t in ("7", "8"):  # the finalist's seeds retrain the best fully trained configuration
        assert config_of[t] == config_of[best]

    shown = sweep_here("report", "--format", "csv", cwd=tmp_path)
    trials = pd.read_csv(io.StringIO(shown.stdout), dtype={"trial": str})
    ranked = trials[trials["rank"].notna()]
    assert shown.returncode == 0 and sorted(ranked["trial"]) == ["5", "6", "7", "8"]
    winner = ranked[ranked["trial"].isin([best, "7", "8"])]
    assert list(ranked["seeds"].iloc[:3]) == [3, 3, 3]  # the finalist's 3 runs rank first
    assert pd.isna(ranked["seeds"].iloc[3])  # then the other, one seed
    assert ranked["val_mean"].iloc[0] == pytest.approx(winner["val_accuracy"].mean())
    assert ranked["val_accuracy"].iloc[0] == ranked["val_accuracy"].max()
    assert trials[trials["rank"].isna()]["schedule"].max() < 6  # screening trials not ranked


def test_stop_behind_stops_a_trial_far_behind_the_best_and_is_the_latest_run_s_policy(
        tmp_path, tiny_cifar):
    def search(**options):
        return sweep.Search("tiny_cnn", directory=tmp_path / "runs", tuner="random",
                            max_epochs=4, finalists=0, train_size=100, val_size=100,
                            data=str(tiny_cifar), quiet=True, **options)

    first = search(max_trials=1)
    first.run(say=None)
    # Make the one trial's curve a perfect 100 % from its first epoch: every other is behind.
    [trial_dir] = first.project_dir.glob("trial_*")
    record = state.read_json(trial_dir / state.TRIAL_RECORD_FILE)
    for epoch in record["history"]:
        epoch["val_accuracy"] = 1.0
    state.write_json(trial_dir / state.TRIAL_RECORD_FILE, record)

    search(max_trials=2, stop_behind=5).run(say=None)
    assert state.read_json(first.project_dir / state.SETTINGS_FILE)["settings"]["stop_behind"] == 5
    second = next(d for d in first.project_dir.glob("trial_*") if d != trial_dir)
    stopped = state.read_json(second / state.TRIAL_RECORD_FILE)
    assert len(stopped["history"]) == 3  # the first epoch of the schedule's second half
    assert f"under trial {trial_dir.name.removeprefix('trial_')}'s 100.00% by epoch 3" \
        in stopped["stopped"]
    assert "; 1 stopped far behind the best (--stop-behind)" in first.report(output=tmp_path / "r")
    assert sweep.Search.open(tmp_path / "runs").settings.stop_behind == 5  # workers read it

    search(max_trials=2).run(say=None)  # a run without it: the search's policy is off again
    assert state.read_json(first.project_dir / state.SETTINGS_FILE)["settings"]["stop_behind"] \
        is None


def test_a_finished_search_names_the_try_points_it_never_tried(tmp_path, tiny_cifar):
    lines = []
    sweep.Search("tiny_cnn", directory=tmp_path / "runs", tuner="random", max_trials=1,
                 max_epochs=1, finalists=0, train_size=100, val_size=100, data=str(tiny_cifar),
                 quiet=True, known_points=[{"filters": 8}]).run(say=lines.append)
    assert any("not tried, the search's 1 trials ran out first: filters=8. Run again with a "
               "larger --max-trials" in line for line in lines), lines
