r"""Filling the missing pixels of images: c-Glow samples and the baselines it is compared with.

Images are raw pixel values ``(n, C, H, W)`` in ``0..levels-1``; masks ``(n, 1, H, W)`` are 1
where a pixel is visible and 0 where it is missing. Every filler returns whole images whose
visible pixels are the given ones.

- :func:`cglow_fill`: samples of a c-Glow trained on ``p(x | visible, mask)``
  (:mod:`flowforge.models.cglow`; the context is built by
  :func:`flowforge.data.structured.inpainting_context`);
- :func:`missing_bits`: ``-log2 p(x | context) / n_missing`` per image, an upper bound on the
  conditional bits per missing pixel (the flow models the visible pixels too, whose density
  can only add bits);
- :func:`langevin_fill`: an **unconditional** image flow used for conditional sampling by
  Langevin dynamics on the missing pixels, :math:`v \leftarrow v + \frac{\epsilon}{2}
  \nabla_v \log p(x) + \sqrt{\epsilon}\,\xi` with the visible pixels clamped (Welling and Teh
  2011's unadjusted chain; no conditional density is defined);
- :func:`mean_fill` and :func:`nearest_neighbour_fill`: the training mean image, and the
  missing pixels of the training image closest on the visible ones.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from flowforge.flows import Flow
from flowforge.transforms.dequantization import quantize

__all__ = [
    "cglow_fill",
    "compare_fills",
    "filled_error",
    "langevin_fill",
    "mean_fill",
    "missing_bits",
    "nearest_neighbour_fill",
]


def _paste(x_known: Tensor, filled: Tensor, mask: Tensor) -> Tensor:
    return x_known * mask + filled * (1 - mask)


@torch.no_grad()
def cglow_fill(
    flow: Flow,
    x_known: Tensor,
    mask: Tensor,
    context: Tensor,
    samples: int = 4,
    temperature: float = 1.0,
    levels: int = 256,
) -> Tensor:
    """``samples`` fills per image from a c-Glow: ``(n, samples, C, H, W)``, quantized."""
    flow.eval()
    out = []
    for i in range(x_known.shape[0]):
        x = quantize(flow.sample(samples, context[i], temperature), levels)
        out.append(_paste(x_known[i : i + 1], x, mask[i : i + 1]))
    return torch.stack(out)


@torch.no_grad()
def missing_bits(flow: Flow, x: Tensor, context: Tensor, mask: Tensor) -> Tensor:
    """``-log2 p(x | context) / n_missing`` per image ``(n,)``: an upper bound on the bits per
    missing pixel (one draw of the dequantization noise)."""
    flow.eval()
    nll = -flow.log_prob(x, context).double()
    missing = (1 - mask).flatten(1).sum(1).double() * x.shape[1]
    return nll / (missing.clamp_min(1) * math.log(2))


def mean_fill(x_known: Tensor, mask: Tensor, mean_image: Tensor) -> Tensor:
    """The missing pixels from ``mean_image`` ``(C, H, W)`` (e.g. the training mean)."""
    return _paste(x_known, mean_image.expand_as(x_known), mask)


def nearest_neighbour_fill(
    x_known: Tensor, mask: Tensor, reference: Tensor, chunk: int = 256
) -> Tensor:
    """The missing pixels of the ``reference`` image ``(N, C, H, W)`` closest to each image in
    squared distance over its visible pixels."""
    ref = reference.flatten(1).double()
    out = []
    for i in range(0, x_known.shape[0], chunk):
        x = x_known[i : i + chunk].flatten(1).double()
        m = mask[i : i + chunk].expand_as(x_known[i : i + chunk]).flatten(1).double()
        # sum_j m_j (x_j - r_j)^2 = m.x^2 - 2 (m x).r + m.r^2
        d = (m * x * x).sum(1, keepdim=True) - 2 * (m * x) @ ref.T + m @ (ref * ref).T
        best = reference[d.argmin(1)]
        out.append(_paste(x_known[i : i + chunk], best, mask[i : i + chunk]))
    return torch.cat(out)


def langevin_fill(
    flow: Flow,
    x_known: Tensor,
    mask: Tensor,
    init: Tensor,
    samples: int = 1,
    steps: int = 200,
    step_size: float = 1e-4,
    levels: int = 256,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Conditional samples from an unconditional image flow by Langevin dynamics on the missing
    pixels (in units ``v = x / (levels - 1)``), started from ``init`` (e.g. :func:`mean_fill`)
    with the visible pixels clamped; the step size decays linearly to a tenth. Returns
    ``(n, samples, C, H, W)``, quantized."""
    flow.eval()
    n = x_known.shape[0]
    scale = levels - 1
    known = x_known.repeat_interleave(samples, 0) / scale
    m = mask.repeat_interleave(samples, 0).expand_as(known)
    v = (init.repeat_interleave(samples, 0) / scale).clone()
    for p in flow.parameters():
        p.requires_grad_(False)
    try:
        for t in range(steps):
            eps = step_size * (1 - 0.9 * t / max(1, steps - 1))
            v = v.detach().requires_grad_(True)
            logp = flow.log_prob(v * scale).sum()
            (grad,) = torch.autograd.grad(logp, v)
            noise = torch.randn(v.shape, generator=generator, dtype=v.dtype)
            v = v.detach() + (0.5 * eps * grad + math.sqrt(eps) * noise) * (1 - m)
            v = (v * (1 - m) + known * m).clamp(0, 1)
    finally:
        for p in flow.parameters():
            p.requires_grad_(True)
    x = quantize(v.detach() * scale, levels)
    return x.reshape(n, samples, *x_known.shape[1:])


def filled_error(filled: Tensor, x: Tensor, mask: Tensor, levels: int = 256) -> Tensor:
    """Mean squared error per image over the missing pixels, in units of ``[0, 1]``:
    ``filled`` ``(n, C, H, W)`` or ``(n, k, C, H, W)`` (averaged over the ``k`` fills)."""
    if filled.dim() == 5:
        return torch.stack(
            [filled_error(filled[:, j], x, mask, levels) for j in range(filled.shape[1])]
        ).mean(0)
    miss = (1 - mask).expand_as(x)
    se = ((filled - x) / (levels - 1)) ** 2 * miss
    return se.flatten(1).sum(1) / miss.flatten(1).sum(1).clamp_min(1)


def compare_fills(
    cglow_flow: Flow,
    glow_flow: Flow | None,
    x: Tensor,
    mask: Tensor,
    context: Tensor,
    train: Tensor,
    samples: int = 4,
    langevin_steps: int = 300,
    step_size: float = 1e-4,
    levels: int = 256,
    seed: int = 0,
) -> dict[str, float]:
    """The inpainting comparison on test images ``x`` with masks ``mask`` ``(n, 1, H, W)``:
    mean squared error of the filled pixels (``[0, 1]`` units) for c-Glow (one sample, and the
    mean of ``samples``), the unconditional flow ``glow_flow`` with :func:`langevin_fill` (one
    chain per image), the training mean and the nearest training image; c-Glow's bound on the
    bits per missing pixel and its conditional bits/dim of the whole image."""
    torch.manual_seed(seed)
    dims = x[0].numel()
    out: dict[str, float] = {"images": float(x.shape[0])}
    bits = missing_bits(cglow_flow, x, context, mask)
    out["cglow_bits_per_missing_pixel"] = float(bits.mean())
    missing = (1 - mask).flatten(1).sum(1).double() * x.shape[1]
    out["cglow_conditional_bpd"] = float((bits * missing / dims).mean())
    filled = cglow_fill(cglow_flow, x, mask, context, samples, 1.0, levels)
    out["cglow_sample_mse"] = float(filled_error(filled, x, mask, levels).mean())
    out["cglow_mean_mse"] = float(filled_error(filled.float().mean(1), x, mask, levels).mean())
    mean = mean_fill(x, mask, train.float().mean(0))
    out["mean_fill_mse"] = float(filled_error(mean, x, mask, levels).mean())
    out["nn_fill_mse"] = float(
        filled_error(nearest_neighbour_fill(x, mask, train), x, mask, levels).mean()
    )
    if glow_flow is not None:
        g = torch.Generator().manual_seed(seed)
        lv = langevin_fill(glow_flow, x, mask, mean, 1, langevin_steps, step_size, levels, g)
        out["glow_langevin_mse"] = float(filled_error(lv, x, mask, levels).mean())
    return out
