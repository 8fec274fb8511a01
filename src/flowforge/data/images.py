"""Image data sets: MNIST, Fashion-MNIST, CIFAR-10 and scikit-learn's 8x8 digits.

Every loader returns :class:`~flowforge.data.registry.Splits` of **raw integer pixel values**
as float tensors ``(n, C, H, W)`` (0..255 for 8-bit images, 0..16 for the 8x8 digits), with
``unit="bits/dim"`` and the number of levels in ``info["levels"]``: dequantization and any
scaling or logit belong to the model (see :mod:`flowforge.transforms.dequantization`), so
that reported likelihoods are bits/dim of the discrete data. With ``conditional=True`` the
contexts are one-hot labels ``(n, n_classes)``; ``classes=[2]`` keeps one digit (the classic
RealNVP-on-MNIST demo).

Where the files come from:

- MNIST: ``data_dir`` if given (``mnist.npz`` with ``x_train, y_train, x_test, y_test``, or
  the four IDX files, gzipped or not); otherwise the environment variable
  ``FLOWFORGE_DATA_DIR``, then ``../shared/data/mnist.npz`` relative to the working directory
  and to the repository. ``download=True`` fetches the IDX files and checks their MD5.
- Fashion-MNIST: the same IDX format; by default from ``/usr/share/datasets/fashion-mnist/``,
  where Debian's package ``dataset-fashion-mnist`` installs it
  (``apt-get install dataset-fashion-mnist``).
- CIFAR-10: the python-pickle batches (``data_batch_1..5``, ``test_batch``) in ``data_dir``
  (the folder ``cifar-10-batches-py`` of the official archive, or its parent).
- digits: ``sklearn.datasets.load_digits`` (1,797 images of 8x8, 17 levels), shipped with
  scikit-learn: the fast real data of the tests.

The validation split is taken from the training set (a seeded permutation; never from the
test set); the test split is the first ``n_test`` test images in the original order.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from flowforge.data.registry import Splits, register_dataset
from flowforge.data.safe_pickle import NUMPY_ARRAYS, load_restricted

__all__ = [
    "CIFAR10_ARCHIVE",
    "FASHION_MNIST_DEBIAN_DIR",
    "FASHION_MNIST_FILES",
    "MNIST_FILES",
    "download_file",
    "download_idx",
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

_CACHE = Path.home() / ".cache" / "flowforge"
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download_file(url: str, dest: Path, md5: str, timeout: float = 60.0) -> Path:
    """Downloads ``url`` to ``dest`` atomically and checks its MD5.

    Skips the download if ``dest`` exists with the right checksum. Raises ``ValueError`` on a
    checksum mismatch (the partial file is removed) and lets network errors propagate.
    """
    dest = Path(dest)
    if dest.is_file() and _md5(dest) == md5:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    # opened like any new file, so it gets the umask's mode (mkstemp's would be 0o600)
    tmp = dest.with_name(f"{dest.name}.{os.getpid()}.part")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as f:
            shutil.copyfileobj(response, f)
        got = _md5(Path(tmp))
        if got != md5:
            raise ValueError(f"checksum mismatch for {url}: MD5 {got}, expected {md5}")
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return dest


def download_idx(root: Path, files: dict[str, str], mirrors: Sequence[str]) -> Path:
    """Downloads the IDX files ``{name: md5}`` into ``root``, trying each mirror in turn."""
    root = Path(root)
    for name, md5 in files.items():
        errors = []
        for mirror in mirrors:
            try:
                download_file(mirror.rstrip("/") + "/" + name, root / name, md5)
                break
            except (OSError, ValueError) as e:
                errors.append(f"{mirror}: {e}")
        else:
            raise RuntimeError(f"could not download {name}:\n  " + "\n  ".join(errors))
    return root


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
    cache_dir = Path(cache_dir) if cache_dir is not None else _CACHE / "mnist"
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


def _splits(
    arrays: dict[str, np.ndarray],
    n_train: int,
    n_val: int,
    n_test: int,
    seed: int,
    classes: Sequence[int] | None,
    conditional: bool,
    n_classes: int,
    levels: int,
    source: str,
) -> Splits:
    """Selects classes, splits train/val by a seeded permutation, takes the first test images."""
    x_tr, y_tr = arrays["x_train"], np.asarray(arrays["y_train"]).astype(np.int64)
    x_te, y_te = arrays["x_test"], np.asarray(arrays["y_test"]).astype(np.int64)
    if classes is not None:
        classes = [int(c) for c in classes]
        if not classes or any(not 0 <= c < n_classes for c in classes):
            raise ValueError(f"data.classes: should be labels in [0, {n_classes}), got {classes}")
        keep_tr, keep_te = np.isin(y_tr, classes), np.isin(y_te, classes)
        x_tr, y_tr, x_te, y_te = x_tr[keep_tr], y_tr[keep_tr], x_te[keep_te], y_te[keep_te]
    for name, n in (("n_train", n_train), ("n_val", n_val), ("n_test", n_test)):
        if n < 0:
            raise ValueError(f"data.{name}: should be >= 0, got {n}")
    if n_train + n_val > len(x_tr):
        raise ValueError(
            f"data.n_train + data.n_val = {n_train + n_val} exceeds the {len(x_tr)} training "
            "images available"
        )
    if n_test > len(x_te):
        raise ValueError(f"data.n_test = {n_test} exceeds the {len(x_te)} test images available")
    perm = np.random.default_rng(seed).permutation(len(x_tr))
    idx = {"train": perm[:n_train], "val": perm[n_train : n_train + n_val]}

    def images(x: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(np.ascontiguousarray(x)).float()
        return t.unsqueeze(1) if t.dim() == 3 else t  # (n, C, H, W)

    def onehot(y: np.ndarray) -> torch.Tensor | None:
        if not conditional:
            return None
        return torch.nn.functional.one_hot(torch.from_numpy(y), n_classes).float()

    return Splits(
        train=images(x_tr[idx["train"]]),
        val=images(x_tr[idx["val"]]),
        test=images(x_te[:n_test]),
        train_context=onehot(y_tr[idx["train"]]),
        val_context=onehot(y_tr[idx["val"]]),
        test_context=onehot(y_te[:n_test]),
        unit="bits/dim",
        context_classes=n_classes if conditional else 0,
        info={
            "kind": "image",
            "source": source,
            "levels": levels,
            "classes": classes,
            "labels": {"train": y_tr[idx["train"]], "val": y_tr[idx["val"]], "test": y_te[:n_test]},
        },
    )


@register_dataset("mnist")
def mnist(
    n_train: int = 50000,
    n_val: int = 10000,
    n_test: int = 10000,
    seed: int = 0,
    data_dir: str | None = None,
    classes: list[int] | None = None,
    conditional: bool = False,
    download: bool = False,
) -> Splits:
    """MNIST, 1x28x28, 256 levels; ``classes=[2]`` for the "digit 2" demo."""
    arrays = load_mnist_arrays(data_dir, download)
    return _splits(arrays, n_train, n_val, n_test, seed, classes, conditional, 10, 256, "MNIST")


@register_dataset("fashion_mnist")
def fashion_mnist(
    n_train: int = 50000,
    n_val: int = 10000,
    n_test: int = 10000,
    seed: int = 0,
    data_dir: str | None = None,
    classes: list[int] | None = None,
    conditional: bool = False,
    download: bool = False,
) -> Splits:
    """Fashion-MNIST, 1x28x28, 256 levels, from ``/usr/share/datasets/fashion-mnist`` (Debian's
    ``dataset-fashion-mnist``) unless ``data_dir`` is given; ``download=True`` fetches it into
    ``~/.cache/flowforge/fashion-mnist`` when it is found nowhere."""
    arrays = load_mnist_arrays(
        data_dir,
        download,
        FASHION_MNIST_FILES,
        FASHION_MNIST_MIRRORS,
        default_dirs=[FASHION_MNIST_DEBIAN_DIR],
        cache_dir=_CACHE / "fashion-mnist",
    )
    return _splits(
        arrays, n_train, n_val, n_test, seed, classes, conditional, 10, 256, "Fashion-MNIST"
    )


@register_dataset("cifar10")
def cifar10(
    n_train: int = 45000,
    n_val: int = 5000,
    n_test: int = 10000,
    seed: int = 0,
    data_dir: str | None = None,
    classes: list[int] | None = None,
    conditional: bool = False,
) -> Splits:
    """CIFAR-10, 3x32x32, 256 levels, from the python-pickle batches in ``data_dir``."""
    if data_dir is None:
        raise ValueError(
            "data.data_dir: CIFAR-10 needs the folder holding cifar-10-batches-py "
            f"(the official archive {CIFAR10_ARCHIVE[0]}, MD5 {CIFAR10_ARCHIVE[1]})"
        )
    arrays = load_cifar10_arrays(data_dir)
    return _splits(arrays, n_train, n_val, n_test, seed, classes, conditional, 10, 256, "CIFAR-10")


@register_dataset("digits-image")
def digits(
    n_train: int = 1200,
    n_val: int = 197,
    n_test: int = 400,
    seed: int = 0,
    classes: list[int] | None = None,
    conditional: bool = False,
) -> Splits:
    """scikit-learn's 8x8 digits, 1x8x8 with 17 levels (0..16); the last 400 images are the
    test set, the first 1,397 are split into train and validation."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = d.images.astype(np.uint8)  # (1797, 8, 8), values 0..16
    y = d.target.astype(np.int64)
    arrays = {"x_train": x[:-400], "y_train": y[:-400], "x_test": x[-400:], "y_test": y[-400:]}
    return _splits(
        arrays, n_train, n_val, n_test, seed, classes, conditional, 10, 17, "sklearn digits"
    )
