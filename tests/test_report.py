"""Reports on hand-made search folders: completed, failed, interrupted and unreadable trials."""

import math
import os
import time

import pandas as pd
import pytest

from sweep import state
from sweep.data import CLASS_NAMES
from sweep.distributed import cluster
from sweep.errors import SweepError
from sweep.reporting import report


def _trial(project, trial_id, status, val_accs, message=None, values=None, extra=None):
    trial_dir = project / f"trial_{trial_id}"
    state.write_json(trial_dir / "trial.json", {
        "trial_id": trial_id, "status": status, "message": message,
        "hyperparameters": {"values": values or {"filters": 32, "learning_rate": 0.002}},
    })
    history = [{"epoch": i, "accuracy": a + 0.1, "val_accuracy": a, "loss": 1.0}
               for i, a in enumerate(val_accs)]
    state.write_json(trial_dir / state.TRIAL_RECORD_FILE,
                     {"history": history, "params": 1234, "train_seconds": 60.0 * len(val_accs),
                      **(extra or {})})


@pytest.fixture
def project(tmp_path):
    project = tmp_path / "runs" / "demo"
    state.write_json(project / state.SETTINGS_FILE, {
        "settings": {"space": "small_cnn", "space_sha256": "ef" * 32, "tuner": "bayesian",
                     "seed": 0, "max_epochs": 3, "patience": 8},
        "split": {"seed": 0, "train_size": 100, "val_size": 100,
                  "indices_sha256": "ab" * 32, "data_sha256": "cd" * 32,
                  "train_class_counts": {c: 10 + i for i, c in enumerate(CLASS_NAMES)},
                  "val_class_counts": {c: 12 - i for i, c in enumerate(CLASS_NAMES)}},
    })
    _trial(project, "0", "COMPLETED", [0.5, 0.62, 0.6])
    confusion = [[90 if i == j else 1 for j in range(10)] for i in range(10)]
    layers = [{"layer": "conv2d", "kind": "Conv2D", "output_shape": "(None, 32, 32, 8)",
               "params": 224}]
    _trial(project, "1", "COMPLETED", [0.7, 0.71], values={"filters": 64, "learning_rate": 0.01},
           extra={"confusion": confusion, "layers": layers})
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


def test_screening_trials_are_shown_but_only_fully_trained_ones_are_ranked(project):
    _trial(project, "4", "COMPLETED", [0.9], values={"filters": 16, "tuner/epochs": 1})
    df = report.load_trials(project).set_index("trial")
    assert pd.isna(df.loc["4", "rank"]) and df.loc["4", "schedule"] == 1
    assert df["rank"].dropna().to_dict() == {"1": 1, "0": 2}


def test_a_search_with_no_fully_trained_trial_says_so_and_how_to_go_on(tmp_path, project):
    for trial_dir in project.glob("trial_*"):
        state.write_json(trial_dir / "trial.json", {
            **state.read_json(trial_dir / "trial.json"), "status": "FAILED"})
    _trial(project, "4", "COMPLETED", [0.3], values={"filters": 16, "tuner/epochs": 1})
    text, _ = report.write_report(project, tmp_path / "out")
    assert ("no fully trained model yet: the best screening trial, 4, reached 30.00% on a "
            "1-epoch schedule (of 3); run the search's command again to continue it") in text


def test_finalists_are_ranked_by_the_mean_of_their_seeds(tmp_path, project):
    finalist = {"filters": 64, "learning_rate": 0.01}
    _trial(project, "4", "COMPLETED", [0.69], values={**finalist, "tuner/replica": 1})
    _trial(project, "5", "COMPLETED", [0.67], values={**finalist, "tuner/replica": 2})
    _trial(project, "6", "COMPLETED", [0.8], values={"filters": 16, "learning_rate": 0.01})
    df = report.load_trials(project)
    assert list(df["trial"][:5]) == ["1", "4", "5", "6", "0"]  # 3 seeds before one lucky run
    assert df["val_mean"][0] == pytest.approx(0.69) and df["seeds"][0] == 3
    assert pd.isna(df["seeds"][3])
    text, _ = report.write_report(project, tmp_path / "out")
    assert "its configuration 69.00% +- 2.00% over 3 seeds" in text


def test_trials_of_two_id_widths_are_shown_and_tied_in_the_order_they_were_made(project):
    """A search made for 6 trials and extended to 14 has ids `5`, then `06` and `10`."""
    for trial_id in ("5", "10", "06"):  # three runs of one configuration: one mean, one score
        _trial(project, trial_id, "COMPLETED", [0.5, 0.75],
               values={"filters": 16, "learning_rate": 0.01, "tuner/replica": int(trial_id)})
    for trial_id in ("11", "7"):
        _trial(project, trial_id, "FAILED", [0.1], message="boom")
    df = report.load_trials(project)
    assert list(df["trial"]) == ["5", "06", "10", "1", "0", "2", "3", "7", "11"]
    for trial_id, default in (("7", 32), ("11", 64)):  # the space as each trial recorded it
        trial_file = project / f"trial_{trial_id}" / "trial.json"
        trial = state.read_json(trial_file)
        trial["hyperparameters"]["space"] = [
            {"class_name": "Choice", "config": {"name": "filters", "default": default}}]
        state.write_json(trial_file, trial)
    assert report.space_default_point(project) == {"filters": 64}  # the newest trial's


def test_running_trial_shows_as_interrupted_when_no_process_holds_the_search(project):
    df = report.load_trials(project).set_index("trial")
    assert df.loc["3", "status"] == "INTERRUPTED"
    # A dead run's process id, given since to a live process (this one): the lock is not held.
    (project / state.LOCK_FILE).write_text(f"process {os.getpid()}")
    assert report.load_trials(project).set_index("trial").loc["3", "status"] == "INTERRUPTED"
    with state.SearchLock(project):
        df = report.load_trials(project).set_index("trial")
    assert df.loc["3", "status"] == "RUNNING"


def test_a_search_held_on_another_machine_runs_while_its_chief_beats(project):
    # This machine's process of the same id says nothing about the other machine's.
    (project / state.LOCK_FILE).write_text(f"process {os.getpid()} on elsewhere")
    assert not report.search_is_running(project)
    beat = {"host": "elsewhere", "pid": os.getpid(), "port": 8000, "updated": time.time()}
    state.write_json(cluster.chief_path(project), beat)
    assert report.search_is_running(project)
    assert report.load_trials(project).set_index("trial").loc["3", "status"] == "RUNNING"
    state.write_json(cluster.chief_path(project), {**beat, "updated": time.time() - 60})
    assert not report.search_is_running(project)
    state.write_json(cluster.chief_path(project), {**beat, "pid": os.getpid() + 1})
    assert not report.search_is_running(project)  # another chief's heartbeat


def test_writes_csv_markdown_and_curves(project, tmp_path):
    text, written = report.write_report(project, tmp_path / "out")
    assert "best: trial 1 at 71.00% validation accuracy (+4.3 points" in text
    assert "failed: loss became nan at epoch 1" in text
    csv = pd.read_csv(tmp_path / "out" / "trials.csv", dtype={"trial": str})
    assert len(csv) == 4 and {"filters", "learning_rate"} <= set(csv.columns)
    markdown = (tmp_path / "out" / "summary.md").read_text()
    assert "| COMPLETED" in markdown and "curves.png" in markdown
    assert _png_size(tmp_path / "out" / "curves.png") == (990, 704)  # 2 trials side by side
    text, _ = report.write_report(project, tmp_path / "top", top=1)
    assert "filters=64" in text and "filters=32" not in text


def _png_size(path):
    """(width, height) of a PNG file, read from its header (it must be a PNG to have one)."""
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big")


def test_the_curves_draw_each_ranked_trials_own_history(project):
    from sweep.reporting import figures

    df = report.load_trials(project)
    fig = figures.curves_figure(project, df)
    accuracy_axes = [ax for ax in fig.axes if ax.get_ylabel() == "accuracy"]
    drawn = {ax.get_title().split(":")[0]: [list(line.get_ydata()) for line in ax.get_lines()
                                            if line.get_label() in ("training", "validation")]
             for ax in accuracy_axes}
    # ranked trials only (the failed and the running one are not), best first
    assert list(drawn) == ["trial 1", "trial 0"]
    assert drawn["trial 0"] == [pytest.approx([0.6, 0.72, 0.7]), pytest.approx([0.5, 0.62, 0.6])]
    assert drawn["trial 1"][1] == pytest.approx([0.7, 0.71])


def test_the_progress_plot_marks_each_trial_and_the_best_so_far(project):
    from sweep.reporting import figures

    ax = figures.progress_figure(project, report.load_trials(project)).axes[0]
    scored, failed = [c.get_offsets().tolist() for c in ax.collections]
    assert scored == [[0, 0.62], [1, 0.71]]  # trial order, best epoch's validation accuracy
    assert failed == [[2, 0.0], [3, 0.0]]
    [best] = [line for line in ax.get_lines() if line.get_label() == "best so far"]
    assert list(best.get_ydata()) == pytest.approx([0.62, 0.71, 0.71, 0.71])


def test_unreadable_trial_file_is_shown_not_fatal(project):
    (project / "trial_0" / "trial.json").write_text('{"trial_id": "0", "sta')
    df = report.load_trials(project).set_index("trial")
    assert df.loc["0", "status"] == "UNREADABLE"
    assert df.loc["1", "rank"] == 1


@pytest.mark.parametrize(("file", "text"), [
    ("trial.json", '{"trial_id": "0"}'), ("trial.json", "[]"),
    ("record.json", '{"history": [{"val_accuracy": 0.5}]}'), ("record.json", '{"history": [1]}'),
])
def test_trial_files_of_another_shape_are_shown_not_fatal(project, file, text):
    (project / "trial_0" / file).write_text(text)  # valid JSON, edited by hand
    df = report.load_trials(project).set_index("trial")
    assert df.loc["0", "status"] == "UNREADABLE" and "not as written" in df.loc["0", "reason"]
    assert df.loc["1", "rank"] == 1


@pytest.mark.parametrize("record", [{"settings": {}}, [1], {"settings": {"space": "x"}}])
def test_a_search_record_of_another_shape_is_refused_in_one_line(project, record):
    state.write_json(project / state.SETTINGS_FILE, record)  # edited by hand, or damaged
    with pytest.raises(SweepError, match="is not a search's record .* restore it from a copy"):
        report.load_trials(project)


def test_log_lines_of_another_shape_are_skipped(project, tmp_path):
    for log in (state.EVENTS_FILE, state.EVALUATIONS_FILE):
        (project / log).write_bytes(b'{"x": 1}\n[1]\n"text"\n\xff\xfe\n')
    state.append_line(project / state.EVALUATIONS_FILE, {"trial": "1", "test_accuracy": 0.7})
    assert report.latest_evaluations(project) == {"1": {"trial": "1", "test_accuracy": 0.7}}
    assert state.read_events(project) == []
    text, _ = report.write_report(project, tmp_path / "out", fmt="markdown")
    assert "best: trial 1" in text


def test_finds_the_only_search_or_asks_for_one(project):
    runs = project.parent
    assert report.find_project(runs, None) == project
    set_aside = runs / f"{project.name}{state.SET_ASIDE_MARK}20261127-170000"  # by --fresh
    state.write_json(set_aside / state.SETTINGS_FILE, {})
    assert report.find_project(runs, None) == project
    assert report.find_project(runs, set_aside.name) == set_aside
    state.write_json(runs / "other" / state.SETTINGS_FILE, {})
    with pytest.raises(SweepError, match="choose one with --project"):
        report.find_project(runs, None)
    with pytest.raises(SweepError, match="No search at"):
        report.find_project(runs, "missing")


def test_unreadable_records_are_shown_even_when_no_trial_can_be_read(project, tmp_path):
    (project / "trial_1" / state.TRIAL_RECORD_FILE).write_text("{}")  # no history
    df = report.load_trials(project).set_index("trial")
    assert df.loc["1", "status"] == "UNREADABLE" and df.loc["0", "rank"] == 1
    for trial_file in project.glob(f"trial_*/{state.TRIAL_FILE}"):
        trial_file.write_text("{broken")
    assert set(report.load_trials(project)["status"]) == {"UNREADABLE"}
    text, _ = report.write_report(project, tmp_path / "out", fmt="markdown")
    assert "UNREADABLE" in text


def test_a_report_folder_keeps_no_figure_of_an_earlier_report(project, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "split_study.png").write_bytes(b"an earlier search's study")  # none in this one
    _, written = report.write_report(project, out, fmt="markdown")
    assert not (out / "split_study.png").exists()
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in written)


def test_an_output_that_is_a_file_is_refused_in_one_line(project, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(SweepError, match=r"--output .*notes.txt cannot be the report's folder"):
        report.write_report(project, tmp_path / "notes.txt", fmt="markdown")
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_formats_json_csv_markdown_and_the_progress_plot(project, tmp_path, monkeypatch):
    import io
    import json

    def no_forest(df):
        raise AssertionError("csv and json fit no importance")

    monkeypatch.setattr(report, "hyperparameter_importance", no_forest)
    text, written = report.write_report(project, tmp_path / "out", fmt="json")
    parsed = json.loads(text)
    assert [t["trial"] for t in parsed["trials"]] == ["1", "0", "2", "3"]
    assert parsed["challenge_baseline"] == 0.667 and parsed["split"]["seed"] == 0
    csv_text, csv_written = report.write_report(project, tmp_path / "out", fmt="csv")
    assert len(pd.read_csv(io.StringIO(csv_text))) == 4
    top_two = report.write_report(project, tmp_path / "out", top=2, fmt="csv")[0]
    assert list(pd.read_csv(io.StringIO(top_two), dtype={"trial": str})["trial"]) == ["1", "0"]
    top_one = json.loads(report.write_report(project, tmp_path / "out", top=1, fmt="json")[0])
    assert [t["trial"] for t in top_one["trials"]] == ["1"]
    assert written == csv_written == [] and not (tmp_path / "out").exists()  # printed only
    monkeypatch.undo()
    markdown, written = report.write_report(project, tmp_path / "out", fmt="markdown")
    assert markdown.startswith("# demo") and "![search progress](progress.png)" in markdown
    assert (tmp_path / "out" / "summary.md").read_text() == markdown
    assert _png_size(tmp_path / "out" / "progress.png") == (770, 396)
    figures = {"curves.png", "progress.png", "effects.png", "parallel.png", "pareto.png",
               "split.png", "confusion.png"}
    assert {p.name for p in written} == {"trials.csv", "summary.md", "report.html", *figures}
    with pytest.raises(SweepError, match="Unknown report format 'pdf'"):
        report.write_report(project, tmp_path / "out", fmt="pdf")


def test_each_figures_data_holds_the_numbers_it_draws(project):
    from sweep.reporting import figures

    df = report.load_trials(project)
    progress = figures.progress_data(df)
    assert list(progress["trial"]) == ["0", "1", "2", "3"]  # the order trials ran
    assert list(progress["scored"]) == [True, True, False, False]
    assert list(progress["best_so_far"]) == pytest.approx([0.62, 0.71, 0.71, 0.71])
    (project / "trial_old").mkdir()  # a folder copied in by hand: no number, placed last
    progress = figures.progress_data(report.load_trials(project))
    assert list(progress["trial"]) == ["0", "1", "2", "3", "old"]
    assert list(progress["order"]) == [0, 1, 2, 3, 4]
    effects = figures.effects_data(df, report.hyperparameter_columns(df))
    assert set(effects) == {"filters", "learning_rate"}
    assert effects["filters"].to_dict("list") == {"value": [64, 32], "val_accuracy": [0.71, 0.62]}
    record = state.read_json(project / state.SETTINGS_FILE)
    counts = figures.split_data(record)
    assert list(counts.index) == CLASS_NAMES and counts.loc["dog", "train"] == 15
    assert counts["val"].tolist() == [12 - i for i in range(10)]
    matrix = figures.confusion_data(state.read_json(project / "trial_1" / state.TRIAL_RECORD_FILE)
                                    ["confusion"])
    per_class = figures.per_class_accuracy(matrix)
    assert per_class["validation images"].tolist() == [99] * 10
    assert per_class["accuracy"].tolist() == pytest.approx([90 / 99] * 10)
    drawn = figures.draw_split(counts, record["split"]).axes[0]
    assert [bar.get_height() for bar in drawn.patches[:10]] == counts["train"].tolist()


def _chromium(*args):
    """Headless Chromium as root on a closed network (flags from the project's notes)."""
    import shutil
    import subprocess
    import tempfile

    binary = shutil.which("chromium")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("Chromium is required in CI (.ci/run installs Debian's chromium)")
        pytest.skip("chromium is not installed")
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", f"--user-data-dir={profile}", *args],
            capture_output=True, text=True, timeout=120,
        )


def test_html_page_renders_its_sections_and_images_in_chromium(project, tmp_path):
    import numpy as np
    from PIL import Image

    for number in range(4, 14):  # enough completed trials for the importance and the fold
        _trial(project, str(number), "COMPLETED", [0.5 + number / 100],
               values={"filters": 16 * number, "learning_rate": 0.001 * number})
    text, written = report.write_report(project, tmp_path / "out", fmt="html")
    page = tmp_path / "out" / "report.html"
    assert text == f"wrote {page}" and page in written
    assert "src=\"http" not in page.read_text()  # self-contained: images are embedded

    dom = _chromium("--dump-dom", page.as_uri()).stdout
    for section in ("summary", "ranking", "curves", "progress", "effects", "tradeoffs", "split",
                    "split-study", "best-trial", "failed", "provenance"):
        assert f'<section id="{section}">' in dom
    # curves, progress, effects, parallel axes, Pareto fronts, split, confusion: each decoded
    assert 'data-images-loaded="7/7"' in dom
    # the ranking: one column per varying hyperparameter, the rows past the tenth folded away
    assert "<th>filters</th>" in dom and "<th>hyperparameters</th>" not in dom
    assert "<summary>4 more trials</summary>" in dom  # 14 trials
    assert "importance" in dom and "learning_rate" in dom

    shot = tmp_path / "shot.png"
    _chromium("--window-size=1280,3000", f"--screenshot={shot}", page.as_uri())
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert pixels.shape[:2] == (3000, 1280)
    not_white = (pixels.sum(axis=2) < 720).mean()
    orange = ((pixels[..., 0] > 200) & (pixels[..., 1] > 100) & (pixels[..., 1] < 160)
              & (pixels[..., 2] < 80)).sum()  # matplotlib's tab:orange: the plots are drawn
    assert not_white > 0.05 and orange > 500


SPACE = [  # as KerasTuner records a space in trial.json
    {"class_name": "Choice", "config": {"name": "filters", "default": 32, "conditions": []}},
    {"class_name": "Float", "config": {"name": "learning_rate", "default": 0.002,
                                       "conditions": []}},
    {"class_name": "Choice", "config": {"name": "units", "default": 64, "conditions": [
        {"class_name": "Parent", "config": {"name": "filters", "values": [64]}}]}},
]


def test_the_table_shows_what_each_trial_changes_and_fits_a_terminal(tmp_path, project):
    _trial(project, "4", "COMPLETED", [0.3],
           values={"filters": 64, "learning_rate": 0.002, "units": 64, "tuner/epochs": 1})
    _trial(project, "5", "RUNNING", [])  # no epoch yet: its counts are missing
    for path in project.glob("trial_*/trial.json"):
        trial = state.read_json(path)
        state.write_json(path, {**trial, "hyperparameters": {**trial["hyperparameters"],
                                                             "space": SPACE}})
    text, _ = report.write_report(project, tmp_path / "out")
    assert text.count("default point") == 3  # trials 0, 3 and 5
    assert "filters=64 learning_rate=0.01" in text  # trial 1
    assert "filters=64 units=64" in text and "tuner/" not in text  # trial 4: units is new
    assert "2.0000" not in text  # trial 1's best epoch, an integer despite trial 5's gap

    narrow, _ = report.write_report(project, tmp_path / "out", width=105)
    table = narrow[narrow.index("rank"):].splitlines()
    assert max(map(len, table)) <= 105
    assert any("filters=64 learning" in row and row.rstrip().endswith("…") for row in table)
    assert table[-1] == "(hyperparameters cut to 105 columns: all in trials.csv)"
    assert "filters,learning_rate,units" in (tmp_path / "out" / "trials.csv").read_text()


def test_pareto_fronts_and_the_best_trial_within_limits(project, tmp_path):
    from sweep.reporting import figures, tradeoffs

    costs = {"0": (1000, 2.0), "1": (5000, 1.0)}  # trial: params, ms an image at batch 1
    for trial_id, val, (params, ms) in [("4", 0.65, (800, 3.0)), ("5", 0.6, (3000, 0.5)),
                                        ("6", 0.55, (6000, 4.0))]:
        _trial(project, trial_id, "COMPLETED", [val], values={"filters": 8 * int(trial_id)})
        costs[trial_id] = params, ms
    for trial_id, (params, ms) in costs.items():
        path = project / f"trial_{trial_id}" / state.TRIAL_RECORD_FILE
        state.write_json(path, {**state.read_json(path), "params": params, "latency_ms_1": ms,
                                "latency_ms_256": ms / 4})
    df = report.load_trials(project)
    # val: 1 0.71 (5000, 1.0 ms), 4 0.65 (800, 3.0), 0 0.62 (1000, 2.0), 5 0.60 (3000, 0.5),
    # 6 0.55 (6000, 4.0): trial 6 is beaten on both by trial 1, trial 0 by trial 4 on size.
    assert list(tradeoffs.pareto_front(df, "params")["trial"]) == ["4", "1"]
    assert list(tradeoffs.pareto_front(df, "latency_ms_1")["trial"]) == ["5", "1"]
    assert tradeoffs.best_within(df, {"params": 4000})["trial"] == "4"
    assert tradeoffs.best_within(df, {"params": 4000, "latency_ms_1": 2.5})["trial"] == "0"
    assert tradeoffs.best_within(df, {"params": 500}) is None
    assert tradeoffs.limits_line(df.iloc[:0], {"params": 500}) == "no fully trained trial yet"
    fronts = tradeoffs.front_table(df).set_index("trial")["front"].to_dict()
    assert fronts == {"1": "parameters, ms an image (batch 1)", "4": "parameters",
                      "5": "ms an image (batch 1)"}
    [size, speed] = figures.draw_pareto(figures.pareto_data(df)).axes
    [front] = [line for line in size.get_lines() if line.get_label() == "Pareto front"]
    assert list(front.get_xdata()) == [800, 5000] and size.get_xlabel() == "parameters"

    text, _ = report.write_report(project, tmp_path / "out",
                                  limits={"params": 4000, "latency_ms_1": 2.5})
    assert ("best within parameters <= 4000 and ms an image (batch 1) <= 2.5: trial 0 at 62.00 %"
            .replace(" %", "%") in text)
    header = next(line for line in text.splitlines() if line.lstrip().startswith("rank"))
    assert " ms " in header  # latency at batch 1 (trials.csv also has it at batch 256)
    for limits, message in [({"flops": 1}, "No limit on flops"), ({"params": 0}, "positive")]:
        with pytest.raises(SweepError, match=message):
            report.write_report(project, tmp_path / "refused", limits=limits)
    assert not (tmp_path / "refused").exists()


def test_the_parallel_axes_place_each_completed_trial_on_each_varying_hyperparameter(project):
    from sweep.reporting import figures

    for number, activation in [(4, "relu"), (5, None), (6, None)]:
        values = {"filters": 8 * number, "learning_rate": 10.0 ** -number}
        _trial(project, str(number), "COMPLETED", [0.3 + number / 100],
               values={**values, **({"activation": activation} if activation else {})})
    df = report.load_trials(project)
    parallel = figures.parallel_data(df, report.hyperparameter_columns(df))
    placed = parallel.positions
    assert list(placed.columns) == ["filters", "learning_rate"]  # one activation: no axis
    assert set(placed.index) == {"0", "1", "4", "5", "6"}  # completed: not 2 (failed), 3
    # 5 learning rates over 4 decades: a log axis, 1e-6 at the bottom, 1e-2 at the top
    assert placed["learning_rate"].to_dict() == pytest.approx(
        {"6": 0.0, "5": 0.25, "4": 0.5, "0": (math.log10(0.002) + 6) / 4, "1": 1.0})
    # 4 filter sizes: choices, evenly spaced
    assert parallel.ticks["filters"] == [(0.0, "32"), (1 / 3, "40"), (2 / 3, "48"), (1.0, "64")]
    assert parallel.scores["1"] == 0.71
    lines = figures.draw_parallel(parallel).axes[0].get_lines()
    trial_lines = [line for line in lines if list(line.get_xdata()) == [0, 1]]
    assert len(trial_lines) == 5 and list(trial_lines[-1].get_ydata()) == [1.0, 1.0]  # best on top


def test_status_reads_past_a_damaged_oracle_and_heartbeats(project):
    from sweep.reporting import status

    record = state.read_json(project / state.SETTINGS_FILE)
    state.write_json(project / state.SETTINGS_FILE,
                     {**record, "settings": {**record["settings"], "max_trials": 4}})
    expected = status.search_status(project)
    (project / state.ORACLE_FILE).write_text("[1]")  # valid JSON of another shape
    for name in (cluster.CHIEF_FILE, f"{cluster.WORKER_PREFIX}a.json"):
        state.write_json(project / cluster.CLUSTER_DIR / name, [1])
    state.write_json(project / cluster.CLUSTER_DIR / f"{cluster.WORKER_PREFIX}b.json",
                     {"id": "b", "host": "elsewhere", "pid": 1, "updated": "yesterday"})
    assert status.search_status(project) == expected
    assert state.ongoing_trials(project) is None and cluster.read_workers(project) == {}


def test_status_says_where_an_unfinished_trial_is_in_its_own_schedule_and_the_time_left(project):
    from sweep.reporting import status

    record = state.read_json(project / state.SETTINGS_FILE)
    record["settings"]["max_trials"] = 10
    state.write_json(project / state.SETTINGS_FILE, record)
    assert "interrupted: trial 3, epoch 1/3, last epoch" in status.search_status(project)
    (project / "trial_5").mkdir()
    (project / "trial_5" / "trial.json").write_text("{torn")  # unreadable: a blank row
    shown = status.search_status(project)
    assert "interrupted: trial 3, epoch 1/3, last epoch" in shown and "(epoch 2)" in shown
    (project / "trial_5" / "trial.json").unlink()
    # A 50-epoch rung of a search of 60: its first epoch (tracing) does not count.
    history = [{"epoch": i, "seconds": s, "val_accuracy": 0.3} for i, s in
               enumerate([400.0, 110.0, 120.0, 130.0])]
    _trial(project, "3", "RUNNING", [], values={"filters": 16, "tuner/epochs": 50})
    state.write_json(project / "trial_3" / state.TRIAL_RECORD_FILE,
                     {"history": history, "train_seconds": 760.0})
    backup = project / "trial_3" / state.BACKUP_DIR
    backup.mkdir()
    state.write_json(backup / state.BACKUP_STATE_FILE, {"epoch": 4, "weights": "epoch4.weights.h5"})
    line = status.search_status(project).splitlines()[-1]
    assert line.startswith("interrupted: trial 3, epoch 4/50, last epoch ")
    assert line.endswith(", about 1h32m00s of training left")  # 46 epochs at 120 s
    assert state.schedule_time_left(history, 4) == 0
    # Its backup left behind (gpu_search.sh prepare, over 60 MB): it would start again.
    (backup / state.BACKUP_STATE_FILE).unlink()
    line = status.search_status(project).splitlines()[-1]
    assert line.endswith(", no backup: it starts again from epoch 1")
    # A trial whose fit ended (an early stop) before the run stopped: nothing left to train.
    state.write_json(project / "trial_3" / state.TRIAL_RECORD_FILE,
                     {"history": history, "train_seconds": 760.0, state.FIT_ENDED: True})
    line = status.search_status(project).splitlines()[-1]
    assert line.endswith(", its training done (it ends when resumed)")


def test_evaluate_takes_each_named_trial_once_in_the_order_named(project):
    from sweep.evaluate import choose_trials

    assert choose_trials(project, ["0", "1", "0"], None) == ["0", "1"]
