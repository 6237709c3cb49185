"""Shared fixtures: tiny synthetic CIFAR-10 layouts for unit tests, the real copy for e2e tests.

The real copy is built once from ../shared/datasets/cifar10/build.py into .data/ (or taken from
$SWEEP_TEST_DATA), then exposed without its test batch: a search that tried to
read the test images would fail.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from sweep import state

REPO = Path(__file__).resolve().parent.parent
SHARED_BUILD = REPO.parent / "shared" / "datasets" / "cifar10" / "build.py"
TRAIN_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]


def write_batches(folder: Path, per_batch: int, seed: int = 0, with_test: bool = True) -> Path:
    """A cifar-10-batches-py folder of random images in the official pickle format."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    names = TRAIN_BATCHES + (["test_batch"] if with_test else [])
    for name in names:
        batch = {
            b"data": rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8),
            b"labels": rng.integers(0, 10, size=per_batch).tolist(),
        }
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    return folder


@pytest.fixture
def tiny_cifar(tmp_path) -> Path:
    """1,000 synthetic training images (5 x 200) plus a test batch."""
    return write_batches(tmp_path / "cifar-10-batches-py", per_batch=200)


@pytest.fixture(scope="session")
def real_cifar_batches() -> Path:
    """The real CIFAR-10 (official layout), built once from ../shared."""
    given = os.environ.get("SWEEP_TEST_DATA")
    root = Path(given) if given else REPO / ".data" / "cifar10"
    batches = root / "cifar-10-batches-py"
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".build.lock", "w") as lock:  # pytest-xdist's workers build it once
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (batches / "data_batch_1").is_file():
            if not SHARED_BUILD.is_file():
                pytest.skip(f"real CIFAR-10 needs {SHARED_BUILD}")
            subprocess.run([sys.executable, str(SHARED_BUILD), str(root)], check=True)
    return batches


@pytest.fixture(scope="session")
def real_cifar_train_only(real_cifar_batches, tmp_path_factory) -> Path:
    """The real training batches linked into a folder that has no test batch at all."""
    folder = tmp_path_factory.mktemp("train_only") / "cifar-10-batches-py"
    folder.mkdir()
    for name in TRAIN_BATCHES:
        (folder / name).symlink_to(real_cifar_batches / name)
    return folder


def run_sweep(*args: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """`python -m sweep ...` in a real subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "sweep", *args],
        cwd=cwd, capture_output=True, text=True, timeout=timeout,
    )


# Calls the CLI, then says whether TensorFlow or Keras was imported on the way.
IMPORT_PROBE = """
import sys
from pathlib import Path
from sweep.cli import main
try:
    status = main(sys.argv[1:])
except SystemExit as e:
    status = e.code
print(sorted(m for m in ("tensorflow", "keras") if m in sys.modules))
sys.exit(status)
"""


def run_probed(*args: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """`python -m sweep ...` in a real subprocess whose last stdout line lists which of
    TensorFlow and Keras it imported: a refusal must come before they load."""
    return subprocess.run([sys.executable, "-c", IMPORT_PROBE, *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def sweep_here(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """`python -m sweep ...` through `main(argv)` in this process, for the commands that load no
    TensorFlow (`report`, `status`): the same parser and handlers without a new Python each."""
    from sweep.cli import main

    stdout, stderr, before = io.StringIO(), io.StringIO(), os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            status = main(list(args))
    finally:
        os.chdir(before)
    return subprocess.CompletedProcess(args, status, stdout.getvalue(), stderr.getvalue())


_STARTED: list[subprocess.Popen] = []


def start_sweep(*args: str, cwd: Path) -> subprocess.Popen:
    """`python -m sweep ...` started in the background, its output collected; killed when the
    test ends if it still runs (`kill_what_the_test_started`)."""
    process = subprocess.Popen([sys.executable, "-m", "sweep", *args], cwd=cwd,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    _STARTED.append(process)
    return process


@pytest.fixture(autouse=True)
def kill_what_the_test_started():
    """A failed test leaves no chief waiting for workers, and no stopped worker, behind."""
    yield
    while _STARTED:
        process = _STARTED.pop()
        if process.poll() is None:
            process.kill()
            process.communicate()


def wait_for(process: subprocess.Popen, condition, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, process.stdout.read()
        assert time.monotonic() < deadline, "the search never reached the expected point"
        time.sleep(0.05)


def signal_when(process: subprocess.Popen, condition, signum=signal.SIGKILL,
                timeout: float = 300) -> str:
    """Send `signum` to `process` as soon as `condition()` holds; return what it printed."""
    wait_for(process, condition, timeout)
    process.send_signal(signum)
    output = process.communicate(timeout=120)[0]
    return output


def train_starts(project: Path) -> list[tuple[str, int]]:
    """Every start of a trial's training, with the epoch it started at, in order."""
    from sweep import state

    return [(e["trial"], e["epoch"]) for e in state.read_events(project)
            if e["event"] == "train_start"]


def statuses(project: Path) -> dict[str, str]:
    return {p.parent.name: json.loads(p.read_text())["status"]
            for p in project.glob("trial_*/trial.json")}


def epochs_recorded(project: Path, trial_id: str) -> int:
    path = project / f"trial_{trial_id}" / "record.json"
    try:
        return len(json.loads(path.read_text())["history"])
    except (FileNotFoundError, json.JSONDecodeError):
        return 0


def backed_up_epochs(project: Path, trial_id: str) -> int:
    path = project / f"trial_{trial_id}" / state.BACKUP_DIR / state.BACKUP_STATE_FILE
    try:
        return json.loads(path.read_text())["epoch"]
    except (FileNotFoundError, json.JSONDecodeError):
        return 0
