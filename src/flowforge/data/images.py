"""Image data sets: MNIST, Fashion-MNIST, CIFAR-10 and scikit-learn's 8x8 digits.

Every loader returns :class:`~flowforge.data.registry.Splits` of **raw integer pixel values**
as float tensors ``(n, C, H, W)`` (0..255 for 8-bit images, 0..16 for the 8x8 digits), with
``unit="bits/dim"`` and the number of levels in ``info["levels"]``: dequantization and any
scaling or logit belong to the model (see :mod:`flowforge.transforms.dequantization`), so
that reported likelihoods are bits/dim of the discrete data. With ``conditional=True`` the
contexts are one-hot labels ``(n, n_classes)``; ``classes=[2]`` keeps one digit (the classic
RealNVP-on-MNIST demo).

The files are found and read by :mod:`flowforge.data.image_readers` (where each data set's
files come from). The validation split is taken from the training set (a seeded permutation;
never from the test set); the test split is the first ``n_test`` test images in the original
order.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from flowforge.data.download import CACHE_DIR
from flowforge.data.image_readers import (
    CIFAR10_ARCHIVE,
    FASHION_MNIST_DEBIAN_DIR,
    FASHION_MNIST_FILES,
    FASHION_MNIST_MIRRORS,
    load_cifar10_arrays,
    load_mnist_arrays,
)
from flowforge.data.registry import Splits, register_dataset

__all__ = ["cifar10", "digits_image", "fashion_mnist", "mnist"]


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
        cache_dir=CACHE_DIR / "fashion-mnist",
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
def digits_image(
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
