"""Where CIFAR-10 comes from, and the fixed split every search is held to.

Only this module knows where the images live. `load_training_images` reads the five training
batches and never the test batch: the 10,000 test images stay untouched by a search, and only an
explicit evaluation may ask for them.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sweep.errors import SweepError

DATA_ENV = "SWEEP_DATA"
TRAIN_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]
TEST_BATCH = "test_batch"
IMAGE_SHAPE = (32, 32, 3)
TRAINING_IMAGES = 50_000  # in the five official training batches
BATCHES_DIR = "cifar-10-batches-py"
ARCHIVE = "cifar-10-python.tar.gz"
CLASS_NAMES = [
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
]
# Keras's own download of CIFAR-10 (keras.datasets.cifar10.load_data): same cache entry and hash,
# so a copy Keras already downloaded on this machine is reused, and ours is reused by Keras.
KERAS_CACHE_NAME = "cifar-10-batches-py-target"
KERAS_ORIGIN = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
KERAS_SHA256 = "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"
HOW_TO_GIVE_DATA = (
    f"Give a local copy with --data PATH or {DATA_ENV}=PATH "
    f"(a {BATCHES_DIR} folder or {ARCHIVE})."
)


@dataclass(frozen=True)
class Images:
    """Images as uint8 (N, 32, 32, 3) and integer labels (N,)."""

    x: np.ndarray
    y: np.ndarray


@dataclass(frozen=True)
class Split:
    """The fixed training/validation parts of a search, normalized with training statistics."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    record: dict


def _decode_batch(raw: bytes, where: Path) -> tuple[np.ndarray, np.ndarray]:
    """One pickled batch of the official layout; anything else (a damaged or foreign file) is
    a `SweepError` naming it."""
    try:
        batch = pickle.loads(raw, encoding="bytes")
        x = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        y = np.asarray(batch[b"labels"], dtype=np.int64).reshape(-1)
    except Exception as e:  # noqa: BLE001 - unpickling a damaged file can raise almost anything
        reason = f"{type(e).__name__}: {str(e).rstrip('.')}"
        raise SweepError(f"{where} is not a CIFAR-10 batch ({reason}). " + HOW_TO_GIVE_DATA) \
            from None
    if len(x) != len(y):
        raise SweepError(f"{where} holds {len(x)} images but {len(y)} labels. "
                         + HOW_TO_GIVE_DATA)
    return x.transpose(0, 2, 3, 1), y


def _read_batches_dir(folder: Path, names: list[str]) -> list[bytes]:
    try:
        return [(folder / name).read_bytes() for name in names]
    except OSError as e:
        raise SweepError(f"{e.filename} cannot be read ({e.strerror}).") from None


def _read_archive(archive: Path, names: list[str]) -> list[bytes]:
    try:
        with tarfile.open(archive, "r:gz") as tar:
            return [tar.extractfile(f"{BATCHES_DIR}/{name}").read() for name in names]
    except (tarfile.TarError, KeyError, OSError, EOFError) as e:
        raise SweepError(f"{archive} is not a readable {ARCHIVE} ({e}).") from None


def _keras_cached_copy() -> Path:
    """The folder Keras's downloader and cache give, downloading on first use."""
    import keras

    try:
        path = keras.utils.get_file(
            fname=KERAS_CACHE_NAME, origin=KERAS_ORIGIN, extract=True, file_hash=KERAS_SHA256
        )
    except Exception as e:  # noqa: BLE001 - any download failure means the same to the user
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise SweepError(
            f"CIFAR-10 is not in Keras's cache and could not be downloaded ({reason}). "
            + HOW_TO_GIVE_DATA
        ) from None
    return Path(path) / BATCHES_DIR


def resolve_source(data: str | os.PathLike | None) -> Path:
    """The batches folder or archive to read: `--data`, else `$SWEEP_DATA`, else Keras's cache."""
    given = data or os.environ.get(DATA_ENV)
    if not given:
        return _keras_cached_copy()
    path = Path(given).expanduser()
    candidates = [path, path / BATCHES_DIR, path / ARCHIVE]
    for candidate in candidates:
        if candidate.is_dir() and (candidate / TRAIN_BATCHES[0]).is_file():
            return candidate
        if candidate.is_file() and candidate.name.endswith(".tar.gz"):
            return candidate
    raise SweepError(f"No CIFAR-10 found at {path}. " + HOW_TO_GIVE_DATA)


def _read(source: Path, names: list[str]) -> Images:
    if source.is_dir():
        missing = [n for n in names if not (source / n).is_file()]
        if missing:
            raise SweepError(f"{source} lacks {', '.join(missing)}. " + HOW_TO_GIVE_DATA)
        raws = _read_batches_dir(source, names)
    else:
        raws = _read_archive(source, names)
    parts = [_decode_batch(raw, source / name) for raw, name in zip(raws, names, strict=True)]
    return Images(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))


def load_training_images(data: str | os.PathLike | None = None) -> tuple[Images, Path]:
    """The 50,000 official training images (never the test batch) and where they came from."""
    source = resolve_source(data)
    return _read(source, TRAIN_BATCHES), source


def load_test_images(data: str | os.PathLike | None = None) -> Images:
    """The 10,000 test images: only an explicit evaluation of finished models asks for them."""
    return _read(resolve_source(data), [TEST_BATCH])


def checksum(images: Images) -> str:
    digest = hashlib.sha256(images.x.tobytes())
    digest.update(images.y.astype(np.int64).tobytes())
    return digest.hexdigest()


def check_split_sizes(train_size: int, val_size: int, n: int = TRAINING_IMAGES) -> None:
    """Refuse a split that `n` training images cannot give (before any is read, for CIFAR-10's
    50,000; again on the images read, which may be fewer)."""
    if train_size < 1 or val_size < 1:
        raise SweepError("--train-size and --val-size must be at least 1.")
    if train_size + val_size > n:
        raise SweepError(
            f"--train-size {train_size} + --val-size {val_size} exceeds the {n} training images."
        )


SPLIT_KINDS = ("random", "stratified")


def split_indices(n: int, train_size: int, val_size: int, seed: int) -> tuple[np.ndarray, ...]:
    """Disjoint training and validation indices from one seeded permutation (not stratified)."""
    check_split_sizes(train_size, val_size, n)
    permutation = np.random.default_rng(seed).permutation(n)
    return permutation[:train_size], permutation[train_size : train_size + val_size]


def stratified_indices(labels: np.ndarray, train_size: int, val_size: int,
                       seed: int) -> tuple[np.ndarray, ...]:
    """Disjoint training and validation indices with every class equally represented in each
    part (where a size does not divide by the classes, a seeded choice of classes has one image
    more), each part shuffled."""
    check_split_sizes(train_size, val_size, len(labels))
    rng = np.random.default_rng(seed)
    classes = len(CLASS_NAMES)
    extra_train, extra_val = rng.permutation(classes), rng.permutation(classes)
    train, val = [], []
    for label in range(classes):
        members = rng.permutation(np.flatnonzero(labels == label))
        n_train = train_size // classes + int(label in extra_train[: train_size % classes])
        n_val = val_size // classes + int(label in extra_val[: val_size % classes])
        if n_train + n_val > len(members):
            raise SweepError(f"A stratified split of {train_size} + {val_size} images needs "
                             f"{n_train + n_val} of class {CLASS_NAMES[label]}, which has "
                             f"{len(members)}: choose smaller --train-size/--val-size.")
        train.append(members[:n_train])
        val.append(members[n_train : n_train + n_val])
    return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(val))


def _class_counts(labels: np.ndarray) -> dict[str, int]:
    counts = np.bincount(labels, minlength=len(CLASS_NAMES))
    return {name: int(c) for name, c in zip(CLASS_NAMES, counts, strict=True)}


def normalize(x: np.ndarray, mean, std) -> np.ndarray:
    """uint8 images to float32, scaled with the given (training part's) statistics."""
    mean, std = np.asarray(mean, np.float32), np.asarray(std, np.float32)
    return (x.astype(np.float32) / 255.0 - mean) / std


WHITENING_EPSILON = 5e-4  # airbench's: keeps the patches' faintest directions from exploding
WHITENING_CHUNK = 500  # images a step: the patches of 5,000 at once take 0.5 GB in float64


def patch_whitening(x_train: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A convolution kernel (height, width, channels, 2 * height * width * channels) that
    whitens the `size` patches of `x_train`: each eigenvector of their second moment (their
    covariance, the inputs being normalized to mean 0), scaled by 1/sqrt(eigenvalue +
    epsilon), and its negative (airbench's first layer; the pairs keep what a ReLU after it
    would cut). Computed from the training images only."""
    height, width = size
    channels = x_train.shape[-1]
    rows, cols = x_train.shape[1] - height + 1, x_train.shape[2] - width + 1
    dims = height * width * channels
    covariance, count = np.zeros((dims, dims), np.float64), 0
    for start in range(0, len(x_train), WHITENING_CHUNK):
        x = x_train[start:start + WHITENING_CHUNK]
        # (image, row, col, (dy, dx, channel)): the order of a Keras kernel's first three axes
        patches = np.concatenate([x[:, dy:dy + rows, dx:dx + cols, :]
                                  for dy in range(height) for dx in range(width)], axis=-1)
        flat = patches.reshape(-1, dims).astype(np.float64)
        covariance += flat.T @ flat
        count += len(flat)
    eigenvalues, eigenvectors = np.linalg.eigh(covariance / count)
    scaled = eigenvectors / np.sqrt(eigenvalues + WHITENING_EPSILON)  # one filter a column
    kernel = scaled.reshape(height, width, channels, dims)
    return np.concatenate([kernel, -kernel], axis=-1).astype(np.float32)


def make_split(images: Images, train_size: int, val_size: int, seed: int,
               kind: str = "random") -> Split:
    """Cut the fixed split (`kind`: random, the challenge's, or stratified) and normalize both
    parts with the training part's statistics only."""
    if kind == "stratified":
        train_idx, val_idx = stratified_indices(images.y, train_size, val_size, seed)
    else:
        train_idx, val_idx = split_indices(len(images.y), train_size, val_size, seed)
    scaled_train = images.x[train_idx].astype(np.float32) / 255.0
    mean = scaled_train.mean(axis=(0, 1, 2))
    std = scaled_train.std(axis=(0, 1, 2)) + 1e-7
    indices_hash = hashlib.sha256(
        np.concatenate([train_idx, val_idx]).astype(np.int64).tobytes()
    ).hexdigest()
    record = {
        "kind": kind,
        "seed": seed,
        "train_size": train_size,
        "val_size": val_size,
        "indices_sha256": indices_hash,
        "data_sha256": checksum(images),
        "train_class_counts": _class_counts(images.y[train_idx]),
        "val_class_counts": _class_counts(images.y[val_idx]),
        "normalization": {"mean": mean.tolist(), "std": std.tolist()},
    }
    return Split(
        x_train=(scaled_train - mean) / std,
        y_train=images.y[train_idx],
        x_val=normalize(images.x[val_idx], mean, std),
        y_val=images.y[val_idx],
        mean=mean,
        std=std,
        record=record,
    )


SPLIT_IDENTITY = ("kind", "seed", "train_size", "val_size", "indices_sha256", "data_sha256")


def split_kind(record: dict) -> str:
    """A split record's kind; records made before stratified splits existed are random."""
    return record.get("kind", "random")


def split_description(record: dict) -> str:
    """A split's kind as the report says it."""
    return "stratified" if split_kind(record) == "stratified" else "random, not stratified"


def split_differences(recorded: dict, current: dict) -> list[str]:
    """Which parts of the split's identity differ between a search's record and this run."""
    return [key for key in SPLIT_IDENTITY
            if (split_kind(recorded) != split_kind(current) if key == "kind"
                else recorded.get(key) != current.get(key))]
