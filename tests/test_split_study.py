"""The split study (`python -m sweep splits`) on a real, tiny search: each retraining recorded
once, on the splits it claims, resumed where it stopped, and shown by the report."""

import conftest
import pytest

import sweep
from sweep import data, state
from sweep.errors import SweepError


def test_the_best_trial_retrained_on_random_and_stratified_splits(tmp_path, tiny_cifar):
    search = sweep.Search("tiny_cnn", directory=tmp_path / "runs", tuner="random", max_trials=2,
                          max_epochs=1, finalists=0, train_size=100, val_size=100,
                          data=str(tiny_cifar), quiet=True)
    search.run(say=None)
    best = search.best()["trial"]
    lines = []
    search.study_splits(repeats=1, quiet=True, say=lines.append)
    summary = search.study_splits(repeats=2, quiet=True, say=lines.append)  # resumes: 1 more each

    runs = state.read_lines(search.project_dir / state.SPLITS_FILE)
    assert [(r["kind"], r["seed"]) for r in runs] == [
        ("random", 1000), ("stratified", 1000), ("random", 1001), ("stratified", 1001)]
    assert {r["trial"] for r in runs} == {best} and len(lines) == 4
    images, _ = data.load_training_images(tiny_cifar)
    for run in runs:  # each on the split it names, never the search's own
        split = data.make_split(images, 100, 100, run["seed"], run["kind"])
        assert run["indices_sha256"] == split.record["indices_sha256"]
        assert run["train_class_counts"] == split.record["train_class_counts"]
    assert {r["indices_sha256"] for r in runs}.isdisjoint(
        {state.read_json(search.project_dir / state.SETTINGS_FILE)["split"]["indices_sha256"]})
    assert all(set(r["train_class_counts"].values()) == {10} for r in runs[1::2])
    assert summary.set_index("kind")["runs"].to_dict() == {"random": 2, "stratified": 2}
    mean = sum(r["val_accuracy"] for r in runs[::2]) / 2
    assert summary.set_index("kind").loc["random", "val_mean"] == pytest.approx(mean)

    text = search.report(format="markdown", output=tmp_path / "out")
    assert "## Does the split matter?" in text and "![the same configuration" in text
    assert (tmp_path / "out" / "split_study.png").is_file()
    with pytest.raises(SweepError, match="No trial 99"):
        search.study_splits(trial="99", say=None)
    unknown = conftest.run_probed("splits", "--trial", "99", "--data", str(tiny_cifar),
                                  cwd=tmp_path)
    assert unknown.returncode == 2 and "No trial 99" in unknown.stderr
    assert unknown.stdout.strip() == "[]"  # refused before TensorFlow loads
    with (state.SearchLock(search.project_dir / state.SPLITS_DIR),  # another study running
          pytest.raises(SweepError, match="splits is in use by process")):
        search.study_splits(repeats=3, say=None)
    other = conftest.write_batches(tmp_path / "other" / "cifar-10-batches-py", 200, seed=1)
    elsewhere = sweep.Search.open(tmp_path / "runs", data=str(other))
    with pytest.raises(SweepError, match="differs from the one .* was searched on"):
        elsewhere.study_splits(repeats=3, say=None)
    assert len(state.read_lines(search.project_dir / state.SPLITS_FILE)) == 4  # nothing added
