r"""Latent-space tools for image flows: encode, decode, interpolate, attribute directions.

A flow is a bijection, so an image has exactly one latent and decoding it gives the image back
(Glow, Kingma and Dhariwal 2018, https://arxiv.org/abs/1807.03039, section 5). With
dequantization the encoder sees ``x + u`` for a fresh noise ``u``; decoding returns a value
within 1/2 of ``x`` and :func:`decode` rounds it, so ``decode(encode(x)) == x`` exactly for
integer images. Multi-scale flows keep every factored-out latent inside the ``(C, H, W)``
latent, so all of these act on all scales at once.

Attribute manipulation (Glow, section 6.2): the direction between two groups of images is the
difference of their mean latents, :math:`d = \bar z_B - \bar z_A`; an image moves along it as
``decode(encode(x) + s * d)``. On MNIST the groups can be two classes, or thin and thick
strokes (:func:`stroke_thickness`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from flowforge.flows import Flow
from flowforge.transforms.dequantization import UniformDequantization, quantize

__all__ = [
    "attribute_direction",
    "decode",
    "encode",
    "interpolate",
    "levels_of",
    "manipulate",
    "stroke_thickness",
    "thickness_groups",
]


def levels_of(flow: Flow) -> int:
    """The number of discrete values the flow's dequantization expects (256 if none)."""
    for m in flow.modules():
        if isinstance(m, UniformDequantization):
            return m.levels
    return 256


@torch.no_grad()
def encode(flow: Flow, x: Tensor, context: Tensor | None = None) -> Tensor:
    """Latents ``(n, C, H, W)`` of raw images ``x`` ``(n, C, H, W)`` (eval mode)."""
    flow.eval()
    return flow.transform_to_latent(x, context)


@torch.no_grad()
def decode(flow: Flow, z: Tensor, context: Tensor | None = None) -> Tensor:
    """Raw integer-valued images ``(n, C, H, W)`` from latents ``z`` (eval mode, quantized)."""
    flow.eval()
    x, _ = flow.transform.inverse(z, context)
    return quantize(x, levels_of(flow))


def _context_like(context: Tensor | None, n: int) -> Tensor | None:
    if context is None or context.dim() == 2:
        return context
    return context.reshape(1, -1).expand(n, -1)


def interpolate(
    flow: Flow, x0: Tensor, x1: Tensor, steps: int = 8, context: Tensor | None = None
) -> Tensor:
    """Images along the straight line between the latents of ``x0`` and ``x1`` ``(C, H, W)``:
    ``(steps, C, H, W)``, from ``x0`` (first) to ``x1`` (last). ``context`` is one vector."""
    if steps < 2:
        raise ValueError(f"'steps' should be at least 2, got {steps}")
    z = encode(flow, torch.stack([x0, x1]), _context_like(context, 2))
    t = torch.linspace(0, 1, steps, dtype=z.dtype).reshape(-1, *[1] * (z.dim() - 1))
    path = z[0] + t * (z[1] - z[0])  # (steps, C, H, W)
    return decode(flow, path, _context_like(context, steps))


def attribute_direction(
    flow: Flow,
    group_a: Tensor,
    group_b: Tensor,
    context_a: Tensor | None = None,
    context_b: Tensor | None = None,
    batch_size: int = 256,
) -> Tensor:
    """The mean latent of ``group_b`` minus that of ``group_a``: ``(C, H, W)``."""
    if group_a.shape[0] == 0 or group_b.shape[0] == 0:
        raise ValueError("'group_a' and 'group_b' should each hold at least one image")

    def mean_latent(x: Tensor, c: Tensor | None) -> Tensor:
        parts = [
            encode(flow, x[i : i + batch_size], None if c is None else c[i : i + batch_size])
            for i in range(0, x.shape[0], batch_size)
        ]
        return torch.cat(parts).mean(0)

    return mean_latent(group_b, context_b) - mean_latent(group_a, context_a)


def manipulate(
    flow: Flow,
    x: Tensor,
    direction: Tensor,
    scales: Sequence[float] = (-1.0, -0.5, 0.0, 0.5, 1.0),
    context: Tensor | None = None,
) -> Tensor:
    """Moves each image of ``x`` ``(n, C, H, W)`` along ``direction`` ``(C, H, W)``:
    ``(n, len(scales), C, H, W)``, column ``j`` being ``decode(encode(x) + scales[j] * d)``."""
    if direction.shape != x.shape[1:]:
        raise ValueError(
            f"'direction' should have the image shape {tuple(x.shape[1:])}, "
            f"got {tuple(direction.shape)}"
        )
    z = encode(flow, x, context)  # (n, C, H, W)
    s = torch.as_tensor(list(scales), dtype=z.dtype).reshape(1, -1, *[1] * (z.dim() - 1))
    moved = (z.unsqueeze(1) + s * direction).reshape(-1, *z.shape[1:])  # (n * S, C, H, W)
    c = None if context is None else context.repeat_interleave(len(scales), dim=0)
    return decode(flow, moved, c).reshape(x.shape[0], len(scales), *x.shape[1:])


def stroke_thickness(x: Tensor, threshold: float = 0.5, levels: int = 256) -> Tensor:
    """Fraction of ink pixels (above ``threshold`` of the range) per image ``(n,)``: a simple
    thickness measure to split MNIST into thin and thick strokes."""
    return (x > threshold * (levels - 1)).reshape(x.shape[0], -1).float().mean(1)


def thickness_groups(x: Tensor, fraction: float = 0.2, levels: int = 256) -> tuple[Tensor, Tensor]:
    """The thinnest and the thickest ``fraction`` of the images ``x`` by
    :func:`stroke_thickness`: ``(thin, thick)``, each ``(k, C, H, W)``."""
    if not 0 < fraction <= 0.5:
        raise ValueError(f"'fraction' should be in (0, 0.5], got {fraction}")
    k = max(1, int(fraction * x.shape[0]))
    order = torch.argsort(stroke_thickness(x, levels=levels))
    return x[order[:k]], x[order[-k:]]
