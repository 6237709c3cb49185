"""Shared fixtures: tiny synthetic CIFAR-10 layouts for unit tests, the real copy for e2e tests.

The real copy is built once from ../shared/datasets/cifar10/build.py into .data/ (or taken from
$SWEEP_TEST_DATA, which .ci/run sets), then exposed without its test batch: a search that tried to
read the test images would fail.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

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
