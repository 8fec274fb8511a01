r"""Binarized MNIST for VAEs, from the team's ``../shared/data/mnist.npz``.

The splits hold grey levels scaled to ``[0, 1]`` (``(n, 784)`` float32): the training split is
**dynamically binarized**, a fresh ``x ~ Bernoulli(intensity)`` per batch
(:func:`binarize`), as in the IWAE and IAF papers (Burda et al. 2016,
https://arxiv.org/abs/1509.00519; Kingma et al. 2016, https://arxiv.org/abs/1606.04934); the
validation and test splits are binarized **once** with a fixed seed, so every evaluation
scores the same binary images. Train and validation are the first 50,000 and last 10,000 of
MNIST's training set; test is MNIST's test set; ``n_*`` take the first images of each.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from flowforge.data.registry import Splits, register_dataset

__all__ = ["DEFAULT_PATH", "binarize", "load_binarized_mnist"]

DEFAULT_PATH = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "mnist.npz"


def binarize(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Samples binary images ``Bernoulli(x)`` from intensities ``x`` in ``[0, 1]``."""
    return torch.bernoulli(x, generator=generator)


@register_dataset("binarized_mnist")
def load_binarized_mnist(
    n_train: int = 50000,
    n_val: int = 10000,
    n_test: int = 10000,
    seed: int = 0,
    path: str | None = None,
) -> Splits:
    """Loads MNIST intensities (train) and fixed binarizations (val, test); see the module.

    Arguments:
        n_train, n_val, n_test: split sizes (at most 50,000, 10,000 and 10,000).
        seed: seed of the one-off binarization of the validation and test images.
        path: the ``mnist.npz`` file (default: ``../shared/data/mnist.npz`` beside the repo).
    """
    for name, n, cap in (
        ("n_train", n_train, 50000),
        ("n_val", n_val, 10000),
        ("n_test", n_test, 10000),
    ):
        if not 1 <= n <= cap:
            raise ValueError(f"'{name}' should be in [1, {cap}], got {n}")
    file = Path(path) if path is not None else DEFAULT_PATH
    if not file.is_file():
        raise FileNotFoundError(f"binarized_mnist: MNIST file not found at {file} ('path')")
    with np.load(file) as d:
        train_all, test = d["x_train"], d["x_test"]

    def scaled(a: np.ndarray) -> Tensor:
        return torch.from_numpy(a.reshape(len(a), -1).astype(np.float32) / 255.0)

    g = torch.Generator().manual_seed(seed)
    return Splits(
        train=scaled(train_all[:n_train]),
        val=binarize(scaled(train_all[50000 : 50000 + n_val]), g),
        test=binarize(scaled(test[:n_test]), g),
        unit="nats",
        binarize_train=True,
        info={
            "kind": "binarized MNIST",
            "train": "intensities, binarize per batch",
            "val/test": f"binarized once, seed {seed}",
            "file": str(file),
        },
    )
