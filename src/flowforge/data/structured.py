"""Structured-output data sets: an output image given an input image (c-Glow's tasks).

Each loader wraps an image data set (``source``: ``mnist``, ``fashion_mnist``,
``digits-image``, ``cifar10``) and returns :class:`~flowforge.data.registry.Splits` whose
data are the **whole raw images** ``(n, C, H, W)`` (as every image loader's) and whose
contexts are **images** ``(n, C_c, H, W)`` of the same height and width, in ``[0, 1]``:

- ``inpainting``: ``C_c = C + 1``: the visible pixels ``x / (levels - 1)`` (0 where missing)
  and the mask (1 visible, 0 missing). A conditional flow on them models
  ``p(x | visible, mask)``; its density of the visible pixels can only add to the bits, so
  ``-log2 p(x | context) / n_missing`` is an upper bound on the conditional bits per missing
  pixel.
- ``denoising``: ``C_c = C``: ``x / (levels - 1) + noise * N(0, 1)``, models
  ``p(clean | noisy)``.

Masks and noise are drawn once per example from the seed (split by split), so a run's data,
and its fingerprint, are fixed; ``info["mask_kind"]`` names each example's mask. With
``fresh_masks: true`` (``inpainting``) every training batch gets new masks instead
(:class:`FreshMasks`: a kind drawn uniformly from ``masks`` per example, then a mask of that
kind), so over the epochs the flow sees each image with many masks rather than one; the
validation and test masks stay fixed, so evaluations at different steps and runs compare.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from flowforge.data.registry import Splits, load_dataset, register_dataset

__all__ = [
    "MASK_KINDS",
    "FreshMasks",
    "MaskError",
    "denoising",
    "inpainting",
    "inpainting_context",
    "make_mask",
]

#: mask kinds: ``random`` (each pixel missing with probability 1/2), ``centre`` (a centre
#: square of half the side missing), ``half`` (the top, bottom, left or right half missing),
#: and the four halves by name
MASK_KINDS = ("random", "centre", "half", "top", "bottom", "left", "right")
SOURCES = ("mnist", "fashion_mnist", "digits-image", "cifar10")


class MaskError(ValueError):
    """A mask that is not binary, or whose shape does not match the image's."""


def make_mask(kind: str, height: int, width: int, generator: torch.Generator) -> Tensor:
    """One mask ``(H, W)``, 1 where the pixel is visible and 0 where it is missing."""
    if kind not in MASK_KINDS:
        raise ValueError(f"mask kind should be one of {list(MASK_KINDS)}, got {kind!r}")
    m = torch.ones(height, width)
    if kind == "random":
        return (torch.rand(height, width, generator=generator) >= 0.5).float()
    if kind == "centre":
        h, w = max(1, height // 2), max(1, width // 2)
        top, left = (height - h) // 2, (width - w) // 2
        m[top : top + h, left : left + w] = 0
        return m
    if kind == "half":
        kind = ("top", "bottom", "left", "right")[int(torch.randint(4, (1,), generator=generator))]
    if kind == "top":
        m[: height // 2] = 0
    elif kind == "bottom":
        m[height // 2 :] = 0
    elif kind == "left":
        m[:, : width // 2] = 0
    else:
        m[:, width // 2 :] = 0
    return m


def inpainting_context(images: Tensor, masks: Tensor, levels: int) -> Tensor:
    """The c-Glow context of images ``(n, C, H, W)`` (raw values ``0..levels-1``) and masks
    ``(n, H, W)``, ``(n, 1, H, W)`` or ``(n, C, H, W)`` (1 visible, 0 missing; one mask for all
    channels): ``(n, C + 1, H, W)`` = visible pixels in ``[0, 1]`` (0 where missing), mask.

    Raises:
        MaskError: the mask is not binary, or its shape does not match the images'.
    """
    if images.dim() != 4:
        raise MaskError(f"images should be (n, C, H, W), got shape {tuple(images.shape)}")
    n, c, h, w = images.shape
    m = masks
    if m.dim() == 3:
        m = m.unsqueeze(1)
    if m.dim() != 4 or m.shape[0] != n or m.shape[2:] != (h, w) or m.shape[1] not in (1, c):
        raise MaskError(
            "the mask should be (n, H, W) or (n, 1, H, W) matching the images "
            f"{tuple(images.shape)}, got shape {tuple(masks.shape)}"
        )
    if not bool(((m == 0) | (m == 1)).all()):
        bad = sorted({float(v) for v in m[(m != 0) & (m != 1)].flatten()[:5].tolist()})
        raise MaskError(f"the mask should be binary (1 visible, 0 missing), found values {bad}")
    if m.shape[1] == c and c > 1:
        if not bool((m == m[:, :1]).all()):
            raise MaskError("the mask should be the same in every channel")
        m = m[:, :1]
    m = m.to(images.dtype)
    return torch.cat([images / (levels - 1) * m, m], dim=1)


@dataclass(frozen=True)
class FreshMasks:
    """New inpainting contexts for a training batch (``data.fresh_masks: true``): for each image
    a mask kind drawn uniformly from ``kinds``, then a mask of that kind (:func:`make_mask`),
    all from the generator the caller passes, then :func:`inpainting_context`.

    The objective seeds that generator from the run's seed and the step
    (:func:`flowforge.objectives.base.batch_generator`), so a batch's masks are a pure
    function of (seed, step): a resumed run draws the same masks as an uninterrupted one, and
    every torchrun rank the same masks for the whole batch before taking its shard.

    Attributes:
        kinds: the mask kinds to draw from (:data:`MASK_KINDS`).
        levels: the images' number of grey levels (raw values ``0..levels-1``).
    """

    kinds: tuple[str, ...]
    levels: int

    def __call__(self, images: Tensor, generator: torch.Generator) -> Tensor:
        """The contexts ``(n, C + 1, H, W)`` of the raw ``images`` ``(n, C, H, W)``."""
        n, _, height, width = images.shape
        picks = torch.randint(len(self.kinds), (n,), generator=generator).tolist()
        masks = [make_mask(self.kinds[k], height, width, generator) for k in picks]
        mask = torch.stack(masks) if masks else torch.zeros(0, height, width)
        return inpainting_context(images, mask, self.levels)


def _source(source: str, n_train: int, n_val: int, n_test: int, seed: int, **kw: object) -> Splits:
    if source not in SOURCES:
        raise ValueError(f"data.source: should be one of {list(SOURCES)}, got {source!r}")
    return load_dataset(source, n_train, n_val, n_test, seed, **kw)


@register_dataset("inpainting")
def inpainting(
    n_train: int = 50000,
    n_val: int = 2000,
    n_test: int = 10000,
    seed: int = 0,
    source: str = "mnist",
    masks: list[str] | None = None,
    fresh_masks: bool = False,
    data_dir: str | None = None,
) -> Splits:
    """Images of ``source`` with masks of the kinds ``masks`` (default ``["random", "centre",
    "half"]``, one kind per example in turn); context = visible pixels and mask.

    With ``fresh_masks`` every training batch draws new masks (:class:`FreshMasks`, through
    ``Splits.train_context_sampler``); ``train_context`` then holds one fixed draw, which
    evaluations of the training split and the resume fingerprint use. Validation and test
    masks are fixed either way."""
    kinds = list(masks) if masks is not None else ["random", "centre", "half"]
    if not kinds or any(k not in MASK_KINDS for k in kinds):
        raise ValueError(f"data.masks: kinds should be from {list(MASK_KINDS)}, got {kinds}")
    kw = {} if data_dir is None else {"data_dir": data_dir}
    base = _source(source, n_train, n_val, n_test, seed, **kw)
    levels = int(base.info["levels"])
    contexts, kind_names = {}, {}
    for k, split in enumerate(("train", "val", "test")):
        x = getattr(base, split)
        g = torch.Generator().manual_seed(seed * 7919 + 101 + k)
        names = [kinds[i % len(kinds)] for i in range(x.shape[0])]
        m = [make_mask(name, x.shape[2], x.shape[3], g) for name in names]
        mask = torch.stack(m) if m else torch.zeros(0, x.shape[2], x.shape[3])
        contexts[split] = inpainting_context(x, mask, levels)
        kind_names[split] = names
    return _with_contexts(
        base,
        contexts,
        {"task": "inpainting", "masks": kinds, "mask_kind": kind_names},
        FreshMasks(tuple(kinds), levels) if fresh_masks else None,
    )


@register_dataset("denoising")
def denoising(
    n_train: int = 50000,
    n_val: int = 2000,
    n_test: int = 10000,
    seed: int = 0,
    source: str = "mnist",
    noise: float = 0.5,
    data_dir: str | None = None,
) -> Splits:
    """Clean images of ``source`` given noisy ones: context ``x / (levels - 1) + noise * e``,
    ``e ~ N(0, 1)`` per pixel (not clipped)."""
    if not noise > 0:
        raise ValueError(f"data.noise: should be positive, got {noise}")
    kw = {} if data_dir is None else {"data_dir": data_dir}
    base = _source(source, n_train, n_val, n_test, seed, **kw)
    levels = int(base.info["levels"])
    contexts = {}
    for k, split in enumerate(("train", "val", "test")):
        x = getattr(base, split)
        g = torch.Generator().manual_seed(seed * 7919 + 202 + k)
        contexts[split] = x / (levels - 1) + noise * torch.randn(x.shape, generator=g)
    return _with_contexts(base, contexts, {"task": "denoising", "noise": noise})


def _with_contexts(
    base: Splits,
    contexts: dict[str, Tensor],
    info: dict,
    train_context_sampler: FreshMasks | None = None,
) -> Splits:
    """``base``'s images as the outputs, conditioned on one context image per example (drawn
    afresh per training batch by ``train_context_sampler`` when given)."""
    return Splits(
        base.train,
        base.val,
        base.test,
        contexts["train"],
        contexts["val"],
        contexts["test"],
        unit="bits/dim",
        info={**base.info, **info},
        train_context_sampler=train_context_sampler,
    )
