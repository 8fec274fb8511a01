"""Image grids written as PNG files, with no dependency beyond numpy (zlib is in the stdlib).

The ``*_grid`` functions are what ``flowforge sample``, ``interpolate`` and ``manipulate`` call
on a trained image flow: each writes one PNG and returns its path.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from flowforge.flows import Flow
from flowforge.latent import interpolate, levels_of, manipulate

__all__ = [
    "image_grid",
    "interpolation_grid",
    "manipulation_grid",
    "sample_grid",
    "save_image_grid",
    "write_png",
]


def image_grid(
    images: Tensor, nrow: int = 8, padding: int = 2, levels: int = 256, scale: int = 1
) -> np.ndarray:
    """Tiles ``images`` ``(N, C, H, W)`` of values in ``[0, levels - 1]`` into one uint8 array
    ``(rows * (H + p) + p, nrow * (W + p) + p, C)`` with a black border of ``padding``; each
    pixel is first repeated ``scale`` times in both directions (``H, W <- H s, W s``)."""
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"'images' should be (N, 1 or 3, H, W), got {tuple(images.shape)}")
    if nrow < 1 or scale < 1:
        raise ValueError(f"'nrow' and 'scale' should be positive, got {nrow} and {scale}")
    images = images.repeat_interleave(scale, dim=2).repeat_interleave(scale, dim=3)
    n, c, h, w = images.shape
    x = images.detach().float().cpu().clamp(0, levels - 1) * (255.0 / (levels - 1))
    x = x.round().to(torch.uint8).permute(0, 2, 3, 1).numpy()  # (N, H, W, C)
    rows = -(-n // nrow)
    grid = np.zeros((rows * (h + padding) + padding, nrow * (w + padding) + padding, c), np.uint8)
    for i in range(n):
        r, col = divmod(i, nrow)
        top, left = padding + r * (h + padding), padding + col * (w + padding)
        grid[top : top + h, left : left + w] = x[i]
    return grid


def write_png(array: np.ndarray, path: str | Path) -> Path:
    """Writes a uint8 array ``(H, W)``, ``(H, W, 1)`` or ``(H, W, 3)`` as an 8-bit PNG."""
    a = np.asarray(array)
    if a.dtype != np.uint8:
        raise ValueError(f"'array' should be uint8, got {a.dtype}")
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 3):
        raise ValueError(f"'array' should be (H, W), (H, W, 1) or (H, W, 3), got {a.shape}")
    h, w, c = a.shape
    color_type = 0 if c == 1 else 2  # grayscale or RGB
    raw = b"".join(b"\x00" + a[i].tobytes() for i in range(h))  # filter type 0 per row

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", w, h, 8, color_type, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
    png += chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png)
    return path


def save_image_grid(
    images: Tensor,
    path: str | Path,
    nrow: int = 8,
    padding: int = 2,
    levels: int = 256,
    scale: int = 1,
) -> Path:
    """Tiles ``images`` ``(N, C, H, W)`` (raw values ``0..levels-1``) and writes a PNG."""
    return write_png(image_grid(images, nrow, padding, levels, scale), path)


def _class_context(label: int | Sequence[int] | None, n: int, n_classes: int) -> Tensor | None:
    """One-hot context ``(n, n_classes)`` for one class or one class per image."""
    if label is None:
        return None
    labels = torch.as_tensor(label, dtype=torch.long).expand(n)  # an int, or n of them
    if not bool(((labels >= 0) & (labels < n_classes)).all()):
        raise ValueError(f"'label' should be in [0, {n_classes}), got {labels.unique().tolist()}")
    return torch.nn.functional.one_hot(labels, n_classes).float()


@torch.no_grad()
def sample_grid(
    flow: Flow,
    path: str | Path,
    n: int = 64,
    temperature: float = 0.7,
    label: int | Sequence[int] | None = None,
    n_classes: int = 10,
    nrow: int = 8,
    scale: int = 1,
) -> Path:
    """Draws ``n`` images at ``temperature`` and writes them as a grid (pixels enlarged
    ``scale`` times). For a class-conditional flow ``label`` is one class, or one class per
    image (e.g. ``[0] * 8 + [1] * 8 + ...`` with ``nrow=8``: a row per class), one-hot over
    ``n_classes``."""
    if n < 1:
        raise ValueError(f"'n' should be positive, got {n}")
    flow.eval()
    levels = levels_of(flow)
    x = flow.sample(n, _class_context(label, n, n_classes), temperature)
    x = torch.floor(x + 0.5).clamp(0, levels - 1)
    return save_image_grid(x, path, nrow=nrow, levels=levels, scale=scale)


def interpolation_grid(
    flow: Flow,
    pairs: Tensor,
    path: str | Path,
    steps: int = 8,
    context: Tensor | None = None,
    scale: int = 1,
) -> Path:
    """One row per pair of images (``pairs`` ``(k, 2, C, H, W)``): the latent-space path from the
    first to the second in ``steps`` images. ``context`` is ``(k, context_features)`` or None."""
    rows = [
        interpolate(flow, a, b, steps, None if context is None else context[i])
        for i, (a, b) in enumerate(pairs)
    ]
    return save_image_grid(torch.cat(rows), path, steps, levels=levels_of(flow), scale=scale)


def manipulation_grid(
    flow: Flow,
    x: Tensor,
    direction: Tensor,
    path: str | Path,
    scales: tuple[float, ...] = (-1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5),
    context: Tensor | None = None,
    scale: int = 1,
) -> Path:
    """One row per image of ``x``: ``decode(encode(x) + s * direction)`` for each scale ``s``
    (the column of scale 0 is the image itself)."""
    out = manipulate(flow, x, direction, scales, context)  # (n, S, C, H, W)
    images = out.reshape(-1, *x.shape[1:])
    return save_image_grid(images, path, len(scales), levels=levels_of(flow), scale=scale)
