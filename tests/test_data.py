import pickle
import tarfile

import numpy as np
import pytest

from sweep import data
from sweep.errors import SweepError


def test_reads_batches_folder_its_parent_and_the_archive(tiny_cifar, tmp_path):
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tiny_cifar, arcname="cifar-10-batches-py")
    loaded = [data.load_training_images(p)[0] for p in (tiny_cifar, tiny_cifar.parent, archive)]
    for images in loaded:
        assert images.x.shape == (1000, 32, 32, 3) and images.x.dtype == np.uint8
        assert images.y.shape == (1000,)
    assert len({data.checksum(images) for images in loaded}) == 1


@pytest.mark.parametrize("damage, message", [
    (b"random bytes, not a pickle", "data_batch_3 is not a CIFAR-10 batch"),
    (pickle.dumps({b"labels": [1, 2]}), r"data_batch_3 is not a CIFAR-10 batch \(KeyError"),
    (pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [1]}),
     "data_batch_3 holds 2 images but 1 labels"),
], ids=["not a pickle", "no images", "fewer labels"])
def test_a_damaged_batch_is_a_clear_error_naming_it(tmp_path, damage, message):
    from conftest import write_batches

    folder = write_batches(tmp_path / "cifar-10-batches-py", per_batch=20)
    (folder / "data_batch_3").write_bytes(damage)
    with pytest.raises(SweepError, match=message):
        data.load_training_images(folder)


def test_environment_variable_gives_the_copy(tiny_cifar, monkeypatch):
    monkeypatch.setenv(data.DATA_ENV, str(tiny_cifar))
    assert data.resolve_source(None) == tiny_cifar


def test_never_reads_the_test_batch(tmp_path):
    from conftest import write_batches

    folder = write_batches(tmp_path / "cifar-10-batches-py", per_batch=20, with_test=False)
    images, _ = data.load_training_images(folder)
    assert len(images.y) == 100


def test_missing_copy_is_a_clear_error(tmp_path):
    with pytest.raises(SweepError, match="--data PATH or SWEEP_DATA"):
        data.load_training_images(tmp_path / "nowhere")


def test_offline_without_copy_names_both_ways(monkeypatch):
    import keras

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure: no network")

    monkeypatch.delenv(data.DATA_ENV, raising=False)
    monkeypatch.setattr(keras.utils, "get_file", offline)
    with pytest.raises(SweepError) as error:
        data.load_training_images(None)
    assert "--data PATH" in str(error.value) and "SWEEP_DATA" in str(error.value)


def test_split_is_seeded_disjoint_and_sized():
    train, val = data.split_indices(1000, 300, 200, seed=7)
    assert len(train) == 300 and len(val) == 200
    assert not set(train) & set(val)
    again = data.split_indices(1000, 300, 200, seed=7)
    assert all(np.array_equal(a, b) for a, b in zip((train, val), again, strict=True))
    other = data.split_indices(1000, 300, 200, seed=8)
    assert not np.array_equal(train, other[0])


@pytest.mark.parametrize("sizes", [(0, 10), (10, 0), (600, 500)])
def test_impossible_split_sizes_are_refused(sizes):
    with pytest.raises(SweepError):
        data.split_indices(1000, *sizes, seed=0)


def test_split_record_and_training_only_normalization(tiny_cifar):
    images, _ = data.load_training_images(tiny_cifar)
    split = data.make_split(images, 600, 300, seed=3)
    assert split.x_train.shape == (600, 32, 32, 3) and split.x_val.shape == (300, 32, 32, 3)
    np.testing.assert_allclose(split.x_train.mean(axis=(0, 1, 2)), 0, atol=1e-4)
    np.testing.assert_allclose(split.x_train.std(axis=(0, 1, 2)), 1, atol=1e-3)
    # Validation images are scaled with the training statistics, not their own.
    assert not np.allclose(split.x_val.mean(axis=(0, 1, 2)), 0, atol=1e-4)
    record = split.record
    assert sum(record["train_class_counts"].values()) == 600
    assert sum(record["val_class_counts"].values()) == 300
    assert record["data_sha256"] == data.checksum(images)
    same = data.make_split(images, 600, 300, seed=3).record
    assert data.split_differences(record, same) == []
    other = data.make_split(images, 600, 300, seed=4).record
    assert data.split_differences(record, other) == ["seed", "indices_sha256"]


def test_a_stratified_split_holds_every_class_equally_and_differs_from_a_random_one(tiny_cifar):
    images, _ = data.load_training_images(tiny_cifar)
    random_split = data.make_split(images, 300, 205, seed=3)
    stratified = data.make_split(images, 300, 205, seed=3, kind="stratified")
    assert set(stratified.record["train_class_counts"].values()) == {30}
    assert sorted(stratified.record["val_class_counts"].values()) == [20] * 5 + [21] * 5
    train, val = data.stratified_indices(images.y, 300, 205, seed=3)
    assert not set(train) & set(val) and len(set(train)) == 300  # disjoint, no repeats
    # the kind is part of the split: a search made on one is refused on the other
    assert stratified.record["kind"] == "stratified" and random_split.record["kind"] == "random"
    assert data.split_differences(random_split.record, stratified.record) == [
        "kind", "indices_sha256"]
    # a record from before stratified splits existed is a random one
    older = {k: v for k, v in random_split.record.items() if k != "kind"}
    assert data.split_differences(older, random_split.record) == []
    with pytest.raises(SweepError, match="needs .* of class"):
        data.stratified_indices(images.y, 900, 90, seed=0)


def test_the_whitening_kernel_whitens_the_training_patches_and_keeps_each_direction_s_negative():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 8, 8, 3)).astype(np.float32)
    x[..., 1] += 2.0 * x[..., 0]  # correlated channels
    x[:, 1:, :, 2] += 0.5 * x[:, :-1, :, 2]  # and correlated neighbours
    kernel = data.patch_whitening(x, (2, 2))
    assert kernel.shape == (2, 2, 3, 24)
    np.testing.assert_array_equal(kernel[..., 12:], -kernel[..., :12])
    # As a Keras convolution applies it (its kernel's axes: row, column, channel, filter).
    import keras
    conv = keras.layers.Conv2D(24, 2, use_bias=False)
    conv.build((None, 8, 8, 3))
    conv.set_weights([kernel])
    whitened = keras.ops.convert_to_numpy(conv(x)).reshape(-1, 24)[:, :12]
    # Unit variance and no correlation, but for the epsilon that guards faint directions.
    np.testing.assert_allclose(whitened.T @ whitened / len(whitened), np.eye(12), atol=0.01)
