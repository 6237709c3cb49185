"""The Python API, export and predict: same engine as the CLI, and a model that travels alone."""

import io
import json
import os
import pickle
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import REPO, run_sweep, sweep_here

import sweep
from sweep.errors import SweepError

SEARCH = ["--space", "tiny_cnn", "--train-size", "1000", "--val-size", "1000",
          "--max-trials", "3", "--max-epochs", "3", "--seed", "3", "--quiet"]

# Runs in a fresh interpreter that never imports sweep: rebuild the validation part from the
# official batches and the recorded seed, and score the exported model on raw uint8 images.
REPRODUCE = """
import json, pickle, sys
import numpy as np, keras
batches, model_path = sys.argv[1], sys.argv[2]
meta = json.load(open(model_path[:-len(".keras")] + ".json"))
x, y = [], []
for i in range(1, 6):
    b = pickle.load(open(f"{batches}/data_batch_{i}", "rb"), encoding="bytes")
    x.append(np.asarray(b[b"data"], np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    y.append(np.asarray(b[b"labels"]))
x, y = np.concatenate(x), np.concatenate(y)
split = meta["split"]
order = np.random.default_rng(split["seed"]).permutation(len(y))
val = order[split["train_size"]:split["train_size"] + split["val_size"]]
model = keras.saving.load_model(model_path)
predicted = model.predict(x[val], verbose=0).argmax(axis=1)
print(json.dumps({"accuracy": float((predicted == y[val]).mean()),
                  "sweep_imported": "sweep" in sys.modules}))
"""


@pytest.mark.cifar
def test_api_cli_export_and_predict(real_cifar_batches, real_cifar_train_only, tmp_path):
    ran = run_sweep("run", *SEARCH, "--data", str(real_cifar_train_only), cwd=tmp_path)
    assert ran.returncode == 0, ran.stdout + ran.stderr

    # One engine: the API and the CLI rank the same trials the same way.
    search = sweep.Search.open(tmp_path / "runs")
    api_ranking = list(search.trials()["trial"])
    cli = json.loads(sweep_here("report", "--format", "json", cwd=tmp_path).stdout)
    assert [t["trial"] for t in cli["trials"]] == api_ranking and len(api_ranking) == 3
    csv = pd.read_csv(io.StringIO(sweep_here("report", "--format", "csv", cwd=tmp_path).stdout))
    assert len(csv) == 3 and list(csv.columns) == list(search.trials().columns)
    best = search.best()
    assert best["trial"] == api_ranking[0] and best["hyperparameters"]["conv_blocks"] in (1, 2)
    assert search.plot_history().axes and search.plot_progress().axes

    exported = run_sweep("export", "--output", "out/best.keras", cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    model_path = tmp_path / "out" / "best.keras"
    sidecar = json.loads(model_path.with_suffix(".json").read_text())
    assert sidecar["trial"] == best["trial"]
    assert sidecar["split"]["indices_sha256"]
    assert sidecar["hyperparameters"] == best["hyperparameters"]

    fresh = subprocess.run([sys.executable, "-c", REPRODUCE, str(real_cifar_batches),
                            str(model_path)], capture_output=True, text=True, cwd=tmp_path)
    assert fresh.returncode == 0, fresh.stderr
    reproduced = json.loads(fresh.stdout.strip().splitlines()[-1])
    assert not reproduced["sweep_imported"]
    assert abs(reproduced["accuracy"] - best["val_accuracy"]) <= 0.005, reproduced

    # predict: test images written as PNG files at twice their size; `predict` gives each the
    # class the model gives the same pixels (read back and resized to 32x32 as it reads them).
    import keras
    from PIL import Image

    with open(real_cifar_batches / "test_batch", "rb") as f:
        batch = pickle.load(f, encoding="bytes")
    x = np.asarray(batch[b"data"], np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)[:3]
    files, seen = [], []
    for i, image in enumerate(x):
        files.append(tmp_path / f"image_{i}.png")
        Image.fromarray(image).resize((64, 64)).save(files[-1])
        with Image.open(files[-1]) as written:
            seen.append(np.asarray(written.convert("RGB").resize((32, 32)), np.uint8))
    expected = keras.saving.load_model(model_path).predict(np.stack(seen), verbose=0)
    shown = run_sweep("predict", str(model_path), *map(str, files), cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    from sweep.data import CLASS_NAMES

    for line, path, row in zip(shown.stdout.strip().splitlines(), files, expected, strict=True):
        label, percent = re.fullmatch(rf"{re.escape(str(path))}: (\w+) \(([\d.]+)%\)",
                                      line).groups()
        assert label == CLASS_NAMES[row.argmax()] and abs(float(percent) - 100 * row.max()) < 0.5


def test_api_mistakes_raise_the_project_error(tmp_path):
    with pytest.raises(SweepError, match="Unknown search space 'nope'"):
        sweep.Search("nope", directory=tmp_path).run()
    with pytest.raises(SweepError, match="No search under"):
        sweep.Search.open(tmp_path)
    with pytest.raises(SweepError, match="is not a duration"):
        sweep.Search(time_budget="soon")


def test_predict_errors_are_short(tmp_path, monkeypatch):
    missing = run_sweep("predict", "nope.keras", "a.png", cwd=tmp_path)
    assert missing.returncode == 2 and "No model at nope.keras" in missing.stderr
    from sweep.models import predict_files

    (tmp_path / "junk.keras").write_text("junk")
    from PIL import Image

    Image.new("RGB", (32, 32)).save(tmp_path / "a.png")
    with zipfile.ZipFile(tmp_path / "empty.keras", "w") as archive:  # a zip, but no model's
        archive.writestr("notes.txt", "no config.json here")
    for junk in ("junk.keras", "empty.keras"):
        with pytest.raises(SweepError, match=rf"{junk} is not a model Keras can read \("):
            predict_files(tmp_path / junk, [tmp_path / "a.png"])
    with pytest.raises(SweepError, match="a.png is not a .keras model"):  # arguments swapped
        predict_files(tmp_path / "a.png", [tmp_path / "junk.keras"])
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # so a.png counts as a huge image
    with pytest.raises(SweepError, match="Cannot read image .*a.png: Image size"):
        predict_files(tmp_path / "junk.keras", [tmp_path / "a.png"])


@pytest.mark.cifar
def test_quickstart_notebook_runs_headless(real_cifar_train_only, tmp_path):
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(REPO / "examples" / "quickstart.ipynb", as_version=4)
    os.environ.update(SWEEP_DATA=str(real_cifar_train_only), SWEEP_RUNS=str(tmp_path / "runs"),
                      QUICKSTART_TRIALS="2", QUICKSTART_EPOCHS="1")
    try:
        NotebookClient(notebook, timeout=600, kernel_name="python3",
                       resources={"metadata": {"path": str(tmp_path)}}).execute()
    finally:
        for key in ("SWEEP_DATA", "SWEEP_RUNS", "QUICKSTART_TRIALS", "QUICKSTART_EPOCHS"):
            os.environ.pop(key)
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("text/html" in o.get("data", {}) for o in outputs)  # the trials DataFrame
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 2  # the two plots
    assert Path(tmp_path / "runs" / "quickstart" / "best.keras").is_file()
