r"""Inpainting with a c-Glow run: ``flowforge inpaint RUN --image test:0,1 --mask centre [-k 8]``.

A c-Glow trained on the inpainting data set (:mod:`flowforge.data.structured`) models
:math:`p(x \mid \text{visible pixels}, \text{mask})`. :func:`inpaint_run` reads the images
(:func:`read_images`: the run's test images or a ``.npy`` of raw pixel values) and the masks
(:func:`read_masks`: a kind of :data:`~flowforge.data.structured.MASK_KINDS` or a ``.npy`` of 1
for visible, 0 for missing), draws ``k`` completions of each image
(:func:`~flowforge.models.inpainting.cglow_fill`) and writes them as one PNG, a row per image
(the image, its visible part with the missing pixels grey, the ``k`` samples), and beside it a
JSON report with the conditional bits per missing pixel of each image: an upper bound,
:math:`-\log_2 p(x \mid \text{visible}, \text{mask}) / n_\text{missing}` with one
dequantization draw (:func:`~flowforge.models.inpainting.missing_bits`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from flowforge.config import ConfigError
from flowforge.data.structured import MASK_KINDS, MaskError, inpainting_context, make_mask
from flowforge.models.inpainting import cglow_fill, missing_bits
from flowforge.runs.build import load_data
from flowforge.runs.directory import check_output, output_path
from flowforge.runs.load import Run, open_run
from flowforge.viz.images import save_image_grid

__all__ = ["Inpainting", "inpaint_run", "read_images", "read_masks"]


@dataclass(frozen=True)
class Inpainting:
    """What :func:`inpaint_run` wrote: the PNG at ``path`` and the JSON ``report`` beside it
    (``path`` with the suffix ``.json``)."""

    path: Path
    report: dict[str, Any]

    def line(self) -> str:
        """The command's closing line."""
        r = self.report
        return (
            f"wrote {len(r['bits_per_missing_pixel'])} rows (image, visible part, "
            f"{r['samples']} samples) to {self.path}; conditional bits per missing pixel <= "
            f"{r['mean_bits_per_missing_pixel']:.4f}"
        )


def inpaint_run(
    run_path: str | Path,
    image: str,
    mask: str,
    k: int = 8,
    temperature: float = 1.0,
    seed: int = 0,
    out: str | Path | None = None,
) -> Inpainting:
    """Fills the missing pixels of the images ``image`` (``--image``: :func:`read_images`)
    under the masks ``mask`` (``--mask``: :func:`read_masks`) with ``k`` samples each of the
    inpainting run at ``run_path`` at ``temperature``, after ``torch.manual_seed(seed)``;
    writes the grid to ``out`` (default ``RUN/inpainting.png``) and the report beside it."""
    if k < 1:
        raise ConfigError(f"-k: should be positive, got {k}")
    run = open_run(run_path)
    path = output_path(out) or run.path / "inpainting.png"
    check_output(path.with_suffix(".json"), "--out (its .json report)")
    spec = run.spec
    shape = tuple(spec["event_shape"])
    cshape = tuple(spec.get("context_shape") or ())
    if len(shape) != 3 or cshape != (shape[0] + 1, *shape[1:]):
        raise ConfigError(
            f"{run_path}: not an inpainting run (a model conditioned on visible pixels and mask, "
            f"context {(shape[0] + 1, *shape[1:]) if len(shape) == 3 else '?'}); its context is "
            f"{cshape or 'none'}"
        )
    levels = int(spec["options"].get("levels", 256))
    x = read_images(image, run, shape)
    m = read_masks(mask, x.shape[0], shape, seed)
    try:
        context = inpainting_context(x, m, levels)
    except MaskError as e:
        raise ConfigError(f"--mask: {e}") from None
    if not bool(((x >= 0) & (x <= levels - 1)).all()):
        raise ConfigError(f"--image: pixel values should be in [0, {levels - 1}]")
    m = context[:, -1:]
    model = run.model(device="cpu")
    torch.manual_seed(seed)
    filled = cglow_fill(model, x, m, context, k, temperature, levels)
    bits = missing_bits(model, x, context, m)
    shown = x * m + (levels - 1) / 2 * (1 - m)  # missing pixels in grey
    rows = torch.cat([x[:, None], shown[:, None], filled], dim=1)  # (n, 2 + k, C, H, W)
    save_image_grid(rows.flatten(0, 1), path, nrow=2 + k, levels=levels, scale=2)
    report = {
        "images": image,
        "mask": mask,
        "samples": k,
        "temperature": temperature,
        "bits_per_missing_pixel": [round(float(b), 4) for b in bits],
        "mean_bits_per_missing_pixel": float(bits.mean()),
        "note": "upper bound: -log2 p(x | visible, mask) / n_missing, one dequantization draw",
    }
    path.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    return Inpainting(path, report)


def read_images(spec: str, run: Run, shape: tuple[int, ...]) -> Tensor:
    """``--image``: ``test:I,J,...`` (the run's test images) or a ``.npy`` of raw pixel values
    ``(H, W)``, ``(C, H, W)`` or ``(n, C, H, W)``, as an ``(n, *shape)`` float tensor."""
    if spec.startswith("test:"):
        try:
            idx = [int(i) for i in spec[5:].split(",")]
        except ValueError:
            raise ConfigError(
                f"--image: should be test:I,J,... with integers, got {spec!r}"
            ) from None
        splits = load_data(run.config)
        assert splits is not None
        if any(not 0 <= i < splits.test.shape[0] for i in idx):
            raise ConfigError(f"--image: test indices should be in [0, {splits.test.shape[0]})")
        return splits.test[idx].float()
    path = Path(spec)
    if path.suffix != ".npy" or not path.is_file():
        raise ConfigError(f"--image: should be test:I,J,... or an existing .npy file, got {spec!r}")
    x = torch.from_numpy(np.load(path, allow_pickle=False).astype(np.float32))
    if x.dim() == len(shape) - 1:
        x = x.unsqueeze(0)
    if x.dim() == len(shape):
        x = x.unsqueeze(0) if tuple(x.shape) == shape else x.unsqueeze(1)
    if x.dim() != 4 or tuple(x.shape[1:]) != shape:
        raise ConfigError(
            f"--image: the run's images are {shape}, got an array of shape {tuple(x.shape)}"
        )
    return x


def read_masks(spec: str, n: int, shape: tuple[int, ...], seed: int) -> Tensor:
    """``--mask``: a kind (``centre``, ``random``, ``top``, ...; ``random`` ones drawn from
    ``seed``) or a ``.npy`` ``(H, W)`` or ``(n, H, W)`` array of 1 (visible) and 0 (missing),
    as ``n`` masks of the images' ``shape`` ``(C, H, W)``."""
    if spec in MASK_KINDS:
        g = torch.Generator().manual_seed(seed)
        return torch.stack([make_mask(spec, shape[1], shape[2], g) for _ in range(n)])
    path = Path(spec)
    if path.suffix != ".npy" or not path.is_file():
        raise ConfigError(
            f"--mask: should be one of {list(MASK_KINDS)} or a .npy file, got {spec!r}"
        )
    m = torch.from_numpy(np.load(path, allow_pickle=False).astype(np.float32))
    return m.expand(n, *m.shape[-2:]) if m.dim() == 2 else m
