"""Where the image data sets' files are found, and how they are read into arrays.

- MNIST: ``data_dir`` if given (``mnist.npz`` with ``x_train, y_train, x_test, y_test``, or
  the four IDX files, gzipped or not); otherwise the environment variable
  ``FLOWFORGE_DATA_DIR``, then ``../shared/data/mnist.npz`` relative to the working directory
  and to the repository. ``download=True`` fetches the IDX files and checks their MD5
  (:mod:`flowforge.data.download`).
- Fashion-MNIST: the same IDX format; by default from ``/usr/share/datasets/fashion-mnist/``,
  where Debian's package ``dataset-fashion-mnist`` installs it
  (``apt-get install dataset-fashion-mnist``).
- CIFAR-10: the python-pickle batches (``data_batch_1..5``, ``test_batch``) in ``data_dir``
  (the folder ``cifar-10-batches-py`` of the official archive, or its parent), read with numpy
  arrays as the only objects (:mod:`flowforge.data.safe_pickle`).

The registered data sets that split these arrays are in :mod:`flowforge.data.images`.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from flowforge.data.download import CACHE_DIR, download_idx
from flowforge.data.safe_pickle import NUMPY_ARRAYS, load_restricted

__all__ = [
    "CIFAR10_ARCHIVE",
    "FASHION_MNIST_DEBIAN_DIR",
    "FASHION_MNIST_FILES",
    "FASHION_MNIST_MIRRORS",
    "MNIST_FILES",
    "MNIST_MIRRORS",
    "load_cifar10_arrays",
    "load_mnist_arrays",
    "read_idx",
]

# name -> MD5 of the published .gz file (the checksums torchvision and the authors publish)
MNIST_FILES = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
FASHION_MNIST_FILES = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}
FASHION_MNIST_MIRRORS = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)
FASHION_MNIST_DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
# (url, md5) of the official python-pickle archive
CIFAR10_ARCHIVE = (
    "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    "c58f30108f718f92721af3b95e74349a",
)

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path) -> np.ndarray:
    """Reads an IDX file (LeCun's MNIST format), gzipped or not, into an array."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic number)")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    array = np.frombuffer(data, dtype=_IDX_DTYPES[data[2]], offset=4 + 4 * ndim)
    if array.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says shape {shape}, file holds {array.size} values")
    return array.reshape(shape)


def _find_idx(root: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (root / name).is_file():
            return root / name
    return None


def _load_idx_dir(root: Path) -> dict[str, np.ndarray] | None:
    stems = {
        "x_train": "train-images-idx3-ubyte",
        "y_train": "train-labels-idx1-ubyte",
        "x_test": "t10k-images-idx3-ubyte",
        "y_test": "t10k-labels-idx1-ubyte",
    }
    paths = {k: _find_idx(root, s) for k, s in stems.items()}
    if any(p is None for p in paths.values()):
        return None
    return {k: read_idx(p) for k, p in paths.items()}  # type: ignore[arg-type]


def _load_from(root: Path) -> dict[str, np.ndarray] | None:
    """MNIST-format arrays from ``root``: ``mnist.npz`` or the four IDX files."""
    if (root / "mnist.npz").is_file():
        with np.load(root / "mnist.npz") as d:
            return {k: d[k] for k in ("x_train", "y_train", "x_test", "y_test")}
    return _load_idx_dir(root)


def _default_mnist_dirs() -> list[Path]:
    dirs = [Path(os.environ["FLOWFORGE_DATA_DIR"])] if "FLOWFORGE_DATA_DIR" in os.environ else []
    repo = Path(__file__).resolve().parents[3]
    return dirs + [Path.cwd().parent / "shared" / "data", repo.parent / "shared" / "data"]


def load_mnist_arrays(
    data_dir: str | Path | None = None,
    download: bool = False,
    files: dict[str, str] = MNIST_FILES,
    mirrors: Sequence[str] = MNIST_MIRRORS,
    default_dirs: Sequence[Path] | None = None,
    cache_dir: Path | None = None,
) -> dict[str, np.ndarray]:
    """``x_train (60000, 28, 28), y_train, x_test (10000, 28, 28), y_test`` as uint8 arrays.

    Looks for ``mnist.npz`` or the IDX files in ``data_dir`` if given, else in
    ``default_dirs`` (default: ``$FLOWFORGE_DATA_DIR``, ``../shared/data``) and ``cache_dir``.
    With ``download=True`` and nothing found, downloads the IDX files ``{name: md5}`` into
    ``data_dir`` (or ``cache_dir``, default ``~/.cache/flowforge/mnist``) with checksum
    verification. Fashion-MNIST uses the same
    function with its own files, mirrors and directories.
    """
    cache_dir = Path(cache_dir) if cache_dir is not None else CACHE_DIR / "mnist"
    if data_dir is not None:
        dirs = [Path(data_dir)]
    else:
        defaults = _default_mnist_dirs() if default_dirs is None else list(default_dirs)
        dirs = [*defaults, cache_dir]
    for root in dirs:
        found = _load_from(root)
        if found is not None:
            return found
    if download:
        root = Path(data_dir) if data_dir is not None else cache_dir
        loaded = _load_idx_dir(download_idx(root, files, mirrors))
        if loaded is not None:
            return loaded
    raise FileNotFoundError(
        "data.data_dir: no mnist.npz or IDX files (train-images-idx3-ubyte[.gz], ...) in "
        f"{[str(d) for d in dirs]}; pass data_dir, or download=True where there is a network"
    )


def load_cifar10_arrays(data_dir: str | Path) -> dict[str, np.ndarray]:
    """CIFAR-10 from its python-pickle batches: ``x_* (n, 3, 32, 32)`` uint8, ``y_*`` labels.

    ``data_dir`` is the folder ``cifar-10-batches-py`` or its parent. The pickles are read
    with numpy arrays as the only objects (:mod:`flowforge.data.safe_pickle`): a batch that
    names any other class or function is refused before anything of it runs.
    """
    root = Path(data_dir)
    if (root / "cifar-10-batches-py").is_dir():
        root = root / "cifar-10-batches-py"

    def batch(name: str) -> tuple[np.ndarray, np.ndarray]:
        path = root / name
        if not path.is_file():
            raise FileNotFoundError(f"data.data_dir: CIFAR-10 batch {path} not found")
        d = load_restricted(path, NUMPY_ARRAYS, encoding="bytes")
        if not (isinstance(d, dict) and b"data" in d and b"labels" in d):
            raise ValueError(f"{path}: not a CIFAR-10 batch (a dict with b'data', b'labels')")
        x = np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        return x, np.asarray(d[b"labels"], dtype=np.int64)

    train = [batch(f"data_batch_{i}") for i in range(1, 6)]
    x_test, y_test = batch("test_batch")
    return {
        "x_train": np.concatenate([x for x, _ in train]),
        "y_train": np.concatenate([y for _, y in train]),
        "x_test": x_test,
        "y_test": y_test,
    }
