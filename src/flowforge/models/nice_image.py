"""NICE on images: dequantization, flattening, then the NICE recipe (the paper's MNIST model).

Dinh, Krueger and Bengio 2014, "NICE: Non-linear Independent Components Estimation",
https://arxiv.org/abs/1410.8516, section 5.1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from flowforge.distributions import StandardLogistic, StandardNormal
from flowforge.flows import Flow
from flowforge.models.nice import nice
from flowforge.nn.conv import ConvNet
from flowforge.transforms import Compose, Inverse
from flowforge.transforms.dequantization import make_dequantization
from flowforge.transforms.reshape import Flatten

__all__ = ["nice_image"]


def nice_image(
    event_shape: Sequence[int],
    couplings: int = 4,
    hidden: Sequence[int] = (1000,) * 5,
    activation: str = "relu",
    prior: str = "logistic",
    dequantization: str = "uniform",
    levels: int = 256,
    context_features: int = 0,
    data_init: bool = True,
) -> Flow:
    """NICE on ``(C, H, W)`` images of ``levels`` discrete values, log-density of the raw data.

    Paper defaults (MNIST): uniform dequantization to ``[0, 1]`` (the paper's 1/256 noise), 4
    additive couplings with 5 x 1000 ReLU MLPs, diagonal scaling, logistic prior; 4.36 bits/dim
    (1980.50 nats) after 1500 epochs. ``couplings=6`` is the common 6-coupling variant.

    Arguments:
        event_shape: ``(C, H, W)``.
        couplings, hidden, activation, prior: as in :func:`flowforge.models.nice`.
        dequantization: ``"uniform"`` (paper), ``"variational"`` or ``"centre"`` (see
            :func:`~flowforge.transforms.dequantization.make_dequantization`).
        levels: number of discrete pixel values (256 for 8-bit data).
        context_features: size of a conditioning vector (0: unconditional).
        data_init: start the diagonal scaling at the first training batch's scale (default;
            not in the paper, which does not say how the scaling starts): without it the
            log-scales of the background pixels take thousands of Adam steps to reach about
            6.8 and the model sits near 9 bits/dim meanwhile (``docs/results.md``).
    """
    shape = tuple(event_shape)
    flow = nice(math.prod(shape), couplings, hidden, activation, prior, context_features, data_init)
    flat = Flatten(shape)
    dequant = make_dequantization(
        dequantization, shape, levels, lambda i, o, k: ConvNet(i, o, 32, context_features=k)
    )
    transform = Compose([dequant, flat, flow.transform, Inverse(flat)])
    base = {"logistic": StandardLogistic, "normal": StandardNormal}[prior](shape)
    return Flow(transform, base)
