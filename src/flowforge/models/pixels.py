r"""Vector flows on images: dequantization, logit, flatten, then the flow over ``D`` pixels.

The preprocessing of RealNVP's and MAF's MNIST experiments (Dinh et al. 2016, section 4.1;
Papamakarios et al. 2017, section 4.3): raw pixels ``x`` in ``{0, ..., K - 1}`` are dequantized
to ``y = (x + u) / K`` with ``u ~ U[0, 1)``, then mapped to the real line,

.. math:: v = \operatorname{logit}(\alpha + (1 - 2\alpha) y),

and a vector flow models the ``D`` entries of ``v``. Both steps are transforms with their
log-determinants, so ``log_prob`` of the raw pixels is the bound on the discrete data's
log-probability (bits/dim); the density of ``v`` alone, the papers' "logit space" number, is
reported beside it by the ``mle`` objective (:func:`flowforge.objectives.mle.logit_split`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from flowforge.distributions import Reshaped
from flowforge.flows import Flow
from flowforge.nn.conv import ConvNet
from flowforge.transforms import Compose, Inverse, Logit, Transform
from flowforge.transforms.dequantization import make_dequantization
from flowforge.transforms.reshape import Flatten

__all__ = ["on_pixels", "pixel_prefix"]


def pixel_prefix(
    event_shape: Sequence[int], alpha: float, dequantization: str = "uniform", levels: int = 256
) -> list[Transform]:
    """The dequantization of ``levels``-level ``(C, H, W)`` images and the logit with
    ``alpha``: the first two transforms of an image flow in logit space (``dequantization``
    as in :func:`~flowforge.transforms.dequantization.make_dequantization`; a variational one
    conditions on the image with 32-channel :class:`~flowforge.nn.conv.ConvNet` couplings)."""
    shape = tuple(event_shape)
    dequant = make_dequantization(
        dequantization, shape, levels, lambda i, o, k: ConvNet(i, o, 32, context_features=k)
    )
    return [dequant, Logit(alpha)]


def on_pixels(
    flow: Flow,
    event_shape: Sequence[int],
    alpha: float = 1e-6,
    dequantization: str = "uniform",
    levels: int = 256,
) -> Flow:
    """``flow`` (over vectors of ``prod(event_shape)`` entries) on ``(C, H, W)`` images of
    ``levels`` discrete values: :func:`pixel_prefix`, flatten, the flow's transform, and back
    to the image's shape, with the flow's base seen in that shape
    (:class:`~flowforge.distributions.Reshaped`), so samples and latents are images."""
    shape = tuple(event_shape)
    if len(shape) != 3:
        raise ValueError(f"'event_shape' should be (C, H, W), got {shape}")
    d = math.prod(shape)
    if tuple(flow.event_shape) != (d,):
        raise ValueError(
            f"'flow' should be over vectors of {d} entries, got event shape "
            f"{tuple(flow.event_shape)}"
        )
    flat = Flatten(shape)
    prefix = pixel_prefix(shape, alpha, dequantization, levels)
    transform = Compose([*prefix, flat, flow.transform, Inverse(flat)])
    return Flow(transform, Reshaped(flow.base, shape))
