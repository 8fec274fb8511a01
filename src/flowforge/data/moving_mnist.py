r"""Moving MNIST, generated here: digits bouncing in small frames (Srivastava et al. 2015).

Each sequence shows ``digits`` MNIST digits, each ``digit_size`` pixels square, moving on
straight lines inside a ``size x size`` frame and bouncing off its edges, for ``frames``
frames (the generator of Srivastava, Mansimov and Salakhutdinov 2015, "Unsupervised Learning
of Video Representations using LSTMs", https://arxiv.org/abs/1502.04681, which VideoFlow
trains on: Kumar et al. 2020, https://arxiv.org/abs/1903.01434). A digit's position is a
point of the unit square, mapped to the pixel of its top-left corner
:math:`\mathrm{round}(p \cdot (\mathrm{size} - \mathrm{digit\_size}))`; it starts uniformly
and moves a fixed ``step`` per frame in a uniform direction; a coordinate leaving
:math:`[0, 1]` is reflected back and its velocity flips, so every digit stays whole in the
frame. Overlapping digits combine by the pixel-wise maximum.

The splits are raw 8-bit pixel values as float tensors ``(n, frames, 1, size, size)``, with
``unit="bits/dim"`` and 256 levels, as the image data sets are (:mod:`flowforge.data.images`):
a flow's bits per dimension are then its bits per pixel per frame. Training sequences draw
their digits from the first five sixths (50,000) of a seeded permutation of MNIST's training
images, validation sequences from the rest (10,000), test sequences from MNIST's test images; each
split draws from its own seeded stream, so the test set never depends on the other sizes.
"""

from __future__ import annotations

import numpy as np
import torch

from flowforge.data.image_readers import load_mnist_arrays
from flowforge.data.registry import Splits, register_dataset

__all__ = ["STEP", "bouncing_sequences", "moving_mnist", "render", "trajectories"]

#: distance a digit moves per frame, as a fraction of its range (Srivastava et al.'s 0.1)
STEP = 0.1


def trajectories(
    n: int, digits: int, frames: int, rng: np.random.Generator, step: float = STEP
) -> np.ndarray:
    """Positions ``(n, digits, frames, 2)`` in the unit square: uniform starts, constant speed
    ``step`` in a uniform direction, reflected at the edges."""
    pos = rng.uniform(0.0, 1.0, (n, digits, 2))
    angle = rng.uniform(0.0, 2 * np.pi, (n, digits))
    vel = step * np.stack([np.sin(angle), np.cos(angle)], axis=-1)
    out = np.empty((n, digits, frames, 2))
    for t in range(frames):
        out[:, :, t] = pos
        pos = pos + vel
        low, high = pos < 0, pos > 1
        pos = np.where(low, -pos, np.where(high, 2 - pos, pos))
        vel = np.where(low | high, -vel, vel)
    return out


def render(images: np.ndarray, positions: np.ndarray, size: int) -> np.ndarray:
    """Frames ``(n, frames, size, size)`` uint8 of the digit ``images`` ``(n, digits, d, d)``
    placed at ``positions`` ``(n, digits, frames, 2)`` (unit square, rows then columns),
    overlaid by the maximum."""
    n, count, d, _ = images.shape
    frames = positions.shape[2]
    corner = np.rint(positions * (size - d)).astype(np.int64)  # (n, digits, frames, 2)
    ni = np.arange(n)[:, None, None, None]
    ti = np.arange(frames)[None, :, None, None]
    offsets = np.arange(d)
    canvas = np.zeros((n, frames, size, size), np.uint8)
    for k in range(count):
        rows = corner[:, k, :, 0, None, None] + offsets[:, None]  # (n, frames, d, 1)
        cols = corner[:, k, :, 1, None, None] + offsets[None, :]  # (n, frames, 1, d)
        layer = np.zeros_like(canvas)
        layer[ni, ti, rows, cols] = images[:, k, None]
        np.maximum(canvas, layer, out=canvas)
    return canvas


def bouncing_sequences(
    pool: np.ndarray,
    n: int,
    frames: int,
    size: int,
    digits: int,
    rng: np.random.Generator,
    step: float = STEP,
) -> np.ndarray:
    """``n`` sequences ``(n, frames, 1, size, size)`` uint8 of ``digits`` images drawn with
    replacement from ``pool`` ``(m, d, d)`` uint8 (``d <= size``), bouncing as the module
    says."""
    if pool.ndim != 3 or pool.shape[1] != pool.shape[2] or pool.shape[1] > size:
        raise ValueError(f"'pool' should be (m, d, d) digits with d <= {size}, got {pool.shape}")
    picks = rng.integers(0, len(pool), (n, digits))
    positions = trajectories(n, digits, frames, rng, step)
    return render(pool[picks], positions, size)[:, :, None]


def _resized(x: np.ndarray, d: int) -> np.ndarray:
    """MNIST digits ``(m, 28, 28)`` uint8 as ``(m, d, d)`` uint8 by area averaging."""
    if x.shape[1:] == (d, d):
        return x
    t = torch.from_numpy(x).float()[:, None]
    small = torch.nn.functional.interpolate(t, size=(d, d), mode="area")
    return small[:, 0].round().clamp(0, 255).to(torch.uint8).numpy()


@register_dataset("moving_mnist")
def moving_mnist(
    n_train: int = 2000,
    n_val: int = 200,
    n_test: int = 200,
    seed: int = 0,
    frames: int = 10,
    size: int = 32,
    digits: int = 2,
    digit_size: int | None = None,
    data_dir: str | None = None,
    download: bool = False,
) -> Splits:
    """Moving MNIST sequences ``(n, frames, 1, size, size)`` of raw pixel values (see the
    module).

    Arguments:
        frames: frames per sequence.
        size: the frame's side in pixels (Srivastava et al.: 64).
        digits: digits per sequence (Srivastava et al.: 2).
        digit_size: a digit's side in pixels, below ``size``; default ``28 * size / 64``
            rounded (28 in 64x64 frames as in the paper, 14 in 32x32), area-resized.
        data_dir, download: where MNIST is (as the ``mnist`` data set reads it).
    """
    for name, v in (("frames", frames), ("size", size), ("digits", digits)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"data.{name}: should be a positive integer, got {v!r}")
    for name, v in (("n_train", n_train), ("n_val", n_val), ("n_test", n_test)):
        if v < 0:
            raise ValueError(f"data.{name}: should be >= 0, got {v}")
    d = round(28 * size / 64) if digit_size is None else digit_size
    if isinstance(d, bool) or not isinstance(d, int) or not 1 <= d < size:
        raise ValueError(f"data.digit_size: should be an integer in [1, {size}), got {d!r}")
    arrays = load_mnist_arrays(data_dir, download)
    perm = np.random.default_rng(seed).permutation(len(arrays["x_train"]))
    cut = len(perm) * 5 // 6  # MNIST: 50,000 digits for training, 10,000 for validation
    pools = {
        "train": arrays["x_train"][perm[:cut]],
        "val": arrays["x_train"][perm[cut:]],
        "test": arrays["x_test"],
    }
    splits = {}
    for k, (split, n) in enumerate((("train", n_train), ("val", n_val), ("test", n_test))):
        rng = np.random.default_rng([seed, k])
        x = bouncing_sequences(_resized(pools[split], d), n, frames, size, digits, rng)
        splits[split] = torch.from_numpy(x).float()
    return Splits(
        **splits,
        unit="bits/dim",
        info={
            "kind": "video",
            "source": "Moving MNIST, generated from MNIST",
            "levels": 256,
            "frames": frames,
            "digits": digits,
            "digit_size": d,
        },
    )
